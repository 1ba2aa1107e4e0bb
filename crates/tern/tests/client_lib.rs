//! The project's client library (`tern-client`) against the real broker.

mod common;

use bytes::Bytes;
use common::{RawClient, Tern, V5, V311, publish};
use tern_client::{Client, ClientError, ConnectOptions, Event};
use tern_codec::{Packet, QoS, ReasonCode, SubscriptionOptions};

async fn next_message(c: &mut Client) -> tern_codec::Publish {
    loop {
        let event = tokio::time::timeout(common::TIMEOUT, c.next_event())
            .await
            .expect("timeout")
            .expect("event");
        if let Event::Message(p) = event {
            return p;
        }
    }
}

#[tokio::test]
async fn client_publishes_and_receives_every_qos_in_both_versions() {
    let tern = Tern::start();
    for version in [V311, V5] {
        let mut sub = Client::connect(&ConnectOptions::to_addr(tern.addr, "lib-sub", version))
            .await
            .unwrap();
        let codes = sub
            .subscribe(
                &[("lib/#", SubscriptionOptions::with_qos(QoS::ExactlyOnce))],
                None,
            )
            .await
            .unwrap();
        assert_eq!(codes, [ReasonCode::GRANTED_QOS_2]);
        let mut publisher =
            Client::connect(&ConnectOptions::to_addr(tern.addr, "lib-pub", version))
                .await
                .unwrap();
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let reason = publisher
                .publish(publish("lib/t", &[qos as u8], qos, false, None))
                .await
                .unwrap();
            assert!(!reason.is_error());
            let got = next_message(&mut sub).await;
            assert_eq!((got.qos, &got.payload[..]), (qos, &[qos as u8][..]));
        }
        publisher.disconnect().await.unwrap();
        sub.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn client_keeps_outgoing_qos1_within_its_window() {
    let tern = Tern::start();
    let mut sub = Client::connect(&ConnectOptions::to_addr(tern.addr, "win-sub", V5))
        .await
        .unwrap();
    sub.subscribe(
        &[("win/t", SubscriptionOptions::with_qos(QoS::AtLeastOnce))],
        None,
    )
    .await
    .unwrap();
    let mut publisher = Client::connect(&ConnectOptions::to_addr(tern.addr, "win-pub", V5))
        .await
        .unwrap();
    publisher.limit_inflight(4);
    publisher.auto_flush = false;
    for i in 0..100u32 {
        publisher
            .send_publish(publish(
                "win/t",
                &i.to_be_bytes(),
                QoS::AtLeastOnce,
                false,
                None,
            ))
            .await
            .unwrap();
        assert!(publisher.inflight() <= 4);
    }
    publisher.wait_acknowledged().await.unwrap();
    for i in 0..100u32 {
        assert_eq!(&next_message(&mut sub).await.payload[..], &i.to_be_bytes());
    }
}

#[tokio::test]
async fn client_reports_refusal_and_server_disconnect_in_words() {
    let tern = Tern::start_config("allow_anonymous = false\n", "toml");
    let refused = Client::connect(&ConnectOptions::to_addr(tern.addr, "nope", V5)).await;
    match refused {
        Err(e @ ClientError::Refused(ReasonCode::NOT_AUTHORIZED)) => {
            assert_eq!(e.to_string(), "connection refused: Not authorized (0x87)");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }

    let tern = Tern::start();
    let mut first = Client::connect(&ConnectOptions::to_addr(tern.addr, "twice", V5))
        .await
        .unwrap();
    let _second = RawClient::connect(tern.addr, V5, "twice").await;
    match first.next_event().await {
        Err(e @ ClientError::Closed(Some(ReasonCode::SESSION_TAKEN_OVER))) => {
            assert_eq!(
                e.to_string(),
                "disconnected by the broker: Session taken over (0x8E)"
            );
        }
        other => panic!("expected the takeover, got {other:?}"),
    }
}

#[tokio::test]
async fn client_completes_the_incoming_qos2_flow_itself() {
    let tern = Tern::start();
    let mut sub = Client::connect(&ConnectOptions::to_addr(tern.addr, "q2-sub", V311))
        .await
        .unwrap();
    sub.subscribe(
        &[("q2/t", SubscriptionOptions::with_qos(QoS::ExactlyOnce))],
        None,
    )
    .await
    .unwrap();
    let mut raw = RawClient::connect(tern.addr, V311, "q2-pub").await;
    assert_eq!(
        raw.publish("q2/t", b"once", QoS::ExactlyOnce, false).await,
        ReasonCode::SUCCESS
    );
    let got = next_message(&mut sub).await;
    assert_eq!(got.payload, Bytes::from_static(b"once"));
    raw.send(&Packet::PingReq).await;
    // The client answered PUBREC/PUBCOMP itself: the broker has nothing left in flight for it.
    let mut again = Client::connect(&ConnectOptions::to_addr(tern.addr, "q2-pub2", V311))
        .await
        .unwrap();
    again
        .publish(publish("q2/t", b"next", QoS::ExactlyOnce, false, None))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut sub).await.payload,
        Bytes::from_static(b"next")
    );
}
