//! API keys and login tokens.
//!
//! A request authenticates with HTTP Basic `key:secret`, checked against the keys of the
//! configuration file (`[[admin.api_keys]]`, a secret in clear or a password-file hash) and of
//! the API key file (`[admin] api_key_file`, `key:hash` lines in the password file's formats),
//! or with `Authorization: Bearer TOKEN`, a token from `POST /api/v1/login` (random, held in
//! memory, valid for `[admin] token_ttl`, one hour by default). Secrets and tokens are compared in constant time: each is
//! reduced to its SHA-256 digest first, so that neither the comparison nor the token table's
//! lookup depends on where a guess goes wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::password_file::PasswordFile;
use crate::config::{AdminConfig, ApiSecret};

/// How long a login token stays valid.
/// The most tokens held at once; the oldest goes first beyond it.
const MAX_TOKENS: usize = 1024;

/// The API keys in force and the tokens issued; cheap to clone, shared with the reload hook.
#[derive(Clone)]
pub(crate) struct ApiKeys {
    keys: Arc<ArcSwap<KeySet>>,
    tokens: Arc<Mutex<HashMap<[u8; 32], Token>>>,
}

/// A login token: the key it was issued to and its expiry.
struct Token {
    key: String,
    expires: Instant,
}

/// The keys of one configuration.
struct KeySet {
    /// `[[admin.api_keys]]`.
    configured: HashMap<String, Verifier>,
    /// `api_key_file`.
    file: Option<Arc<PasswordFile>>,
    /// How long login tokens stay valid (`token_ttl`).
    ttl: Duration,
    /// Secrets already checked against a hash (the digest of `key:secret`), so that a client
    /// that sends its credentials with every request costs one hash, not one per request.
    /// Dropped with the key set on reload.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

enum Verifier {
    /// SHA-256 of the secret in clear.
    Clear([u8; 32]),
    /// A password-file hash, as a file of one line.
    Hash(PasswordFile),
}

/// Who a request is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// The API key.
    pub(crate) key: String,
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

impl KeySet {
    fn new(config: &AdminConfig) -> Self {
        let configured = config
            .api_keys
            .iter()
            .filter_map(|k| {
                let verifier = match &k.secret {
                    ApiSecret::Clear(secret) => Verifier::Clear(digest(&[secret.as_bytes()])),
                    // Checked when the configuration was read.
                    ApiSecret::Hash(hash) => {
                        Verifier::Hash(PasswordFile::parse(&format!("{}:{hash}", k.key)).ok()?)
                    }
                };
                Some((k.key.clone(), verifier))
            })
            .collect();
        Self {
            configured,
            file: config.api_key_file.as_ref().map(|f| f.contents.clone()),
            ttl: config.token_ttl,
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn len(&self) -> usize {
        self.configured.len() + self.file.as_ref().map_or(0, |f| f.len())
    }

    fn exists(&self, key: &str) -> bool {
        self.configured.contains_key(key) || self.file.as_ref().is_some_and(|f| f.contains(key))
    }

    /// Whether `secret` is the secret of `key` (slow when a hash must be computed).
    fn verify(&self, key: &str, secret: &str) -> bool {
        let seen = digest(&[key.as_bytes(), secret.as_bytes()]);
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied();
        if let Some(known) = cached
            && bool::from(known.ct_eq(&seen))
        {
            return true;
        }
        let ok = match self.configured.get(key) {
            Some(Verifier::Clear(expected)) => {
                return bool::from(expected.ct_eq(&digest(&[secret.as_bytes()])));
            }
            Some(Verifier::Hash(file)) => file.verify(key, secret.as_bytes()),
            // An unknown key costs a hash too when there is a file (its dummy entry).
            None => self
                .file
                .as_ref()
                .is_some_and(|f| f.verify(key, secret.as_bytes())),
        };
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if verified.len() >= MAX_TOKENS {
                verified.clear();
            }
            verified.insert(key.to_owned(), seen);
        }
        ok
    }
}

impl ApiKeys {
    /// The keys of `config`.
    pub(crate) fn from_config(config: &AdminConfig) -> Self {
        Self {
            keys: Arc::new(ArcSwap::from_pointee(KeySet::new(config))),
            tokens: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Replaces the keys with those of `config` (on reload) and returns how many there are.
    /// Tokens issued to keys that are gone stop working.
    pub(crate) fn reload(&self, config: &AdminConfig) -> usize {
        let set = KeySet::new(config);
        let n = set.len();
        self.keys.store(Arc::new(set));
        n
    }

    /// Whether no key is configured (every authenticated endpoint then answers 401).
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.load().len() == 0
    }

    /// Checks `key:secret`; slow (a password hash) the first time a secret is seen.
    pub(crate) async fn check_secret(&self, key: &str, secret: &str) -> Option<Principal> {
        let keys = self.keys.load_full();
        let (key, secret) = (key.to_owned(), secret.to_owned());
        tokio::task::spawn_blocking(move || keys.verify(&key, &secret).then_some(Principal { key }))
            .await
            .ok()
            .flatten()
    }

    /// Checks an `Authorization` header value: `Basic base64(key:secret)` or `Bearer TOKEN`.
    pub(crate) async fn check_header(&self, value: &str) -> Option<Principal> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = Base64::decode_vec(rest).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (key, secret) = text.split_once(':')?;
            self.check_secret(key, secret).await
        } else if scheme.eq_ignore_ascii_case("bearer") {
            self.check_token(rest)
        } else {
            None
        }
    }

    /// Issues a token for `principal`; returns it and its lifetime.
    pub(crate) fn issue_token(&self, principal: &Principal) -> Option<(String, Duration)> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).ok()?;
        let token = Base64UrlUnpadded::encode_string(&raw);
        let ttl = self.keys.load().ttl;
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.retain(|_, t| t.expires > now);
        if tokens.len() >= MAX_TOKENS
            && let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, t)| t.expires)
                .map(|(k, _)| *k)
        {
            tokens.remove(&oldest);
        }
        tokens.insert(
            digest(&[token.as_bytes()]),
            Token {
                key: principal.key.clone(),
                expires: now + ttl,
            },
        );
        Some((token, ttl))
    }

    /// The principal of a valid token whose key still exists.
    pub(crate) fn check_token(&self, token: &str) -> Option<Principal> {
        let id = digest(&[token.as_bytes()]);
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let found = tokens.get(&id)?;
        if found.expires <= Instant::now() {
            tokens.remove(&id);
            return None;
        }
        let key = found.key.clone();
        drop(tokens);
        self.keys.load().exists(&key).then_some(Principal { key })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::ApiKeyConfig;

    fn config(keys: &[(&str, ApiSecret)]) -> AdminConfig {
        AdminConfig {
            api_keys: keys
                .iter()
                .map(|(k, s)| ApiKeyConfig {
                    key: (*k).to_owned(),
                    secret: s.clone(),
                })
                .collect(),
            ..AdminConfig::default()
        }
    }

    fn basic(key: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            Base64::encode_string(format!("{key}:{secret}").as_bytes())
        )
    }

    #[tokio::test]
    async fn clear_and_hashed_secrets() {
        let hash = crate::auth::password_file::encode_sha512(b"hashed-secret", b"0123456789ab");
        let keys = ApiKeys::from_config(&config(&[
            ("a", ApiSecret::Clear("clear-secret".into())),
            ("b", ApiSecret::Hash(hash)),
        ]));
        assert!(!keys.is_empty());
        let ok = |k: &str| Some(Principal { key: k.to_owned() });
        assert_eq!(
            keys.check_header(&basic("a", "clear-secret")).await,
            ok("a")
        );
        assert_eq!(keys.check_header(&basic("a", "wrong")).await, None);
        assert_eq!(
            keys.check_header(&basic("b", "hashed-secret")).await,
            ok("b")
        );
        // Twice: the second answer comes from the cache.
        assert_eq!(
            keys.check_header(&basic("b", "hashed-secret")).await,
            ok("b")
        );
        assert_eq!(keys.check_header(&basic("b", "clear-secret")).await, None);
        assert_eq!(keys.check_header(&basic("c", "clear-secret")).await, None);
        assert_eq!(keys.check_header("Basic !!!").await, None);
        assert_eq!(keys.check_header("Digest x").await, None);
    }

    #[tokio::test]
    async fn tokens_expire_and_die_with_their_key() {
        let mut admin = config(&[("a", ApiSecret::Clear("clear-secret".into()))]);
        admin.token_ttl = Duration::from_millis(50);
        let keys = ApiKeys::from_config(&admin);
        let principal = Principal { key: "a".into() };
        let (token, ttl) = keys.issue_token(&principal).unwrap();
        assert_eq!(ttl, Duration::from_millis(50));
        assert_eq!(
            keys.check_header(&format!("Bearer {token}")).await,
            Some(principal.clone())
        );
        assert_eq!(keys.check_token("not-a-token"), None);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(keys.check_token(&token), None);

        admin.token_ttl = Duration::from_secs(3600);
        keys.reload(&admin);
        let (token, _) = keys.issue_token(&principal).unwrap();
        assert_eq!(keys.check_token(&token), Some(principal));
        assert_eq!(keys.reload(&AdminConfig::default()), 0);
        assert!(keys.is_empty());
        assert_eq!(keys.check_token(&token), None);
    }
}
