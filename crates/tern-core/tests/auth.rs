//! The authentication exchange of the protocol state machine, driven by hand: requests handed
//! to the runtime, decisions coming back, AUTH packets in both directions (MQTT 5 §4.12), the
//! CONNECT held until the decision, re-authentication, and grants that expire.

#![allow(clippy::unwrap_used, missing_docs)] // test code: failing loudly is the point

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::{Sim, connect5, publish, secs, watcher};
use tern_codec::{Auth, ByteString, Packet, QoS, ReasonCode};
use tern_core::{
    Acl, AuthDecision, AuthStage, Broker, BrokerConfig, ConnectionInfo, Grant, ListenerPolicy,
};

fn authenticating_broker() -> (Broker, ConnectionInfo) {
    let info = ConnectionInfo {
        policy: ListenerPolicy {
            allow_anonymous: false,
            authenticate: true,
            ..ListenerPolicy::default()
        }
        .into(),
        ..ConnectionInfo::default()
    };
    (Broker::new(BrokerConfig::default()), info)
}

fn scram_connect(id: &str) -> tern_codec::Connect {
    let mut c = connect5(id, true, None);
    c.properties.authentication_method = Some(ByteString::from("SCRAM-SHA-256"));
    c.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
    c
}

/// A connection that sent a SCRAM-SHA-256 CONNECT at `now`; its request not yet taken.
fn scram_started(broker: &Broker, info: &ConnectionInfo, now: Instant) -> Sim {
    let mut sim = Sim::open_with(broker, info, now);
    sim.send(Packet::Connect(Box::new(scram_connect("c"))), now);
    sim
}

/// A connection that sent a SCRAM-SHA-256 CONNECT at `now` and got `decision` for it; what
/// that made it send (AUTH or CONNACK) is drained.
fn first_decision(
    broker: &Broker,
    info: &ConnectionInfo,
    decision: AuthDecision,
    now: Instant,
) -> Sim {
    let mut sim = scram_started(broker, info, now);
    sim.conn.poll_auth_request().expect("a request");
    sim.conn.handle_auth_decision(decision, now);
    sim.drain(now);
    sim
}

fn auth(reason: ReasonCode, method: &str, data: &'static [u8]) -> Packet {
    let mut a = Auth {
        reason,
        ..Auth::default()
    };
    a.properties.authentication_method = Some(ByteString::from(method));
    a.properties.authentication_data = Some(Bytes::from_static(data));
    Packet::Auth(a)
}

/// The reason code of the CONNACK that is all the connection sends at `now`.
fn sole_connack(sim: &mut Sim, now: Instant) -> ReasonCode {
    match sim.drain(now).as_slice() {
        [Packet::ConnAck(ack)] => ack.reason,
        other => panic!("expected a CONNACK alone, got {other:?}"),
    }
}

/// The reason code of the DISCONNECT that is all the connection sends at `now`.
fn sole_disconnect(sim: &mut Sim, now: Instant) -> ReasonCode {
    match sim.drain(now).as_slice() {
        [Packet::Disconnect(d)] => d.reason,
        other => panic!("expected a DISCONNECT alone, got {other:?}"),
    }
}

#[test]
fn mqtt5_4_12_0_2_continue_sends_auth_0x18_and_the_next_auth_becomes_a_request() {
    let (broker, info) = authenticating_broker();
    let now = Instant::now();
    let mut sim = scram_started(&broker, &info, now);
    assert!(sim.conn.awaits_auth_decision());
    let first = sim.conn.poll_auth_request().expect("a request");
    assert_eq!(first.stage, AuthStage::Connect);
    assert_eq!(first.method.as_deref(), Some("SCRAM-SHA-256"));
    assert_eq!(first.data.as_deref(), Some(&b"client-first"[..]));
    assert!(sim.conn.poll_auth_request().is_none(), "handed out once");
    assert!(sim.drain(now).is_empty(), "no CONNACK before the decision");

    sim.conn.handle_auth_decision(
        AuthDecision::Continue(Some(Bytes::from_static(b"server-first"))),
        now,
    );
    assert!(!sim.conn.awaits_auth_decision());
    match sim.drain(now).as_slice() {
        [Packet::Auth(a)] => {
            assert_eq!(a.reason, ReasonCode::CONTINUE_AUTHENTICATION);
            assert_eq!(
                a.properties.authentication_method.as_deref(),
                Some("SCRAM-SHA-256")
            );
            assert_eq!(
                a.properties.authentication_data.as_deref(),
                Some(&b"server-first"[..])
            );
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }

    sim.send(
        auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "SCRAM-SHA-256",
            b"client-final",
        ),
        now,
    );
    let second = sim.conn.poll_auth_request().expect("a second request");
    assert_eq!(second.stage, AuthStage::Continue);
    assert_eq!(second.data.as_deref(), Some(&b"client-final"[..]));
    sim.conn.handle_auth_decision(
        AuthDecision::Allow(Grant {
            data: Some(Bytes::from_static(b"server-final")),
            ..Grant::default()
        }),
        now,
    );
    match sim.drain(now).as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason, ReasonCode::SUCCESS);
            // MQTT-4.12.0-5: the same method on the successful CONNACK.
            assert_eq!(
                ack.properties.authentication_method.as_deref(),
                Some("SCRAM-SHA-256")
            );
            assert_eq!(
                ack.properties.authentication_data.as_deref(),
                Some(&b"server-final"[..])
            );
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(sim.conn.is_connected());
}

#[test]
fn mqtt5_4_12_0_4_a_denied_step_refuses_the_connect_and_closes() {
    let (broker, info) = authenticating_broker();
    let now = Instant::now();
    let mut sim = scram_started(&broker, &info, now);
    sim.conn.poll_auth_request().expect("a request");
    sim.conn
        .handle_auth_decision(AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED), now);
    assert_eq!(sole_connack(&mut sim, now), ReasonCode::NOT_AUTHORIZED);
    assert!(sim.conn.is_closing());
    assert_eq!(broker.session_count(), 0);
}

#[test]
fn mqtt5_3_1_2_30_a_publish_during_enhanced_authentication_is_a_protocol_error() {
    let (broker, info) = authenticating_broker();
    let now = Instant::now();
    let mut sim = first_decision(&broker, &info, AuthDecision::Continue(None), now);
    sim.send(publish("t", b"too early", QoS::AtMostOnce, 0, None), now);
    assert_eq!(sole_connack(&mut sim, now), ReasonCode::PROTOCOL_ERROR);
    assert!(sim.conn.is_closing());
}

#[test]
fn mqtt5_4_12_0_5_auth_with_another_method_during_connect_is_a_protocol_error() {
    let (broker, info) = authenticating_broker();
    let now = Instant::now();
    let mut sim = first_decision(&broker, &info, AuthDecision::Continue(None), now);
    sim.send(
        auth(ReasonCode::CONTINUE_AUTHENTICATION, "SCRAM-SHA-512", b"x"),
        now,
    );
    assert!(sim.conn.poll_auth_request().is_none());
    assert_eq!(sole_connack(&mut sim, now), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn mqtt5_s4_12_1_reauthentication_succeeds_with_auth_0x00_while_traffic_goes_on() {
    let (broker, info) = authenticating_broker();
    let now = Instant::now();
    let mut w = watcher(&broker, "t", now);
    let mut sim = first_decision(&broker, &info, AuthDecision::Allow(Grant::default()), now);

    sim.send(
        auth(ReasonCode::REAUTHENTICATE, "SCRAM-SHA-256", b"again"),
        now,
    );
    let request = sim
        .conn
        .poll_auth_request()
        .expect("a re-authentication request");
    assert_eq!(request.stage, AuthStage::Reauthenticate);
    assert!(!sim.conn.awaits_auth_decision(), "traffic is not held");
    // Other traffic continues under the previous authentication meanwhile.
    sim.send(publish("t", b"meanwhile", QoS::AtMostOnce, 0, None), now);
    assert_eq!(w.publishes(now).len(), 1);
    sim.conn
        .handle_auth_decision(AuthDecision::Continue(None), now);
    sim.send(
        auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "SCRAM-SHA-256",
            b"more",
        ),
        now,
    );
    sim.conn.poll_auth_request().expect("the next step");
    sim.conn
        .handle_auth_decision(AuthDecision::Allow(Grant::default()), now);
    let out = sim.drain(now);
    let codes: Vec<_> = out
        .iter()
        .filter_map(|p| match p {
            Packet::Auth(a) => Some(a.reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        [ReasonCode::CONTINUE_AUTHENTICATION, ReasonCode::SUCCESS]
    );
    assert!(sim.conn.is_connected());
}

#[test]
fn mqtt5_4_12_1_2_failed_reauthentication_disconnects() {
    let (broker, info) = authenticating_broker();
    let now = Instant::now();
    let mut sim = first_decision(&broker, &info, AuthDecision::Allow(Grant::default()), now);
    sim.send(
        auth(ReasonCode::REAUTHENTICATE, "SCRAM-SHA-256", b"again"),
        now,
    );
    sim.conn.poll_auth_request().expect("a request");
    sim.conn
        .handle_auth_decision(AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED), now);
    assert_eq!(sole_disconnect(&mut sim, now), ReasonCode::NOT_AUTHORIZED);
    assert!(sim.conn.is_closing());
}

#[test]
fn mqtt5_4_12_1_1_reauthentication_with_another_method_is_a_protocol_error() {
    let (broker, info) = authenticating_broker();
    let now = Instant::now();
    let mut sim = first_decision(&broker, &info, AuthDecision::Allow(Grant::default()), now);
    sim.send(
        auth(ReasonCode::REAUTHENTICATE, "SCRAM-SHA-512", b"again"),
        now,
    );
    assert!(sim.conn.poll_auth_request().is_none());
    assert_eq!(sole_disconnect(&mut sim, now), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn a_grant_that_expires_closes_the_connection_with_maximum_connect_time() {
    let (broker, info) = authenticating_broker();
    let now = Instant::now();
    let mut sim = Sim::open_with(&broker, &info, now);
    let mut c = connect5("c", true, None);
    c.username = Some(ByteString::from("device"));
    c.password = Some(Bytes::from_static(b"token"));
    sim.send(Packet::Connect(Box::new(c)), now);
    let request = sim.conn.poll_auth_request().expect("a request");
    assert_eq!(request.username.as_deref(), Some("device"));
    assert_eq!(request.password.as_deref(), Some(&b"token"[..]));
    sim.conn.handle_auth_decision(
        AuthDecision::Allow(Grant {
            expires_at: Some(now + secs(30)),
            ..Grant::default()
        }),
        now,
    );
    sim.drain(now);
    assert_eq!(sim.conn.poll_timeout(), Some(now + secs(30)));
    sim.conn.handle_timeout(now + secs(29));
    assert!(sim.conn.is_connected());
    sim.conn.handle_timeout(now + secs(30));
    assert_eq!(
        sole_disconnect(&mut sim, now + secs(30)),
        ReasonCode::MAXIMUM_CONNECT_TIME
    );
}

#[test]
fn a_grants_own_rules_restrict_what_the_client_may_publish() {
    let (broker, info) = authenticating_broker();
    let now = Instant::now();
    let mut w = watcher(&broker, "#", now);
    let mut sim = Sim::open_with(&broker, &info, now);
    let mut c = connect5("c", true, None);
    c.username = Some(ByteString::from("device"));
    sim.send(Packet::Connect(Box::new(c)), now);
    sim.conn.poll_auth_request().expect("a request");
    let (rules, _) = Acl::parse("pattern write devices/%c/up\n").expect("rules");
    sim.conn.handle_auth_decision(
        AuthDecision::Allow(Grant {
            acl: Some(Arc::new(rules)),
            ..Grant::default()
        }),
        now,
    );
    sim.drain(now);
    sim.send(
        publish("devices/c/up", b"mine", QoS::AtLeastOnce, 1, None),
        now,
    );
    sim.send(
        publish("devices/other/up", b"not mine", QoS::AtLeastOnce, 2, None),
        now,
    );
    let acks: Vec<_> = sim
        .drain(now)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .collect();
    assert_eq!(acks, [ReasonCode::SUCCESS, ReasonCode::NOT_AUTHORIZED]);
    let got: Vec<_> = w.publishes(now).into_iter().map(|p| p.payload).collect();
    assert_eq!(got, [Bytes::from_static(b"mine")]);
}
