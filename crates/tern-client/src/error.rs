//! Client errors.

use tern_codec::{DecodeError, EncodeError, ReasonCode};
use thiserror::Error;

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The network connection failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The broker did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The broker refused the connection.
    #[error("connection refused: {0}")]
    Refused(ReasonCode),
    /// The broker closed the connection, with a DISCONNECT reason if it sent one.
    #[error("{}", match .0 {
        Some(reason) => format!("disconnected by the broker: {reason}"),
        None => "connection closed by the broker".to_owned(),
    })]
    Closed(Option<ReasonCode>),
    /// The broker sent something this client could not decode.
    #[error("bad packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (a field too long, or too large for the broker).
    #[error("cannot send: {0}")]
    Encode(#[from] EncodeError),
    /// The broker broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}
