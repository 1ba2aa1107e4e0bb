//! Authentication: who a client is, checked against the configured sources (password file,
//! SCRAM credentials, certificates, JWT, HTTP hook).
//!
//! The protocol state machine hands out [`AuthRequest`]s; [`Authenticator::decide`] answers
//! them off the connection's hot path (password hashing runs on a blocking thread). The
//! sources are read once at start and replaced as a whole on reload, so a connection sees
//! either the old set or the new one, never a mix.

pub mod http_hook;
pub mod jwt;
pub mod password_file;
pub mod scram;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tern_codec::{ByteString, ReasonCode};
use tern_core::{AuthDecision, AuthRequest, AuthStage, Grant};

use password_file::PasswordFile;
use scram::{ClientFirst, FakeCredentials, ScramMechanism, ScramServer};

/// The authentication sources in force, shared by every connection and replaced on reload.
pub type SharedAuthenticator = Arc<ArcSwap<Authenticator>>;

/// How many password hashes may run at once.
const MAX_CONCURRENT_HASHES: usize = 8;
static HASHING_SLOTS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_HASHES);

/// The state one connection keeps between the steps of an enhanced authentication, and after
/// it, for re-authentication.
#[derive(Default)]
pub struct Exchange {
    /// SCRAM: the server-first-message is out, the client-final-message is awaited.
    scram: Option<ScramServer>,
    /// The user a completed exchange proved: re-authentication must prove the same one.
    user: Option<String>,
}

/// A decision being made, with the exchange state to keep for the next step.
pub type Deciding = Pin<Box<dyn Future<Output = (AuthDecision, Option<Box<Exchange>>)> + Send>>;

/// The configured authentication sources.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    passwords: Option<Arc<PasswordFile>>,
    /// `[auth.jwt]`: tokens in CONNECT's Password or User Name.
    jwt: Option<Arc<jwt::JwtAuth>>,
    /// `[auth.http]`: a web service that decides.
    http_hook: Option<Arc<http_hook::HttpHook>>,
}

impl Authenticator {
    /// Sources that check user names and passwords against `passwords` (Mosquitto's
    /// `password_file`), if given.
    #[must_use]
    pub fn new(passwords: Option<Arc<PasswordFile>>) -> Self {
        Self {
            passwords,
            ..Self::default()
        }
    }

    /// The sources `config` names. Used at start and on reload, so that both build the same.
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            jwt: config.jwt.clone(),
            http_hook: config.http_auth.clone(),
            ..Self::new(config.password_file.as_ref().map(|f| f.contents.clone()))
        }
    }

    /// The sources of one listener declared in `config`: its own password file if it has one
    /// (Mosquitto's `per_listener_settings`), else the broker-wide one, and the broker-wide
    /// JWT and HTTP hook. Used at start and on reload, as [`Authenticator::from_config`].
    #[must_use]
    pub fn for_listener(
        config: &crate::config::Config,
        listener: &crate::config::ListenerConfig,
    ) -> Self {
        match &listener.settings.password_file {
            Some(own) => Self {
                passwords: Some(own.contents.clone()),
                ..Self::from_config(config)
            },
            None => Self::from_config(config),
        }
    }

    /// Whether any source is configured; without one, only anonymous access is decided (by
    /// the listener's `allow_anonymous`).
    #[must_use]
    pub fn is_configured(&self) -> bool {
        self.passwords.is_some() || self.jwt.is_some() || self.http_hook.is_some()
    }

    /// Decides `request`; `exchange` is what the previous step of the same exchange kept.
    pub fn decide(
        self: Arc<Self>,
        request: AuthRequest,
        exchange: Option<Box<Exchange>>,
    ) -> Deciding {
        Box::pin(async move {
            let Some(method) = request.method.as_deref() else {
                return (self.check_credentials(request).await, None);
            };
            if let Some(mechanism) = ScramMechanism::from_name(method) {
                return self.scram(mechanism, &request, exchange);
            }
            // A method Tern does not offer (MQTT-4.12.0-1).
            (
                AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD),
                None,
            )
        })
    }

    /// User name and/or password, against the sources in order: the HTTP hook, then JWT (when
    /// the token field holds something shaped like a JWT), then the password file. The first
    /// definite answer wins; `ignore` from the hook, or no JWT, passes on to the next source;
    /// with no source left the client is refused (0x86). A hook that fails refuses (0x88).
    async fn check_credentials(&self, request: AuthRequest) -> AuthDecision {
        if let Some(hook) = &self.http_hook
            && let Some(decision) = hook.decide(&request).await
        {
            return decision;
        }
        if let Some(jwt) = &self.jwt
            && let Some(decision) = jwt.decide(&request)
        {
            return decision;
        }
        self.check_password(request).await
    }

    /// User name and password against the password file. The hash runs on a blocking thread;
    /// its cost is the same for unknown users, so timing tells nothing.
    async fn check_password(&self, request: AuthRequest) -> AuthDecision {
        let (Some(passwords), Some(username)) = (self.passwords.clone(), request.username) else {
            return AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        };
        let password = request.password.unwrap_or_default();
        // A login flood queues here instead of running hundreds of hashes at once (an argon2id
        // check takes tens of MiB); the CONNECT deadline bounds the wait.
        let Ok(_slot) = HASHING_SLOTS.acquire().await else {
            return AuthDecision::Deny(ReasonCode::SERVER_UNAVAILABLE);
        };
        let verified = tokio::task::spawn_blocking(move || passwords.verify(&username, &password))
            .await
            .unwrap_or(false);
        if verified {
            AuthDecision::Allow(Grant::default())
        } else {
            AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        }
    }

    /// SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677) against the password file's SCRAM
    /// lines: the client-first-message comes with CONNECT (or AUTH 0x19 to re-authenticate)
    /// and gets the server-first-message in AUTH 0x18; the client-final-message comes in AUTH
    /// 0x18 and gets the server-final-message in CONNACK (or AUTH 0x00).
    ///
    /// Cheap enough for the connection's task: `Hi` ran when the credential was made, and
    /// checking a proof is a few HMACs.
    fn scram(
        &self,
        mechanism: ScramMechanism,
        request: &AuthRequest,
        exchange: Option<Box<Exchange>>,
    ) -> (AuthDecision, Option<Box<Exchange>>) {
        let Some(passwords) = &self.passwords else {
            // SCRAM needs the credentials of a password file.
            return (
                AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD),
                None,
            );
        };
        let deny = |why: &dyn std::fmt::Display| {
            tracing::debug!(peer = ?request.remote_addr, method = mechanism.name(), "SCRAM refused: {why}");
            (AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED), None)
        };
        let data = request.data.as_deref().unwrap_or_default();
        match request.stage {
            AuthStage::Connect | AuthStage::Reauthenticate => {
                let proven = match request.stage {
                    AuthStage::Connect => None,
                    _ => match exchange.as_ref().and_then(|e| e.user.clone()) {
                        Some(user) => Some(user),
                        None => return deny(&"re-authentication without a completed exchange"),
                    },
                };
                let first = match ClientFirst::parse(data) {
                    Ok(first) => first,
                    Err(e) => return deny(&e),
                };
                if let Some(user) = &proven
                    && first.username() != user
                {
                    return deny(&"re-authentication names another user");
                }
                // A User Name in CONNECT, if any, must be the user SCRAM proves.
                if request.stage == AuthStage::Connect
                    && let Some(name) = &request.username
                    && &**name != first.username()
                {
                    return deny(&"CONNECT's User Name is not the SCRAM user name");
                }
                let (Some(fakes), Some(nonce)) = (FakeCredentials::process(), scram::fresh_nonce())
                else {
                    tracing::warn!("SCRAM refused: no random numbers from the operating system");
                    return (AuthDecision::Deny(ReasonCode::UNSPECIFIED_ERROR), None);
                };
                let credential = passwords.scram_credential(first.username(), mechanism);
                let server = ScramServer::start(mechanism, first, credential, fakes, &nonce);
                let server_first = Bytes::copy_from_slice(server.server_first().as_bytes());
                let kept = Exchange {
                    scram: Some(server),
                    user: proven,
                };
                (
                    AuthDecision::Continue(Some(server_first)),
                    Some(Box::new(kept)),
                )
            }
            AuthStage::Continue => {
                let Some(server) = exchange.and_then(|e| e.scram) else {
                    return deny(&"AUTH 0x18 without a SCRAM exchange under way");
                };
                if server.mechanism() != mechanism {
                    return deny(&"AUTH 0x18 with another method");
                }
                match server.finish(data) {
                    Ok(server_final) => {
                        let user = server.username().to_owned();
                        let grant = Grant {
                            username: Some(ByteString::from(user.as_str())),
                            data: Some(Bytes::from(server_final.into_bytes())),
                            ..Grant::default()
                        };
                        let kept = Exchange {
                            scram: None,
                            user: Some(user),
                        };
                        (AuthDecision::Allow(grant), Some(Box::new(kept)))
                    }
                    Err(e) => deny(&format_args!("{} ({})", e, e.server_final())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tern_codec::ProtocolVersion;

    use super::*;
    use crate::auth::password_file::encode_scram;
    use crate::auth::scram::ScramCredential;
    use crate::auth::scram::tests::client_final;

    /// alice (password "pencil") with both SCRAM lines and bob with a SCRAM-SHA-256 line.
    fn authenticator() -> Arc<Authenticator> {
        let mut text = String::new();
        for (user, mechanisms) in [
            ("alice", &ScramMechanism::ALL[..]),
            ("bob", &[ScramMechanism::Sha256][..]),
        ] {
            for &m in mechanisms {
                let credential = ScramCredential::derive(m, b"pencil", b"salt of 16 bytes", 4096);
                text.push_str(&format!("{user}:{}\n", encode_scram(m, &credential)));
            }
        }
        let passwords = PasswordFile::parse(&text).unwrap();
        Arc::new(Authenticator::new(Some(Arc::new(passwords))))
    }

    fn request(stage: AuthStage, method: &str, data: &str) -> AuthRequest {
        AuthRequest {
            stage,
            version: ProtocolVersion::V5,
            client_id: ByteString::from("c"),
            username: None,
            password: None,
            method: Some(ByteString::from(method)),
            data: Some(Bytes::copy_from_slice(data.as_bytes())),
            remote_addr: None,
        }
    }

    async fn step(
        a: &Arc<Authenticator>,
        request: AuthRequest,
        exchange: Option<Box<Exchange>>,
    ) -> (AuthDecision, Option<Box<Exchange>>) {
        a.clone().decide(request, exchange).await
    }

    fn denied(decision: &AuthDecision) -> Option<ReasonCode> {
        match decision {
            AuthDecision::Deny(reason) => Some(*reason),
            _ => None,
        }
    }

    /// Runs one exchange (`first_stage` then Continue) for `user` with `password`; returns the
    /// final decision and what it kept.
    async fn exchange(
        a: &Arc<Authenticator>,
        m: ScramMechanism,
        first_stage: AuthStage,
        user: &str,
        password: &str,
        kept: Option<Box<Exchange>>,
    ) -> (AuthDecision, Option<Box<Exchange>>) {
        let bare = format!("n={user},r=nonce");
        let (decision, kept) = step(
            a,
            request(first_stage, m.name(), &format!("n,,{bare}")),
            kept,
        )
        .await;
        let AuthDecision::Continue(Some(server_first)) = decision else {
            return (decision, kept);
        };
        let server_first = std::str::from_utf8(&server_first).unwrap();
        let last = client_final(m, password, "n,,", &bare, server_first);
        step(a, request(AuthStage::Continue, m.name(), &last), kept).await
    }

    #[tokio::test]
    async fn scram_login_and_reauthentication() {
        let a = authenticator();
        for m in ScramMechanism::ALL {
            let (decision, kept) =
                exchange(&a, m, AuthStage::Connect, "alice", "pencil", None).await;
            let AuthDecision::Allow(grant) = decision else {
                panic!("{decision:?}")
            };
            assert_eq!(grant.username.as_deref(), Some("alice"));
            assert!(grant.data.unwrap().starts_with(b"v="));
            let (decision, kept) =
                exchange(&a, m, AuthStage::Reauthenticate, "alice", "pencil", kept).await;
            assert!(matches!(decision, AuthDecision::Allow(_)), "{decision:?}");
            // Once more: the exchange keeps the user across re-authentications.
            let (decision, _) =
                exchange(&a, m, AuthStage::Reauthenticate, "alice", "pencil", kept).await;
            assert!(matches!(decision, AuthDecision::Allow(_)), "{decision:?}");
        }
    }

    #[tokio::test]
    async fn wrong_password_unknown_user_and_missing_mechanism_are_refused_alike() {
        let a = authenticator();
        for (m, user, password) in [
            (ScramMechanism::Sha256, "alice", "wrong"),
            (ScramMechanism::Sha256, "nobody", "pencil"),
            // bob has no SCRAM-SHA-512 line.
            (ScramMechanism::Sha512, "bob", "pencil"),
        ] {
            let (decision, _) = exchange(&a, m, AuthStage::Connect, user, password, None).await;
            assert_eq!(
                denied(&decision),
                Some(ReasonCode::NOT_AUTHORIZED),
                "{user}"
            );
        }
    }

    #[tokio::test]
    async fn reauthentication_must_prove_the_same_user() {
        let a = authenticator();
        let m = ScramMechanism::Sha256;
        let (_, kept) = exchange(&a, m, AuthStage::Connect, "alice", "pencil", None).await;
        let (decision, _) = exchange(&a, m, AuthStage::Reauthenticate, "bob", "pencil", kept).await;
        assert_eq!(denied(&decision), Some(ReasonCode::NOT_AUTHORIZED));
        // Without a completed exchange there is nobody to re-authenticate.
        let (decision, _) =
            exchange(&a, m, AuthStage::Reauthenticate, "alice", "pencil", None).await;
        assert_eq!(denied(&decision), Some(ReasonCode::NOT_AUTHORIZED));
    }

    #[tokio::test]
    async fn steps_out_of_order_are_refused() {
        let a = authenticator();
        let m = ScramMechanism::Sha256;
        let last = request(AuthStage::Continue, m.name(), "c=biws,r=nonce,p=AAAA");
        let (decision, kept) = step(&a, last.clone(), None).await;
        assert_eq!(denied(&decision), Some(ReasonCode::NOT_AUTHORIZED));
        assert!(kept.is_none());
        // After a completed exchange, another client-final-message has nothing to answer.
        let (_, kept) = exchange(&a, m, AuthStage::Connect, "alice", "pencil", None).await;
        assert!(kept.is_some());
        let (decision, _) = step(&a, last, kept).await;
        assert_eq!(denied(&decision), Some(ReasonCode::NOT_AUTHORIZED));
    }

    #[tokio::test]
    async fn connect_user_name_must_match_the_scram_user() {
        let a = authenticator();
        let mut first = request(AuthStage::Connect, "SCRAM-SHA-256", "n,,n=alice,r=x");
        first.username = Some(ByteString::from("bob"));
        let (decision, _) = step(&a, first.clone(), None).await;
        assert_eq!(denied(&decision), Some(ReasonCode::NOT_AUTHORIZED));
        first.username = Some(ByteString::from("alice"));
        let (decision, _) = step(&a, first, None).await;
        assert!(
            matches!(decision, AuthDecision::Continue(Some(_))),
            "{decision:?}"
        );
    }

    #[tokio::test]
    async fn other_methods_and_scram_without_a_password_file_are_0x8c() {
        let a = authenticator();
        let first = request(AuthStage::Connect, "SCRAM-SHA-1", "n,,n=alice,r=x");
        let (decision, _) = step(&a, first, None).await;
        assert_eq!(
            denied(&decision),
            Some(ReasonCode::BAD_AUTHENTICATION_METHOD)
        );
        let none = Arc::new(Authenticator::new(None));
        let first = request(AuthStage::Connect, "SCRAM-SHA-256", "n,,n=alice,r=x");
        let (decision, _) = step(&none, first, None).await;
        assert_eq!(
            denied(&decision),
            Some(ReasonCode::BAD_AUTHENTICATION_METHOD)
        );
    }
}
