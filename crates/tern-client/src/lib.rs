//! A small async MQTT client on Tern's codec, for Tern's own tools (`tern pub`, `tern sub`,
//! `tern bench`) and bridges.
//!
//! One [`Client`] owns one connection and is driven by its owner: there is no background task
//! and no channel between the socket and the caller, so thousands of clients cost thousands of
//! small tasks of the caller's making and nothing more. The client answers the broker on its
//! own (PUBACK/PUBREC/PUBREL/PUBCOMP for incoming messages, PINGREQ on keep-alive), keeps its
//! outgoing QoS 1/2 messages within the broker's Receive Maximum, and hands everything else to
//! the caller as [`Event`]s. With [`ConnectOptions::manual_acks`] the caller acknowledges
//! incoming QoS 1/2 messages itself ([`Client::ack`]), once it has done what it must with them
//! (a bridge: once the other broker has them).
//!
//! It connects over TCP or TLS ([`Client::connect`]), or over any stream the caller already
//! has ([`Client::connect_stream`]: an in-process pipe to the broker, for instance).
//!
//! It does not reconnect by itself: a caller that needs to (a bridge, a test harness) takes the
//! [`SessionState`] of a lost connection and gives it to [`Client::resume`], which re-sends what
//! was not acknowledged and keeps recognising QoS 2 messages already received.

mod client;
mod error;
mod options;
#[cfg(target_os = "linux")]
mod stamped;
mod tls;

pub use client::{Client, Event, SessionState};
pub use error::ClientError;
pub use options::ConnectOptions;
pub use tern_codec;
pub use tls::{MinTlsVersion, TlsFiles, TlsOptions};
/// The TLS library, for callers that build their own [`TlsOptions`].
pub use tokio_rustls::rustls;
