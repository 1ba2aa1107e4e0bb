//! The bridge's side on this broker: an in-process MQTT 5 connection, one end of a
//! `tokio::io::duplex` pipe driven by the same connection task as any network client
//! (`connection::drive`), the other end a `tern_client::Client`.
//!
//! Its listener policy is internal: no ACL (the bridge carries what its topics say), and an
//! authentication of its own. The bridge logs in as the user `$bridge/NAME` with a password
//! drawn at random when the bridge starts, which only this in-process authenticator knows. A
//! session created by an authenticated user goes only to that user authenticated again
//! (`Broker::attach`), so a network client that picks the bridge's client id by accident is
//! refused (CONNACK 0x87 / 5) instead of taking the bridge's session and its queued messages.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tern_client::{Client, ClientError, ConnectOptions, SessionState};
use tern_codec::ProtocolVersion;
use tern_core::{AclSlot, Broker, ConnectionInfo, ListenerPolicy};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::auth::password_file::{PasswordFile, encode_sha512};
use crate::connection::{self, Shared};

/// The pipe's buffer in each direction.
const PIPE_BUFFER: usize = 64 * 1024;

/// How the bridge reaches this broker: what every local connection of one bridge shares.
pub(crate) struct LocalSide {
    shared: Arc<Shared>,
    info: ConnectionInfo,
    /// Ends the connection tasks still running when the bridge is dropped (with
    /// `shared.closing`).
    cancel: CancellationToken,
    /// The user the bridge logs in as.
    pub(crate) username: String,
    password: String,
}

impl Drop for LocalSide {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.shared.closing.close();
    }
}

impl LocalSide {
    /// The local side of bridge `name` on `broker`.
    pub(crate) fn new(broker: &Broker, name: &str) -> Self {
        let username = format!("$bridge/{name}");
        let password = random_hex(16);
        let salt = random_bytes::<12>();
        let line = format!("{username}:{}\n", encode_sha512(password.as_bytes(), &salt));
        // The line is made here from a user name without ':' or newline (a bridge name has
        // neither: it is one word of the configuration) and a well-formed hash.
        let authenticator = match PasswordFile::parse(&line) {
            Ok(file) => Authenticator::new(Some(Arc::new(file))),
            Err(e) => {
                tracing::warn!(bridge = name, "bridge login not protected: {e}");
                Authenticator::default()
            }
        };
        let protected = authenticator.is_configured();
        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared {
            broker: broker.clone(),
            shutdown: cancel.clone(),
            closing: Arc::default(),
            deadlines: Arc::default(),
            // The bridge logs its own connections.
            log_connections: false,
            authenticator: Arc::new(ArcSwap::from_pointee(authenticator)),
            unaddressed: format!("bridge:{name}").into(),
        });
        let policy = ListenerPolicy {
            allow_anonymous: !protected,
            authenticate: protected,
            // A slot of its own with no rules: everything is allowed.
            acl: Some(Arc::new(AclSlot::new(None))),
            name: Some(format!("bridge:{name}").into()),
            ..ListenerPolicy::default()
        };
        Self {
            shared,
            info: ConnectionInfo {
                remote_addr: None,
                policy: Arc::new(policy),
                certificate_username: None,
            },
            cancel,
            username,
            password,
        }
    }

    /// Options for the bridge's local client: MQTT 5, the bridge's login, manual
    /// acknowledgements, a receive maximum of `window`.
    pub(crate) fn options(&self, client_id: &str, expiry: u32, window: u16) -> ConnectOptions {
        let mut options = ConnectOptions::new("bridge", 0, client_id, ProtocolVersion::V5);
        options.clean_start = false;
        options.keep_alive = 0;
        options.session_expiry = Some(expiry);
        options.receive_maximum = Some(window);
        options.username = Some(self.username.clone());
        options.password = Some(self.password.clone().into());
        options.manual_acks = true;
        options
    }

    /// Opens a pipe to this broker and connects over it, carrying on from `state` (a new
    /// session is made if the broker has none).
    pub(crate) async fn connect(
        &self,
        options: &ConnectOptions,
        state: Option<SessionState>,
    ) -> Result<Client, ClientError> {
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        tokio::spawn(connection::drive(
            theirs,
            self.info.clone(),
            self.shared.clone(),
            (),
        ));
        match state {
            Some(state) => Client::resume_stream(ours, options, state).await,
            None => Client::connect_stream(ours, options).await,
        }
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        // No system randomness: the time still makes the password unguessable in practice
        // for a client on the network, which would have to match it by chance.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8;
        }
    }
    bytes
}

fn random_hex(n: usize) -> String {
    use std::fmt::Write;
    random_bytes::<32>()
        .iter()
        .take(n)
        .fold(String::with_capacity(2 * n), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
