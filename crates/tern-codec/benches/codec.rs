//! Criterion benchmarks of the codec: decode and encode throughput (bytes per second) for
//! PUBLISH packets with payloads of 16 B to 64 KiB in MQTT 3.1.1 and 5.0 (the 5.0 packets carry a
//! Message Expiry Interval and a User Property), and for a stream of small acknowledgements.
//!
//! Run with `cargo bench -p tern-codec`; add `-- publish_v5` (or another group name) to run
//! one group, `-- --quick` for a fast rough pass.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tern_codec::{
    Ack, ByteString, Decoder, MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode,
};

const PAYLOAD_SIZES: [usize; 4] = [16, 256, 4096, 65_536];
const VERSIONS: [(&str, ProtocolVersion); 2] =
    [("v311", ProtocolVersion::V311), ("v5", ProtocolVersion::V5)];
/// Acknowledgements in one stream.
const STREAM_LEN: u16 = 1000;

fn packet_id(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero packet identifier")
}

fn publish(version: ProtocolVersion, payload_size: usize) -> Packet {
    let properties = if version.is_v5() {
        PublishProperties {
            message_expiry_interval: Some(3600),
            user_properties: vec![(
                ByteString::from("trace-id"),
                ByteString::from("0af7651916cd43dd8448eb211c80319c"),
            )],
            ..PublishProperties::default()
        }
    } else {
        PublishProperties::default()
    };
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: ByteString::from("sensors/building-1/floor-3/room-12/temperature"),
        packet_id: Some(packet_id(42)),
        properties,
        payload: Bytes::from(vec![0xa5; payload_size]),
    })
}

/// A mix of QoS 1 and QoS 2 acknowledgements, a few with a reason code in 5.0.
fn acks() -> Vec<Packet> {
    (1..=STREAM_LEN)
        .map(|i| {
            let id = packet_id(i);
            match i % 8 {
                0 => Packet::PubRec(Ack::new(id)),
                1 => Packet::PubRel(Ack::new(id)),
                2 => Packet::PubComp(Ack::new(id)),
                3 => Packet::PubAck(Ack::with_reason(id, ReasonCode::NO_MATCHING_SUBSCRIBERS)),
                _ => Packet::PubAck(Ack::new(id)),
            }
        })
        .collect()
}

fn encode_all(packets: &[Packet], version: ProtocolVersion) -> BytesMut {
    let mut dst = BytesMut::new();
    for p in packets {
        p.encode(version, &mut dst)
            .expect("benchmark packets encode");
    }
    dst
}

fn bench_publish(c: &mut Criterion) {
    for (name, version) in VERSIONS {
        let mut group = c.benchmark_group(format!("publish_{name}"));
        for size in PAYLOAD_SIZES {
            let packet = publish(version, size);
            let bytes = encode_all(std::slice::from_ref(&packet), version).freeze();
            group.throughput(Throughput::Bytes(bytes.len() as u64));

            group.bench_with_input(BenchmarkId::new("decode", size), &bytes, |b, bytes| {
                let mut decoder = Decoder::with_version(version, MAX_PACKET_SIZE);
                b.iter_batched_ref(
                    || BytesMut::from(&bytes[..]),
                    |buf| decoder.decode(buf).expect("valid packet"),
                    BatchSize::SmallInput,
                );
            });

            group.bench_with_input(BenchmarkId::new("encode", size), &packet, |b, packet| {
                let mut dst = BytesMut::with_capacity(bytes.len());
                b.iter(|| {
                    dst.clear();
                    black_box(packet)
                        .encode(version, &mut dst)
                        .expect("valid packet")
                });
            });
        }
        group.finish();
    }
}

fn bench_ack_stream(c: &mut Criterion) {
    let packets = acks();
    let mut group = c.benchmark_group("ack_stream");
    for (name, version) in VERSIONS {
        let stream = encode_all(&packets, version).freeze();
        group.throughput(Throughput::Bytes(stream.len() as u64));

        group.bench_with_input(BenchmarkId::new("decode", name), &stream, |b, stream| {
            let mut decoder = Decoder::with_version(version, MAX_PACKET_SIZE);
            b.iter_batched_ref(
                || BytesMut::from(&stream[..]),
                |buf| {
                    let mut count = 0u32;
                    while let Some(packet) = decoder.decode(buf).expect("valid stream") {
                        black_box(packet);
                        count += 1;
                    }
                    assert_eq!(count, u32::from(STREAM_LEN));
                },
                BatchSize::SmallInput,
            );
        });

        group.bench_with_input(BenchmarkId::new("encode", name), &packets, |b, packets| {
            let mut dst = BytesMut::with_capacity(stream.len());
            b.iter(|| {
                dst.clear();
                for p in black_box(packets) {
                    p.encode(version, &mut dst).expect("valid packet");
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_publish, bench_ack_stream);
criterion_main!(benches);
