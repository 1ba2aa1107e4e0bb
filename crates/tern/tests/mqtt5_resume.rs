//! Re-sending on session resumption within the new connection's Receive Maximum.

mod common;

use common::{RawClient, Tern, V5, connect_packet};
use tern_codec::{Ack, Packet, QoS, ReasonCode};

#[tokio::test]
async fn mqtt5_3_3_4_9_resumed_session_resends_within_new_receive_maximum() {
    let tern = Tern::start();
    let mut first = connect_packet(V5, "resume-window", true);
    first.properties.session_expiry_interval = Some(300);
    first.properties.receive_maximum = Some(10);
    let (mut sub, ack) = RawClient::connect_with(tern.addr, first).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        sub.subscribe("resume/t", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );

    let mut publisher = RawClient::connect(tern.addr, V5, "resume-pub").await;
    for i in 0..5u8 {
        publisher
            .publish("resume/t", &[i], QoS::AtLeastOnce, false)
            .await;
    }
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let p = sub.recv_publish().await;
        assert_eq!(&p.payload[..], &[i]);
        ids.push(p.packet_id.expect("QoS 1 has an id"));
    }
    drop(sub); // gone without acknowledging anything

    let mut again = connect_packet(V5, "resume-window", false);
    again.properties.session_expiry_interval = Some(300);
    again.properties.receive_maximum = Some(1);
    let (mut sub, ack) = RawClient::connect_with(tern.addr, again).await;
    assert!(ack.session_present);
    for (i, id) in ids.iter().enumerate() {
        let p = sub.recv_publish().await;
        assert!(p.dup, "a re-sent PUBLISH carries DUP (MQTT-4.4.0-1)");
        assert_eq!(p.packet_id, Some(*id), "original packet identifier");
        assert_eq!(&p.payload[..], &[i as u8], "original order");
        // Receive Maximum 1: nothing more until this one is acknowledged.
        sub.expect_nothing().await;
        sub.send(&Packet::PubAck(Ack::new(*id))).await;
    }
    sub.expect_nothing().await;
}
