//! The HTTP authentication hook (`[auth.http]`): each client that logs in with a user name
//! and/or password is POSTed to a web service, which answers allow, deny or ignore, and with
//! an allow the client's access rules and an expiry.
//!
//! # The exchange
//!
//! Request: `POST <url>` with `Content-Type: application/json`, the configured extra headers,
//! and the body
//!
//! ```json
//! {"clientid": "dev1", "username": "alice", "password": "secret",
//!  "peerhost": "192.0.2.7", "protocol": "5.0"}
//! ```
//!
//! `username` and `password` are `null` when CONNECT has none; a password that is not UTF-8 is
//! sent as `null` with its bytes in `password_base64`; `protocol` is `3.1`, `3.1.1` or `5.0`.
//!
//! Answer: a 2xx status and a JSON object
//!
//! ```json
//! {"result": "allow", "acl": {"pub": ["up/%c"], "sub": ["down/%c/#"]}, "expire_at": 1767225600}
//! ```
//!
//! - `result`: `allow` lets the client in, `deny` refuses it (CONNACK 0x86 Bad User Name or
//!   Password; MQTT 3.x: return code 4), `ignore` leaves the decision to the next source (JWT,
//!   then the password file; with none left, the client is refused).
//! - `acl` (optional, with `allow`): the client's own rules, in the shape of the JWT `acl`
//!   claim (see [`super::jwt::client_acl`]); they apply in addition to the ACL file. The
//!   authorization decisions come with the authentication answer, so that every PUBLISH and
//!   SUBSCRIBE is checked locally, without a request per message.
//! - `expire_at` (optional, with `allow`): Unix time in seconds at which the connection is
//!   closed (MQTT 5: DISCONNECT 0xA0). A time already past refuses the client.
//!
//! # Failing closed
//!
//! No answer within `timeout` (connection, TLS handshake, request and answer together), a
//! connection error, a status other than 2xx, a body that is not such an object: the client is
//! refused with CONNACK 0x88 Server Unavailable (MQTT 3.x: return code 3), never let in and
//! never passed on to the next source. The failure is logged as a warning (at most every ten
//! seconds; the others at debug level).
//!
//! # Cache
//!
//! Answers (allow, deny and ignore, never failures) are kept for `cache_ttl`, and an allow no
//! longer than its `expire_at`, keyed by client id, user name and a keyed hash of the password
//! (HMAC-SHA-256 with a random key of this process; the password itself is never kept). At
//! most `cache_size` answers are kept; the ones closest to their end make room first.
//! `cache_ttl = 0` turns the cache off, for hooks whose answer depends on more than the
//! credentials (the peer address, the time of day).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64ct::{Base64, Encoding};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Map, Value};
use sha2::Sha256;
use tern_codec::{ProtocolVersion, ReasonCode};
use tern_core::{Acl, AuthDecision, AuthRequest, Grant};

use super::jwt::{client_acl, instant_at};

/// The timeout when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long answers are cached when nothing is configured.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// How many answers are cached at most when nothing is configured.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;
/// The largest answer body read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Where the system's CA certificates are, for an https hook with no `cafile`/`capath`.
const SYSTEM_CA_DIR: &str = "/etc/ssl/certs";
/// How often a failing hook is logged as a warning.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Headers the hook request sets itself.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// The settings of `[auth.http]`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpHookSettings {
    /// The `http://` or `https://` URL requests are POSTed to.
    pub url: String,
    /// How long a request (connection included) may take.
    pub timeout: Duration,
    /// Extra request headers, such as an API key.
    pub headers: Vec<(String, String)>,
    /// How long an answer is reused; zero turns the cache off.
    pub cache_ttl: Duration,
    /// How many answers are kept at most; zero turns the cache off.
    pub cache_size: usize,
    /// CA certificates for an https hook (default: the system's, in /etc/ssl/certs).
    pub cafile: Option<PathBuf>,
    /// A directory of CA certificate files.
    pub capath: Option<PathBuf>,
    /// A client certificate chain to present to an https hook.
    pub certfile: Option<PathBuf>,
    /// The key of `certfile`.
    pub keyfile: Option<PathBuf>,
}

impl HttpHookSettings {
    /// Settings for `url`, with the defaults for the rest.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: DEFAULT_TIMEOUT,
            headers: Vec::new(),
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_size: DEFAULT_CACHE_SIZE,
            cafile: None,
            capath: None,
            certfile: None,
            keyfile: None,
        }
    }
}

/// Header values (API keys...) are not shown.
impl fmt::Debug for HttpHookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpHookSettings")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("headers", &header_names)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_size", &self.cache_size)
            .field("cafile", &self.cafile)
            .field("capath", &self.capath)
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .finish()
    }
}

/// A setting of `[auth.http]` that cannot be used: which one (its TOML key) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSetupError {
    /// The key at fault (`url`, `timeout`, `headers.X-Api-Key`, `cafile`...).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for HookSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for HookSetupError {}

fn setup_error(key: &str, message: impl Into<String>) -> HookSetupError {
    HookSetupError {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// What the hook said about a client.
#[derive(Debug, Clone)]
enum Verdict {
    Allow {
        acl: Option<Arc<Acl>>,
        expire_at: Option<f64>,
    },
    Deny,
    Ignore,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    client_id: Box<str>,
    username: Option<Box<str>>,
    /// HMAC-SHA-256 of the password under [`HttpHook::cache_secret`].
    password: [u8; 32],
}

#[derive(Debug)]
struct Cached {
    verdict: Verdict,
    until: Instant,
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The HTTP authentication hook.
pub struct HttpHook {
    settings: HttpHookSettings,
    uri: Uri,
    headers: HeaderMap,
    client: HttpsClient,
    /// The key of the password hashes in cache keys; `None` (no random numbers from the
    /// system) turns the cache off.
    cache_secret: Option<[u8; 32]>,
    cache: Mutex<HashMap<CacheKey, Cached>>,
    last_warning: Mutex<Option<Instant>>,
}

impl fmt::Debug for HttpHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpHook")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Two hooks are equal when their settings are.
impl PartialEq for HttpHook {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl HttpHook {
    /// Checks the settings, reads the TLS files and makes the HTTP client (no connection is
    /// opened until the first client logs in).
    ///
    /// # Errors
    ///
    /// The setting at fault: a URL that is not `http://HOST...` or `https://HOST...`, a header
    /// that is not valid HTTP, a zero timeout, an unusable CA or certificate file.
    pub fn new(settings: HttpHookSettings) -> Result<Self, HookSetupError> {
        let uri = parse_url(&settings.url).map_err(|m| setup_error("url", m))?;
        let https = uri.scheme_str() == Some("https");
        if settings.timeout.is_zero() {
            return Err(setup_error("timeout", "must be longer than zero"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in &settings.headers {
            let key = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| setup_error(&key, "not a valid HTTP header name"))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(setup_error(&key, "this header is set by Tern itself"));
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                setup_error(
                    &key,
                    "not a valid HTTP header value (printable ASCII and blanks only)",
                )
            })?;
            headers.append(header, value);
        }
        let tls = if https {
            https_config(&settings)?
        } else {
            for (key, set) in [
                ("cafile", settings.cafile.is_some()),
                ("capath", settings.capath.is_some()),
                ("certfile", settings.certfile.is_some()),
                ("keyfile", settings.keyfile.is_some()),
            ] {
                if set {
                    return Err(setup_error(
                        key,
                        "applies to an https:// URL only, and `url` is http://",
                    ));
                }
            }
            plain_config()?
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let mut secret = [0u8; 32];
        let cache_secret = getrandom::fill(&mut secret).ok().map(|()| secret);
        Ok(Self {
            settings,
            uri,
            headers,
            client,
            cache_secret,
            cache: Mutex::new(HashMap::new()),
            last_warning: Mutex::new(None),
        })
    }

    /// The settings this hook was made from.
    #[must_use]
    pub fn settings(&self) -> &HttpHookSettings {
        &self.settings
    }

    /// Asks the hook (or the cache) about `request`: `None` when it answers `ignore`.
    pub async fn decide(&self, request: &AuthRequest) -> Option<AuthDecision> {
        let key = self.cache_key(request);
        if let Some(key) = &key
            && let Some(verdict) = self.cached(key)
        {
            return self.decision(verdict, request);
        }
        let verdict = match tokio::time::timeout(self.settings.timeout, self.ask(request)).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(why)) => return Some(self.failed(request, &why)),
            Err(_) => {
                let why = format!("no answer within {:?}", self.settings.timeout);
                return Some(self.failed(request, &why));
            }
        };
        if let Some(key) = key {
            self.remember(key, &verdict);
        }
        self.decision(verdict, request)
    }

    /// The decision for what the hook said.
    fn decision(&self, verdict: Verdict, request: &AuthRequest) -> Option<AuthDecision> {
        let refuse = |why: &str| {
            let peer = request.remote_addr;
            tracing::debug!(client = %request.client_id, ?peer, "HTTP hook: {why}");
            Some(AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD))
        };
        match verdict {
            Verdict::Ignore => None,
            Verdict::Deny => refuse("denied"),
            Verdict::Allow { expire_at, .. } if expire_at.is_some_and(|at| at <= unix_now()) => {
                refuse("allowed until a time already past (`expire_at`)")
            }
            Verdict::Allow { acl, expire_at } => Some(AuthDecision::Allow(Grant {
                acl,
                expires_at: expire_at.and_then(instant_at),
                ..Grant::default()
            })),
        }
    }

    /// A failed request: refused as Server Unavailable, logged.
    fn failed(&self, request: &AuthRequest, why: &str) -> AuthDecision {
        let now = Instant::now();
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| now.duration_since(at) >= WARNING_INTERVAL) {
            *last = Some(now);
            tracing::warn!(
                "HTTP authentication hook {}: {why}; refusing the clients it cannot decide",
                self.settings.url
            );
        } else {
            tracing::debug!(client = %request.client_id, "HTTP authentication hook: {why}");
        }
        AuthDecision::Deny(ReasonCode::SERVER_UNAVAILABLE)
    }

    /// One request to the hook.
    async fn ask(&self, request: &AuthRequest) -> Result<Verdict, String> {
        let body = request_body(request);
        let mut http_request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot make the request: {e}"))?;
        *http_request.headers_mut() = self.headers.clone();
        let response = self
            .client
            .request(http_request)
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("answered with HTTP status {status}"));
        }
        parse_answer(&body)
    }

    fn cache_key(&self, request: &AuthRequest) -> Option<CacheKey> {
        if self.settings.cache_ttl.is_zero() || self.settings.cache_size == 0 {
            return None;
        }
        let secret = self.cache_secret?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret).ok()?;
        match &request.password {
            None => mac.update(&[0]),
            Some(password) => {
                mac.update(&[1]);
                mac.update(password);
            }
        }
        Some(CacheKey {
            client_id: Box::from(&*request.client_id),
            username: request.username.as_deref().map(Box::from),
            password: mac.finalize().into_bytes().into(),
        })
    }

    fn cached(&self, key: &CacheKey) -> Option<Verdict> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match cache.get(key) {
            Some(entry) if entry.until > now => Some(entry.verdict.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, key: CacheKey, verdict: &Verdict) {
        let now = Instant::now();
        let mut until = now + self.settings.cache_ttl;
        if let Verdict::Allow {
            expire_at: Some(at),
            ..
        } = verdict
        {
            until = until.min(instant_at(*at).unwrap_or(until));
        }
        if until <= now {
            return;
        }
        let limit = self.settings.cache_size;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= limit && !cache.contains_key(&key) {
            cache.retain(|_, entry| entry.until > now);
            if cache.len() >= limit {
                // Make room for a tenth of the cache at once, the entries closest to their
                // end first, so that a full cache costs one sort per many insertions.
                let mut ends: Vec<Instant> = cache.values().map(|e| e.until).collect();
                let keep = limit - limit.div_ceil(10).max(1);
                ends.sort_unstable();
                let cutoff = ends.get(cache.len() - keep.min(cache.len())).copied();
                if let Some(cutoff) = cutoff {
                    cache.retain(|_, entry| entry.until > cutoff);
                }
                while cache.len() >= limit {
                    // Many entries end at the same instant: drop any.
                    let Some(k) = cache.keys().next().cloned() else {
                        break;
                    };
                    cache.remove(&k);
                }
            }
        }
        cache.insert(
            key,
            Cached {
                verdict: verdict.clone(),
                until,
            },
        );
    }

    /// How many answers the cache holds (tests).
    #[must_use]
    pub fn cached_answers(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Parses and checks the hook URL.
fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "expected an http:// or https:// URL such as `https://auth.example/mqtt`, got \
                 `{url}`"
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("`{url}` names no host"));
    };
    if authority.as_str().contains('@') {
        return Err(
            "user information in the URL is not supported: send credentials in `headers`"
                .to_owned(),
        );
    }
    if authority.host().is_empty() {
        return Err(format!("`{url}` names no host"));
    }
    Ok(uri)
}

/// TLS for an https hook: `cafile`/`capath` (else the system's CA directory) and an optional
/// client certificate, with rustls and ring as everywhere else in Tern.
fn https_config(settings: &HttpHookSettings) -> Result<rustls::ClientConfig, HookSetupError> {
    let mut capath = settings.capath.clone();
    if settings.cafile.is_none() && capath.is_none() {
        if Path::new(SYSTEM_CA_DIR).is_dir() {
            capath = Some(PathBuf::from(SYSTEM_CA_DIR));
        } else {
            return Err(setup_error(
                "cafile",
                format!(
                    "no CA certificates to verify the hook's certificate with ({SYSTEM_CA_DIR} \
                     does not exist): set `cafile` or `capath`"
                ),
            ));
        }
    }
    let files = tern_client::TlsFiles {
        cafile: settings.cafile.clone(),
        capath,
        certfile: settings.certfile.clone(),
        keyfile: settings.keyfile.clone(),
        ..tern_client::TlsFiles::default()
    };
    match files.load() {
        Ok(options) => Ok((*options.config).clone()),
        Err(e) => {
            let message = e.to_string();
            let key = [
                ("certfile", &settings.certfile),
                ("keyfile", &settings.keyfile),
                ("cafile", &settings.cafile),
                ("capath", &settings.capath),
            ]
            .into_iter()
            .find(|(_, path)| {
                path.as_ref()
                    .is_some_and(|p| message.contains(&*p.to_string_lossy()))
            })
            .map_or(
                if settings.certfile.is_some() != settings.keyfile.is_some() {
                    "certfile"
                } else {
                    "cafile"
                },
                |(key, _)| key,
            );
            Err(setup_error(key, message))
        }
    }
}

/// A TLS configuration for a plain http hook (never used: the connector needs one).
fn plain_config() -> Result<rustls::ClientConfig, HookSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_error("url", e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// The JSON body of a request about `request`.
fn request_body(request: &AuthRequest) -> Vec<u8> {
    let mut body = Map::new();
    body.insert(
        "clientid".to_owned(),
        Value::from(request.client_id.to_string()),
    );
    body.insert(
        "username".to_owned(),
        request
            .username
            .as_ref()
            .map_or(Value::Null, |u| Value::from(u.to_string())),
    );
    let password = request.password.as_deref();
    let text = password.and_then(|p| std::str::from_utf8(p).ok());
    body.insert("password".to_owned(), text.map_or(Value::Null, Value::from));
    if let (Some(bytes), None) = (password, text) {
        body.insert(
            "password_base64".to_owned(),
            Value::from(Base64::encode_string(bytes)),
        );
    }
    body.insert(
        "peerhost".to_owned(),
        request
            .remote_addr
            .map_or(Value::Null, |a| Value::from(a.ip().to_string())),
    );
    let protocol = match request.version {
        ProtocolVersion::V31 => "3.1",
        ProtocolVersion::V311 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    };
    body.insert("protocol".to_owned(), Value::from(protocol));
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

/// Reads the hook's answer.
fn parse_answer(body: &[u8]) -> Result<Verdict, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let Value::Object(answer) = value else {
        return Err("the answer is not a JSON object".to_owned());
    };
    let result = match answer.get("result") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("`result` in the answer is not a string".to_owned()),
        None => return Err("the answer has no `result`".to_owned()),
    };
    match result {
        "deny" => Ok(Verdict::Deny),
        "ignore" => Ok(Verdict::Ignore),
        "allow" => {
            let acl = match answer.get("acl") {
                None | Some(Value::Null) => None,
                Some(v) => Some(Arc::new(
                    client_acl(v).map_err(|e| format!("`acl` in the answer: {e}"))?,
                )),
            };
            let expire_at = match answer.get("expire_at") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_f64(),
                Some(_) => {
                    return Err(
                        "`expire_at` in the answer is not a number (Unix seconds)".to_owned()
                    );
                }
            };
            Ok(Verdict::Allow { acl, expire_at })
        }
        other => Err(format!(
            "`result` in the answer is `{other}`, expected `allow`, `deny` or `ignore`"
        )),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// An error and its causes, `: `-separated (hyper's errors say little at the top).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use bytes::Bytes;
    use tern_codec::ByteString;
    use tern_core::{Access, AuthStage, Identity};

    fn request(client_id: &str, username: Option<&str>, password: Option<&[u8]>) -> AuthRequest {
        AuthRequest {
            stage: AuthStage::Connect,
            version: ProtocolVersion::V311,
            client_id: ByteString::from(client_id),
            username: username.map(ByteString::from),
            password: password.map(Bytes::copy_from_slice),
            method: None,
            data: None,
            remote_addr: Some("192.0.2.7:4242".parse().unwrap()),
        }
    }

    #[test]
    fn request_bodies() {
        let body: Value =
            serde_json::from_slice(&request_body(&request("c1", Some("u"), Some(b"pw")))).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"clientid": "c1", "username": "u", "password": "pw",
                               "peerhost": "192.0.2.7", "protocol": "3.1.1"})
        );
        let body: Value =
            serde_json::from_slice(&request_body(&request("c1", None, Some(&[0xff, 0])))).unwrap();
        assert_eq!(body["username"], Value::Null);
        assert_eq!(body["password"], Value::Null);
        assert_eq!(body["password_base64"], "/wA=");
    }

    #[test]
    fn answers() {
        assert!(matches!(
            parse_answer(br#"{"result":"deny"}"#),
            Ok(Verdict::Deny)
        ));
        assert!(matches!(
            parse_answer(br#"{"result":"ignore","acl":"whatever"}"#),
            Ok(Verdict::Ignore)
        ));
        let Ok(Verdict::Allow { acl, expire_at }) =
            parse_answer(br#"{"result":"allow","acl":{"pub":["a/%c"]},"expire_at":2000000000}"#)
        else {
            panic!("not an allow");
        };
        assert_eq!(expire_at, Some(2_000_000_000.0));
        let who = Identity {
            client_id: "x",
            username: None,
        };
        assert!(acl.unwrap().allows(Access::Write, who, "a/x"));
        for bad in [
            &b"not json"[..],
            br#"["allow"]"#,
            br#"{}"#,
            br#"{"result":"ALLOW"}"#,
            br#"{"result":true}"#,
            br#"{"result":"allow","expire_at":"tomorrow"}"#,
            br#"{"result":"allow","acl":{"pub":["a\n#"]}}"#,
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn urls() {
        assert!(parse_url("http://127.0.0.1:8080/auth").is_ok());
        assert!(parse_url("https://auth.example/mqtt").is_ok());
        for bad in [
            "ftp://x/",
            "auth.example/mqtt",
            "http://u:p@host/",
            "http:///x",
            "x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_errors_name_the_key() {
        let e = HttpHook::new(HttpHookSettings::new("gopher://x")).unwrap_err();
        assert_eq!(e.key, "url");
        let mut s = HttpHookSettings::new("http://127.0.0.1:1/");
        s.headers = vec![("Content-Length".to_owned(), "1".to_owned())];
        assert_eq!(HttpHook::new(s).unwrap_err().key, "headers.Content-Length");
        let mut s = HttpHookSettings::new("http://127.0.0.1:1/");
        s.headers = vec![("X-Key".to_owned(), "a\nb".to_owned())];
        assert_eq!(HttpHook::new(s).unwrap_err().key, "headers.X-Key");
        let mut s = HttpHookSettings::new("http://127.0.0.1:1/");
        s.cafile = Some("/nonexistent".into());
        assert_eq!(HttpHook::new(s).unwrap_err().key, "cafile");
        let mut s = HttpHookSettings::new("https://127.0.0.1:1/");
        s.cafile = Some("/nonexistent/ca.pem".into());
        let e = HttpHook::new(s).unwrap_err();
        assert_eq!(e.key, "cafile");
        assert!(e.message.contains("/nonexistent/ca.pem"), "{e}");
        let mut s = HttpHookSettings::new("http://127.0.0.1:1/");
        s.timeout = Duration::ZERO;
        assert_eq!(HttpHook::new(s).unwrap_err().key, "timeout");
    }

    #[test]
    fn cache_is_bounded_and_keyed_by_the_password_hash() {
        let mut s = HttpHookSettings::new("http://127.0.0.1:1/");
        s.cache_size = 20;
        let hook = HttpHook::new(s).unwrap();
        let a = hook
            .cache_key(&request("c", Some("u"), Some(b"one")))
            .unwrap();
        let b = hook
            .cache_key(&request("c", Some("u"), Some(b"two")))
            .unwrap();
        let none = hook.cache_key(&request("c", Some("u"), None)).unwrap();
        let empty = hook.cache_key(&request("c", Some("u"), Some(b""))).unwrap();
        assert_ne!(a, b);
        assert_ne!(none, empty);
        assert_eq!(
            a,
            hook.cache_key(&request("c", Some("u"), Some(b"one")))
                .unwrap()
        );
        for i in 0..100 {
            let key = hook
                .cache_key(&request(&format!("c{i}"), None, Some(b"p")))
                .unwrap();
            hook.remember(key, &Verdict::Deny);
            assert!(hook.cached_answers() <= 20);
        }
        let last = hook.cache_key(&request("c99", None, Some(b"p"))).unwrap();
        assert!(matches!(hook.cached(&last), Some(Verdict::Deny)));
    }
}
