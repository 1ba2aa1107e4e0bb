//! A small async MQTT client on Tern's codec, for Tern's own tools (`tern pub`, `tern sub`,
//! `tern bench`) and bridges.
//!
//! One [`Client`] owns one connection and is driven by its owner: there is no background task
//! and no channel between the socket and the caller, so thousands of clients cost thousands of
//! small tasks of the caller's making and nothing more. The client answers the broker on its
//! own (PUBACK/PUBREC/PUBREL/PUBCOMP for incoming messages, PINGREQ on keep-alive), keeps its
//! outgoing QoS 1/2 messages within the broker's Receive Maximum, and hands everything else to
//! the caller as [`Event`]s.
//!
//! It does not reconnect, persist its session state, or retransmit on reconnection: callers
//! that need those (a bridge) build them on top.

mod client;
mod error;
mod options;

pub use client::{Client, Event};
pub use error::ClientError;
pub use options::ConnectOptions;
pub use tern_codec;
