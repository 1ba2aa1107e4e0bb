//! Authentication as the protocol state machine sees it: a request that the runtime decides
//! (checking a password can take milliseconds, asking an HTTP service longer, so the decision
//! is asynchronous), and the decision that comes back.
//!
//! [`Connection`](crate::Connection) hands out an [`AuthRequest`] when a CONNECT carries
//! credentials or an Authentication Method and the listener has an authentication source, and
//! when an MQTT 5 client continues or restarts an enhanced authentication with AUTH. The
//! runtime answers each with an [`AuthDecision`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tern_codec::{ByteString, ProtocolVersion, ReasonCode};

use crate::Acl;

/// Where in the exchange a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStage {
    /// CONNECT.
    Connect,
    /// AUTH with reason 0x18 (Continue authentication), during CONNECT or re-authentication.
    Continue,
    /// AUTH with reason 0x19 (Re-authenticate) on an established connection.
    Reauthenticate,
}

/// What the runtime must decide about a client.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// Where in the exchange this is.
    pub stage: AuthStage,
    /// Protocol version of the connection.
    pub version: ProtocolVersion,
    /// Client identifier as the client sent it (empty when the broker will assign one).
    pub client_id: ByteString,
    /// User Name of CONNECT.
    pub username: Option<ByteString>,
    /// Password of CONNECT.
    pub password: Option<Bytes>,
    /// Authentication Method (MQTT 5 enhanced authentication).
    pub method: Option<ByteString>,
    /// Authentication Data of the CONNECT or AUTH this request comes from.
    pub data: Option<Bytes>,
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
}

/// What the runtime decided.
#[derive(Debug, Clone)]
pub enum AuthDecision {
    /// The client is who it says it is.
    Allow(Grant),
    /// Enhanced authentication goes on: send AUTH 0x18 with this Authentication Data and wait
    /// for the client's AUTH.
    Continue(Option<Bytes>),
    /// Refused, with this reason (MQTT 3.x clients get the matching CONNACK return code).
    Deny(ReasonCode),
}

/// What an accepted client is granted, beyond being let in.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// The user name access checks use, when the source names the client differently from
    /// CONNECT's User Name (a token's subject, say).
    pub username: Option<ByteString>,
    /// This client's own access rules (from a token or an HTTP hook). They apply in addition
    /// to the broker's ACL: an action must be allowed by both.
    pub acl: Option<Arc<Acl>>,
    /// When the grant runs out: the connection is closed then (MQTT 5: DISCONNECT 0xA0,
    /// Maximum connect time).
    pub expires_at: Option<Instant>,
    /// Authentication Data for the client on success (the last step of SCRAM, say).
    pub data: Option<Bytes>,
}
