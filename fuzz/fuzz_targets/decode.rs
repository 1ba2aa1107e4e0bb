//! Feeds arbitrary bytes to the decoder and checks that every packet it accepts survives a
//! round trip through the encoder.
//!
//! The whole input goes to a fresh server decoder (which needs a CONNECT first); the input less
//! its first byte goes to a decoder for the version that byte selects, with a small maximum
//! packet size when its high bit is set.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_codec::{Decoder, MAX_PACKET_SIZE, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    drain(Decoder::new(MAX_PACKET_SIZE), data);
    if let Some((&selector, rest)) = data.split_first() {
        let version = match selector % 3 {
            0 => ProtocolVersion::V31,
            1 => ProtocolVersion::V311,
            _ => ProtocolVersion::V5,
        };
        let max = if selector & 0x80 != 0 {
            64
        } else {
            MAX_PACKET_SIZE
        };
        drain(Decoder::with_version(version, max), rest);
    }
});

/// Decodes until the decoder needs more input or rejects it.
fn drain(mut decoder: Decoder, data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "a decoded packet consumed nothing");
                let version = decoder
                    .version()
                    .expect("a decoded packet fixes the version");
                let mut encoded = BytesMut::new();
                let written = packet
                    .encode(version, &mut encoded)
                    .expect("a decoded packet encodes");
                assert_eq!(written, encoded.len());
                let mut again = Decoder::with_version(version, MAX_PACKET_SIZE);
                let decoded = again.decode(&mut encoded);
                assert_eq!(decoded, Ok(Some(packet)), "round trip changed the packet");
                assert!(encoded.is_empty(), "re-encoded packet left bytes over");
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete packet was consumed");
                return;
            }
            Err(_) => return,
        }
    }
}
