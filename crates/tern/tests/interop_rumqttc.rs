//! Interoperability with a third-party client, the `rumqttc` crate, in MQTT 3.1.1 and 5.0.

mod common;

use std::time::Duration;

use common::{TIMEOUT, Tern};

async fn next_publish_v311(el: &mut rumqttc::EventLoop) -> rumqttc::Publish {
    loop {
        let event = tokio::time::timeout(TIMEOUT, el.poll())
            .await
            .expect("timeout")
            .expect("poll");
        if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
            return p;
        }
    }
}

async fn wait_suback_v311(el: &mut rumqttc::EventLoop) {
    loop {
        let event = tokio::time::timeout(TIMEOUT, el.poll())
            .await
            .expect("timeout")
            .expect("poll");
        if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) = event {
            return;
        }
    }
}

fn options_v311(id: &str, tern: &Tern) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, tern.addr.ip().to_string(), tern.addr.port());
    o.set_keep_alive(Duration::from_secs(5));
    o
}

#[tokio::test]
async fn rumqttc_v311_publish_subscribe_all_qos() {
    let tern = Tern::start();
    let (sub, mut sub_el) = rumqttc::AsyncClient::new(options_v311("sub", &tern), 10);
    sub.subscribe("interop/#", rumqttc::QoS::ExactlyOnce)
        .await
        .unwrap();
    wait_suback_v311(&mut sub_el).await;

    let (publisher, mut pub_el) = rumqttc::AsyncClient::new(options_v311("pub", &tern), 10);
    tokio::spawn(async move { while pub_el.poll().await.is_ok() {} });
    for (i, qos) in [
        rumqttc::QoS::AtMostOnce,
        rumqttc::QoS::AtLeastOnce,
        rumqttc::QoS::ExactlyOnce,
    ]
    .into_iter()
    .enumerate()
    {
        publisher
            .publish(format!("interop/{i}"), qos, false, vec![i as u8; 3])
            .await
            .unwrap();
        let p = next_publish_v311(&mut sub_el).await;
        assert_eq!(p.topic, format!("interop/{i}"));
        assert_eq!(p.qos, qos);
        assert_eq!(&p.payload[..], &[i as u8; 3]);
    }
}

#[tokio::test]
async fn rumqttc_v5_publish_subscribe_with_properties() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let tern = Tern::start();
    let mut o = MqttOptions::new("sub5", tern.addr.ip().to_string(), tern.addr.port());
    o.set_keep_alive(Duration::from_secs(5));
    let (sub, mut sub_el) = AsyncClient::new(o, 10);
    sub.subscribe("v5/+", QoS::AtLeastOnce).await.unwrap();
    loop {
        let e = tokio::time::timeout(TIMEOUT, sub_el.poll())
            .await
            .unwrap()
            .unwrap();
        if let Event::Incoming(Packet::SubAck(_)) = e {
            break;
        }
    }
    let mut o = MqttOptions::new("pub5", tern.addr.ip().to_string(), tern.addr.port());
    o.set_keep_alive(Duration::from_secs(5));
    let (publisher, mut pub_el) = AsyncClient::new(o, 10);
    tokio::spawn(async move { while pub_el.poll().await.is_ok() {} });
    let props = PublishProperties {
        user_properties: vec![("k1".into(), "v1".into()), ("k2".into(), "v2".into())],
        content_type: Some("text/plain".into()),
        response_topic: Some("v5/reply".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"corr")),
        ..Default::default()
    };
    publisher
        .publish_with_properties("v5/x", QoS::AtLeastOnce, false, "hello", props)
        .await
        .unwrap();
    let p = loop {
        let e = tokio::time::timeout(TIMEOUT, sub_el.poll())
            .await
            .unwrap()
            .unwrap();
        if let Event::Incoming(Packet::Publish(p)) = e {
            break p;
        }
    };
    assert_eq!(&p.topic[..], b"v5/x");
    assert_eq!(&p.payload[..], b"hello");
    let props = p.properties.expect("properties forwarded");
    assert_eq!(
        props.user_properties,
        vec![
            ("k1".to_owned(), "v1".to_owned()),
            ("k2".to_owned(), "v2".to_owned())
        ]
    );
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.response_topic.as_deref(), Some("v5/reply"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"corr"[..]));
}
