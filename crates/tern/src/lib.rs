//! Tern, an MQTT 3.1 / 3.1.1 / 5.0 broker: the runtime around [`tern_core`].
//!
//! This crate owns everything that touches the operating system: listeners and connection
//! tasks, configuration files, logging, signals and the command line. The protocol logic lives
//! in `tern-core` and the wire format in `tern-codec`.

mod admin;
pub mod auth;
pub mod bench;
mod bridge;
pub mod cli;
pub mod config;
mod connection;
mod deadlines;
pub mod limits;
pub mod logging;
mod metrics_view;
mod persistence;
mod process;
mod prometheus;
pub mod proxy_protocol;
mod reload;
mod runtime;
pub mod server;
mod sys_topics;
pub mod tls;
pub mod tools;
pub mod unix_socket;
pub mod websocket;
