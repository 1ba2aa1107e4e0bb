//! `tern ctl`: the admin REST API from the command line.
//!
//! Every command but `apikey` is one HTTP request to the admin API (`--url`, HTTP Basic with
//! `--key`/`--secret`); the answer is printed as an aligned table, or as the API's JSON with
//! `--json`. `apikey` edits an API key file (`[admin] api_key_file`) locally.
//!
//! Exit statuses: 0 on success; 1 when the API refuses the request (its `{"code","message"}`
//! printed in words), when nothing answers at the URL, or when a file cannot be used; 2 for bad
//! flags and when the API does not accept the credentials (401), with a hint about keys.

use super::file_replace::write_atomically;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};

use crate::auth::password_file;

/// Exit status of a request the API refused, of an unreachable API, of a file error.
const EXIT_ERROR: u8 = 1;
/// Exit status of bad flags and of credentials the API does not accept.
const EXIT_USAGE: u8 = 2;
/// The admin API's default address (`[admin] listen`).
const DEFAULT_URL: &str = "http://127.0.0.1:18083";
/// PBKDF2 iterations of the `$7$` hashes of API key secrets: those of `tern passwd`.
const PBKDF2_ITERATIONS: u32 = 1000;
/// Salt of the `$7$` hashes (Mosquitto's length, which the password file reader expects).
const SALT_LEN: usize = 12;
/// Random bytes in a key's suffix and in a secret.
const KEY_SUFFIX_LEN: usize = 8;
const SECRET_LEN: usize = 32;
/// The longest API key name.
const MAX_NAME_LEN: usize = 64;

/// Flags of `tern ctl`.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Credentials: an API key and its secret, from `[[admin.api_keys]]` in the \
        configuration or from the `[admin] api_key_file` that `tern ctl apikey create` writes. \
        Give the secret in TERN_API_SECRET rather than --secret, which other local users can \
        see in the process list.\n\n\
        Exit status: 0 on success; 1 when the API refuses the request, when nothing answers at \
        the URL or when a file cannot be used; 2 for bad flags and for credentials the API does \
        not accept."
)]
pub struct CtlArgs {
    /// Base URL of the admin API.
    #[arg(
        long,
        value_name = "URL",
        env = "TERN_ADMIN_URL",
        default_value = DEFAULT_URL,
        global = true
    )]
    url: String,

    /// API key (HTTP Basic user name).
    #[arg(long, value_name = "KEY", env = "TERN_API_KEY", global = true)]
    key: Option<String>,

    /// The API key's secret.
    #[arg(
        long,
        value_name = "SECRET",
        env = "TERN_API_SECRET",
        hide_env_values = true,
        global = true
    )]
    secret: Option<String>,

    /// Print the API's JSON answer as it is instead of a table.
    #[arg(long, global = true)]
    json: bool,

    /// Give up on a request after this many seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    timeout: u64,

    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Clients: list (default), show one, kick one.
    Clients(ClientsArgs),
    /// Sessions: list (default), discard one.
    Sessions(SessionsArgs),
    /// List subscriptions.
    Subscriptions(SubscriptionsArgs),
    /// Subscribe a client (its session) to a topic filter.
    Subscribe(SubscribeArgs),
    /// Remove a subscription of a client.
    Unsubscribe {
        /// The client id.
        #[arg(value_name = "CLIENTID")]
        clientid: String,
        /// The topic filter.
        #[arg(value_name = "FILTER")]
        filter: String,
    },
    /// List routes: each subscribed topic filter and its number of subscribers.
    Topics(TopicsArgs),
    /// Retained messages: list (default), show one, delete one.
    Retained(RetainedArgs),
    /// Publish a message through the broker.
    Publish(PublishArgs),
    /// Counters and gauges of the broker.
    Stats,
    /// The listeners and their state.
    Listeners,
    /// Reload the configuration file (like SIGHUP); prints what changed.
    Reload,
    /// Health of the admin API (needs no key).
    Status,
    /// Create, list and delete API keys in an API key file (no request to the broker).
    Apikey(ApikeyArgs),
}

/// Paging of list commands.
#[derive(Debug, Args, Clone, Default)]
struct Paging {
    /// Page number, from 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    page: Option<u64>,
    /// Entries per page (the API's default is 100, its maximum 10000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit: Option<u64>,
}

impl Paging {
    fn add_to(&self, query: &mut Query) {
        query.add("page", self.page.map(|n| n.to_string()));
        query.add("limit", self.limit.map(|n| n.to_string()));
    }
}

#[derive(Debug, Args)]
struct ClientsArgs {
    #[command(subcommand)]
    command: Option<ClientsCommand>,
    #[command(flatten)]
    filter: ClientFilter,
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// List clients (the default).
    List(ClientFilter),
    /// Show everything about one client.
    Show {
        /// The client id.
        #[arg(value_name = "CLIENTID")]
        clientid: String,
    },
    /// Disconnect a client (MQTT 5 clients get DISCONNECT 0x98); its session stays until it
    /// expires.
    Kick {
        /// The client id.
        #[arg(value_name = "CLIENTID")]
        clientid: String,
    },
}

#[derive(Debug, Args, Clone, Default)]
struct ClientFilter {
    /// Only this client id.
    #[arg(long, value_name = "ID")]
    clientid: Option<String>,
    /// Only clients of this user name.
    #[arg(long, value_name = "USERNAME")]
    username: Option<String>,
    /// Only client ids containing this text.
    #[arg(long, value_name = "TEXT")]
    like_clientid: Option<String>,
    /// Only user names containing this text.
    #[arg(long, value_name = "TEXT")]
    like_username: Option<String>,
    /// Only connected clients.
    #[arg(long, conflicts_with = "disconnected")]
    connected: bool,
    /// Only disconnected clients (sessions kept for them).
    #[arg(long)]
    disconnected: bool,
    #[command(flatten)]
    paging: Paging,
}

impl ClientFilter {
    /// `self` with what `other` sets on top.
    fn merge(mut self, other: Self) -> Self {
        self.clientid = other.clientid.or(self.clientid);
        self.username = other.username.or(self.username);
        self.like_clientid = other.like_clientid.or(self.like_clientid);
        self.like_username = other.like_username.or(self.like_username);
        self.connected |= other.connected;
        self.disconnected |= other.disconnected;
        self.paging.page = other.paging.page.or(self.paging.page);
        self.paging.limit = other.paging.limit.or(self.paging.limit);
        self
    }
}

#[derive(Debug, Args)]
struct SessionsArgs {
    #[command(subcommand)]
    command: Option<SessionsCommand>,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List sessions (the default).
    List(Paging),
    /// Discard a session (its client, if connected, is disconnected).
    Discard {
        /// The client id of the session.
        #[arg(value_name = "CLIENTID")]
        clientid: String,
    },
}

#[derive(Debug, Args)]
struct SubscriptionsArgs {
    /// Only the subscriptions of this client.
    #[arg(long, value_name = "CLIENTID")]
    client: Option<String>,
    /// Only this topic filter.
    #[arg(long, value_name = "FILTER")]
    topic: Option<String>,
    /// Only subscriptions whose filter matches this topic name.
    #[arg(long, value_name = "TOPIC")]
    match_topic: Option<String>,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, Args)]
struct SubscribeArgs {
    /// The client id.
    #[arg(value_name = "CLIENTID")]
    clientid: String,
    /// The topic filter.
    #[arg(value_name = "FILTER")]
    filter: String,
    /// Maximum QoS of the subscription.
    #[arg(short = 'q', long = "qos", value_name = "QOS", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// No Local: the client does not get its own messages.
    #[arg(long)]
    nl: bool,
    /// Retain As Published.
    #[arg(long)]
    rap: bool,
    /// Retain Handling: 0 send retained messages, 1 only for a new subscription, 2 never.
    #[arg(long, value_name = "RH", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=2))]
    rh: u8,
}

#[derive(Debug, Args)]
struct TopicsArgs {
    /// Only this topic filter.
    #[arg(long, value_name = "FILTER")]
    topic: Option<String>,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, Args)]
struct RetainedArgs {
    #[command(subcommand)]
    command: Option<RetainedCommand>,
    #[command(flatten)]
    filter: RetainedFilter,
}

#[derive(Debug, Args, Clone, Default)]
struct RetainedFilter {
    /// Only topics matching this topic filter.
    #[arg(long, value_name = "FILTER")]
    topic: Option<String>,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, Subcommand)]
enum RetainedCommand {
    /// List retained messages (the default; no payloads).
    List(RetainedFilter),
    /// Show one retained message with its payload.
    Show {
        /// The topic.
        #[arg(value_name = "TOPIC")]
        topic: String,
    },
    /// Delete the retained message of a topic.
    Delete {
        /// The topic.
        #[arg(value_name = "TOPIC")]
        topic: String,
    },
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// The topic.
    #[arg(value_name = "TOPIC")]
    topic: String,
    /// The payload (UTF-8 text).
    #[arg(value_name = "MESSAGE")]
    message: String,
    /// QoS.
    #[arg(short = 'q', long = "qos", value_name = "QOS", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Retain the message.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
}

#[derive(Debug, Args)]
struct ApikeyArgs {
    #[command(subcommand)]
    command: ApikeyCommand,
}

#[derive(Debug, Subcommand)]
enum ApikeyCommand {
    /// Create a key named NAME with a random secret; prints the key and the secret (once).
    ///
    /// The key is NAME, a dot and random hexadecimal digits. With --file, `KEY:HASH` is added to
    /// that file (created with mode 0600 if needed); without, a `[[admin.api_keys]]` table to
    /// paste in the TOML configuration is printed.
    Create {
        /// The key's name: letters, digits, `-` and `_`.
        #[arg(value_name = "NAME")]
        name: String,
        /// The API key file (`[admin] api_key_file`).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// List the keys of an API key file.
    List {
        /// The API key file.
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
    },
    /// Delete a key (by name or by key) from an API key file.
    Delete {
        /// The key's name, or the whole key.
        #[arg(value_name = "NAME")]
        name: String,
        /// The API key file.
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
    },
}

/// Runs `tern ctl`.
///
/// # Errors
/// Only for failures outside the API conversation (the caller prints them, exit status 1);
/// refusals and unreachable APIs are printed here with their own exit statuses.
pub fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    if let CtlCommand::Apikey(apikey) = &args.command {
        return run_apikey(&apikey.command);
    }
    let api = match Api::new(&args) {
        Ok(api) => api,
        Err(message) => {
            eprintln!("tern ctl: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let output = runtime.block_on(execute(&api, &args.command, args.json));
    match output {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`tern ctl clients | head`) is not an error worth a message.
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("tern ctl: {error}");
            Ok(ExitCode::from(error.exit_status()))
        }
    }
}

/// Why a command failed, for the user.
#[derive(Debug)]
enum CtlError {
    /// Nothing answered at the URL (or not in time).
    Unreachable { url: String, reason: String },
    /// 401: no credentials, or credentials the API does not accept.
    Unauthorized { message: String, sent: bool },
    /// Any other refusal, with the API's `{"code","message"}` when it sent one.
    Api {
        status: StatusCode,
        code: Option<String>,
        message: String,
    },
    /// An answer that is not what the API promises.
    BadAnswer(String),
}

impl CtlError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::Unauthorized { .. } => EXIT_USAGE,
            _ => EXIT_ERROR,
        }
    }
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable { url, reason } => write!(
                f,
                "cannot reach the admin API at {url}: {reason} (is `tern serve` running with its \
                 admin listener there? set --url or TERN_ADMIN_URL)"
            ),
            Self::Unauthorized { message, sent } => {
                write!(f, "not authorized: {message}")?;
                if *sent {
                    write!(
                        f,
                        "\nhint: check the key and secret; a key is in `[[admin.api_keys]]` of \
                         the configuration or in its `[admin] api_key_file`"
                    )
                } else {
                    write!(
                        f,
                        "\nhint: give an API key with --key and --secret (or TERN_API_KEY and \
                         TERN_API_SECRET); create one with `tern ctl apikey create NAME --file \
                         FILE` and name FILE in `[admin] api_key_file`"
                    )
                }
            }
            Self::Api {
                status,
                code,
                message,
            } => match code {
                Some(code) => write!(f, "{message} ({code}, HTTP {})", status.as_u16()),
                None => write!(f, "{message} (HTTP {})", status.as_u16()),
            },
            Self::BadAnswer(why) => write!(f, "unexpected answer from the admin API: {why}"),
        }
    }
}

/// The admin API at `--url`, with the credentials of the command line.
struct Api {
    /// `scheme://authority` and the path prefix, without a trailing `/`.
    base: String,
    authorization: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Api {
    fn new(args: &CtlArgs) -> Result<Self, String> {
        let base = parse_base_url(&args.url)?;
        let authorization = match (&args.key, &args.secret) {
            (Some(key), Some(secret)) => {
                if key.contains(':') {
                    return Err(format!("invalid --key `{key}`: an API key has no `:`"));
                }
                Some(format!(
                    "Basic {}",
                    Base64::encode_string(format!("{key}:{secret}").as_bytes())
                ))
            }
            (Some(_), None) => {
                return Err("--key needs --secret (or TERN_API_SECRET)".to_owned());
            }
            (None, Some(_)) => return Err("--secret needs --key (or TERN_API_KEY)".to_owned()),
            (None, None) => None,
        };
        let timeout = Duration::from_secs(args.timeout);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            base,
            authorization,
            client,
            timeout,
        })
    }

    /// Sends one request; returns the JSON answer of a 2xx (`Value::Null` for an empty body).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CtlError> {
        let text = self.call_raw(method, path, body).await?;
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&text).map_err(|e| CtlError::BadAnswer(format!("not JSON: {e}")))
    }

    /// Sends one request; returns the body of a 2xx answer as it is.
    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Bytes, CtlError> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("tern-ctl/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(value) = &self.authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let bytes = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| CtlError::BadAnswer(format!("cannot build the request for {url}: {e}")))?;
        let unreachable = |reason: String| CtlError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(format!("connection lost: {}", error_chain(&e))))?
                .to_bytes();
            Ok::<_, CtlError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", self.timeout.as_secs())))??;
        if status.is_success() {
            return Ok(body);
        }
        let (code, message) = api_error(&body);
        let message = message.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("request refused")
                .to_owned()
        });
        if status == StatusCode::UNAUTHORIZED {
            return Err(CtlError::Unauthorized {
                message,
                sent: self.authorization.is_some(),
            });
        }
        Err(CtlError::Api {
            status,
            code,
            message,
        })
    }
}

/// The `{"code","message"}` of an error answer, if it is one.
fn api_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body).trim().to_owned();
        return (None, (!text.is_empty()).then(|| printable(&text)));
    };
    let field = |name: &str| map.get(name).and_then(Value::as_str).map(printable);
    (field("code"), field("message"))
}

/// Checks `--url` and returns it without a trailing `/`.
fn parse_base_url(url: &str) -> Result<String, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid --url `{url}`: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "invalid --url `{url}`: tern ctl speaks plain HTTP (the admin API listens on \
                 loopback by default); reach a remote one through an SSH tunnel"
            ));
        }
        _ => return Err(format!("invalid --url `{url}`: expected http://HOST:PORT")),
    }
    if uri.authority().is_none() {
        return Err(format!("invalid --url `{url}`: expected http://HOST:PORT"));
    }
    if uri.query().is_some() {
        return Err(format!("invalid --url `{url}`: a base URL has no query"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// An error and its causes, `: `-separated (hyper's errors say little at the top).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

// ---- Paths and queries ----

/// Percent-encodes `text` as one path segment or query value: everything but RFC 3986's
/// unreserved characters (so `/`, `+`, `#` and `$` of topics are encoded too).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A query string being built.
#[derive(Debug, Default)]
struct Query(Vec<(&'static str, String)>);

impl Query {
    fn add(&mut self, name: &'static str, value: Option<impl Into<String>>) {
        if let Some(value) = value {
            self.0.push((name, value.into()));
        }
    }

    /// `path` with the query appended.
    fn on(&self, path: &str) -> String {
        let mut out = path.to_owned();
        for (i, (name, value)) in self.0.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(name);
            out.push('=');
            out.push_str(&encode(value));
        }
        out
    }
}

// ---- Commands ----

/// What a list prints: the columns it prefers (API field, heading) and the word for its rows.
struct ListSpec {
    columns: &'static [(&'static str, &'static str)],
    noun: &'static str,
}

const CLIENT_COLUMNS: ListSpec = ListSpec {
    columns: &[
        ("clientid", "CLIENT ID"),
        ("username", "USERNAME"),
        ("connected", "CONNECTED"),
        ("ip_address", "ADDRESS"),
        ("port", "PORT"),
        ("proto_ver", "PROTOCOL"),
        ("listener", "LISTENER"),
        ("keepalive", "KEEPALIVE"),
        ("subscriptions_cnt", "SUBS"),
        ("mqueue_len", "QUEUED"),
        ("inflight_cnt", "INFLIGHT"),
        ("connected_at", "CONNECTED AT"),
    ],
    noun: "clients",
};

const SESSION_COLUMNS: ListSpec = ListSpec {
    columns: &[
        ("clientid", "CLIENT ID"),
        ("username", "USERNAME"),
        ("connected", "CONNECTED"),
        ("expiry_interval", "EXPIRY"),
        ("subscriptions_cnt", "SUBS"),
        ("mqueue_len", "QUEUED"),
        ("inflight_cnt", "INFLIGHT"),
        ("disconnected_at", "DISCONNECTED AT"),
    ],
    noun: "sessions",
};

const SUBSCRIPTION_COLUMNS: ListSpec = ListSpec {
    columns: &[
        ("clientid", "CLIENT ID"),
        ("topic", "TOPIC"),
        ("qos", "QOS"),
        ("nl", "NL"),
        ("rap", "RAP"),
        ("rh", "RH"),
        ("share_group", "SHARE GROUP"),
        ("subid", "SUB ID"),
    ],
    noun: "subscriptions",
};

const TOPIC_COLUMNS: ListSpec = ListSpec {
    columns: &[
        ("topic", "TOPIC"),
        ("subscribers", "SUBSCRIBERS"),
        ("count", "SUBSCRIBERS"),
        ("node", "NODE"),
    ],
    noun: "topics",
};

const RETAINED_COLUMNS: ListSpec = ListSpec {
    columns: &[
        ("topic", "TOPIC"),
        ("qos", "QOS"),
        ("payload_size", "SIZE"),
        ("from_clientid", "FROM"),
        ("message_expiry_interval", "EXPIRY"),
    ],
    noun: "retained messages",
};

const LISTENER_COLUMNS: ListSpec = ListSpec {
    columns: &[
        ("id", "ID"),
        ("type", "TYPE"),
        ("bind", "ADDRESS"),
        ("address", "ADDRESS"),
        ("running", "RUNNING"),
        ("current_connections", "CONNECTIONS"),
        ("connections", "CONNECTIONS"),
        ("max_connections", "MAX"),
        ("tls", "TLS"),
        ("websocket", "WEBSOCKET"),
    ],
    noun: "listeners",
};

async fn execute(api: &Api, command: &CtlCommand, json: bool) -> Result<String, CtlError> {
    match command {
        CtlCommand::Clients(args) => clients(api, args, json).await,
        CtlCommand::Sessions(args) => match &args.command {
            None | Some(SessionsCommand::List(_)) => {
                let paging = match &args.command {
                    Some(SessionsCommand::List(own)) => merge_paging(&args.paging, own),
                    _ => args.paging.clone(),
                };
                let mut query = Query::default();
                paging.add_to(&mut query);
                list(api, &query.on("/api/v1/sessions"), &SESSION_COLUMNS, json).await
            }
            Some(SessionsCommand::Discard { clientid }) => {
                let path = format!("/api/v1/sessions/{}", encode(clientid));
                done(api, Method::DELETE, &path, None, json, || {
                    format!("discarded the session of {}\n", printable(clientid))
                })
                .await
            }
        },
        CtlCommand::Subscriptions(args) => {
            let mut query = Query::default();
            query.add("clientid", args.client.clone());
            query.add("topic", args.topic.clone());
            query.add("match_topic", args.match_topic.clone());
            args.paging.add_to(&mut query);
            list(
                api,
                &query.on("/api/v1/subscriptions"),
                &SUBSCRIPTION_COLUMNS,
                json,
            )
            .await
        }
        CtlCommand::Subscribe(args) => {
            let path = format!("/api/v1/clients/{}/subscribe", encode(&args.clientid));
            let body = json!({
                "topic": args.filter,
                "qos": args.qos,
                "nl": u8::from(args.nl),
                "rap": u8::from(args.rap),
                "rh": args.rh,
            });
            done(api, Method::POST, &path, Some(body), json, || {
                format!(
                    "subscribed {} to {} (QoS {})\n",
                    printable(&args.clientid),
                    printable(&args.filter),
                    args.qos
                )
            })
            .await
        }
        CtlCommand::Unsubscribe { clientid, filter } => {
            let path = format!("/api/v1/clients/{}/unsubscribe", encode(clientid));
            done(
                api,
                Method::POST,
                &path,
                Some(json!({ "topic": filter })),
                json,
                || {
                    format!(
                        "unsubscribed {} from {}\n",
                        printable(clientid),
                        printable(filter)
                    )
                },
            )
            .await
        }
        CtlCommand::Topics(args) => {
            let mut query = Query::default();
            query.add("topic", args.topic.clone());
            args.paging.add_to(&mut query);
            list(api, &query.on("/api/v1/topics"), &TOPIC_COLUMNS, json).await
        }
        CtlCommand::Retained(args) => retained(api, args, json).await,
        CtlCommand::Publish(args) => {
            let body = json!({
                "topic": args.topic,
                "payload": args.message,
                "payload_encoding": "plain",
                "qos": args.qos,
                "retain": args.retain,
            });
            done(
                api,
                Method::POST,
                "/api/v1/publish",
                Some(body),
                json,
                || {
                    format!(
                        "published {} byte{} to {}{}\n",
                        args.message.len(),
                        if args.message.len() == 1 { "" } else { "s" },
                        printable(&args.topic),
                        if args.retain { " (retained)" } else { "" }
                    )
                },
            )
            .await
        }
        CtlCommand::Stats => {
            let body = api.call_raw(Method::GET, "/api/v1/stats", None).await?;
            if json {
                return Ok(raw_text(&body));
            }
            Ok(key_values(&parse(&body)?))
        }
        CtlCommand::Listeners => list(api, "/api/v1/listeners", &LISTENER_COLUMNS, json).await,
        CtlCommand::Reload => {
            let body = api.call_raw(Method::POST, "/api/v1/reload", None).await?;
            if json {
                return Ok(raw_text(&body));
            }
            Ok(reload_summary(&parse_or_null(&body)?))
        }
        CtlCommand::Status => {
            let body = api.call_raw(Method::GET, "/status", None).await?;
            if json {
                return Ok(raw_text(&body));
            }
            match parse(&body) {
                Ok(value @ Value::Object(_)) => Ok(key_values(&value)),
                _ => Ok(raw_text(&body)),
            }
        }
        CtlCommand::Apikey(_) => unreachable!("handled before any request"),
    }
}

async fn clients(api: &Api, args: &ClientsArgs, json: bool) -> Result<String, CtlError> {
    let filter = match &args.command {
        None => args.filter.clone(),
        Some(ClientsCommand::List(own)) => args.filter.clone().merge(own.clone()),
        Some(ClientsCommand::Show { clientid }) => {
            let path = format!("/api/v1/clients/{}", encode(clientid));
            let body = api.call_raw(Method::GET, &path, None).await?;
            if json {
                return Ok(raw_text(&body));
            }
            let mut out = key_values(&parse(&body)?);
            // The subscriptions of the client, when the API lists them.
            let path = format!("/api/v1/clients/{}/subscriptions", encode(clientid));
            if let Ok(subscriptions) = api.call(Method::GET, &path, None).await {
                let rows = rows_of(&subscriptions);
                out.push('\n');
                if rows.is_empty() {
                    out.push_str("no subscriptions\n");
                } else {
                    out.push_str(&table(rows, &SUBSCRIPTION_COLUMNS));
                }
            }
            return Ok(out);
        }
        Some(ClientsCommand::Kick { clientid }) => {
            let path = format!("/api/v1/clients/{}", encode(clientid));
            return done(api, Method::DELETE, &path, None, json, || {
                format!("kicked {}\n", printable(clientid))
            })
            .await;
        }
    };
    let mut query = Query::default();
    query.add("clientid", filter.clientid);
    query.add("username", filter.username);
    query.add("like_clientid", filter.like_clientid);
    query.add("like_username", filter.like_username);
    if filter.connected {
        query.add("conn_state", Some("connected"));
    }
    if filter.disconnected {
        query.add("conn_state", Some("disconnected"));
    }
    filter.paging.add_to(&mut query);
    list(api, &query.on("/api/v1/clients"), &CLIENT_COLUMNS, json).await
}

async fn retained(api: &Api, args: &RetainedArgs, json: bool) -> Result<String, CtlError> {
    let filter = match &args.command {
        None => args.filter.clone(),
        Some(RetainedCommand::List(own)) => RetainedFilter {
            topic: own.topic.clone().or_else(|| args.filter.topic.clone()),
            paging: merge_paging(&args.filter.paging, &own.paging),
        },
        Some(RetainedCommand::Show { topic }) => {
            let path = format!("/api/v1/mqtt/retainer/message/{}", encode(topic));
            let body = api.call_raw(Method::GET, &path, None).await?;
            if json {
                return Ok(raw_text(&body));
            }
            return Ok(retained_message(parse(&body)?));
        }
        Some(RetainedCommand::Delete { topic }) => {
            let path = format!("/api/v1/mqtt/retainer/message/{}", encode(topic));
            return done(api, Method::DELETE, &path, None, json, || {
                format!("deleted the retained message of {}\n", printable(topic))
            })
            .await;
        }
    };
    let mut query = Query::default();
    query.add("topic", filter.topic);
    filter.paging.add_to(&mut query);
    list(
        api,
        &query.on("/api/v1/mqtt/retainer/messages"),
        &RETAINED_COLUMNS,
        json,
    )
    .await
}

fn merge_paging(outer: &Paging, inner: &Paging) -> Paging {
    Paging {
        page: inner.page.or(outer.page),
        limit: inner.limit.or(outer.limit),
    }
}

/// A list request: the raw JSON, or a table of its `data` and a line about the next page.
async fn list(api: &Api, path: &str, spec: &ListSpec, json: bool) -> Result<String, CtlError> {
    let body = api.call_raw(Method::GET, path, None).await?;
    if json {
        return Ok(raw_text(&body));
    }
    let value = parse(&body)?;
    let rows = rows_of(&value);
    let mut out = if rows.is_empty() {
        format!("no {}\n", spec.noun)
    } else {
        table(rows, spec)
    };
    if let Some(meta) = value.get("meta") {
        let more = meta.get("hasnext").and_then(Value::as_bool) == Some(true);
        if more {
            let page = meta.get("page").and_then(Value::as_u64).unwrap_or(1);
            let _ = match meta.get("count").and_then(Value::as_u64) {
                Some(count) => writeln!(
                    out,
                    "page {page}; {count} {} in all; next: --page {}",
                    spec.noun,
                    page + 1
                ),
                None => writeln!(out, "page {page}; next: --page {}", page + 1),
            };
        }
    }
    Ok(out)
}

/// A request whose answer matters only as success: `message()` (or the raw JSON).
async fn done(
    api: &Api,
    method: Method,
    path: &str,
    body: Option<Value>,
    json: bool,
    message: impl FnOnce() -> String,
) -> Result<String, CtlError> {
    let answer = api.call_raw(method, path, body).await?;
    if json {
        return Ok(if answer.is_empty() {
            "{}\n".to_owned()
        } else {
            raw_text(&answer)
        });
    }
    Ok(message())
}

fn parse(body: &[u8]) -> Result<Value, CtlError> {
    serde_json::from_slice(body).map_err(|e| CtlError::BadAnswer(format!("not JSON: {e}")))
}

fn parse_or_null(body: &[u8]) -> Result<Value, CtlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        parse(body)
    }
}

/// The body as text, ending with a newline.
fn raw_text(body: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The rows of a list answer: `{"data": [...]}`, or a bare array.
fn rows_of(value: &Value) -> &[Value] {
    match value {
        Value::Array(rows) => rows,
        Value::Object(map) => match map.get("data") {
            Some(Value::Array(rows)) => rows,
            _ => &[],
        },
        _ => &[],
    }
}

/// An aligned table of `rows`: the preferred columns present in some row (each heading once),
/// or every field of the first row when none is.
fn table(rows: &[Value], spec: &ListSpec) -> String {
    let present = |field: &str| rows.iter().any(|row| row.get(field).is_some());
    let mut columns: Vec<(String, String)> = Vec::new();
    for (field, heading) in spec.columns {
        if present(field) && !columns.iter().any(|(_, h)| h == heading) {
            columns.push(((*field).to_owned(), (*heading).to_owned()));
        }
    }
    if columns.is_empty()
        && let Some(Value::Object(first)) = rows.first()
    {
        columns = first
            .keys()
            .map(|k| (k.clone(), k.to_uppercase().replace('_', " ")))
            .collect();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|(field, _)| cell(row.get(field)))
                .collect()
        })
        .collect();
    let headings: Vec<String> = columns.into_iter().map(|(_, h)| h).collect();
    aligned(&headings, &cells)
}

/// Columns separated by two spaces, each as wide as its widest cell; no trailing blanks.
fn aligned(headings: &[String], rows: &[Vec<String>]) -> String {
    let width = |text: &str| text.chars().count();
    let mut widths: Vec<usize> = headings.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    for line in std::iter::once(headings).chain(rows.iter().map(Vec::as_slice)) {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < line.len() {
                text.extend(std::iter::repeat_n(' ', widths[i] - width(cell)));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// One value as table text: strings printable, booleans yes/no, absent and null `-`.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => printable(s),
        Some(Value::Bool(true)) => "yes".to_owned(),
        Some(Value::Bool(false)) => "no".to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => printable(&other.to_string()),
    }
}

/// `text` with control characters escaped: client ids, user names and topics come from
/// clients, and must not drive the terminal.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// An object as `name  value` lines, nested objects flattened with dots; other values as they
/// are.
fn key_values(value: &Value) -> String {
    let Value::Object(map) = value else {
        return format!("{}\n", cell(Some(value)));
    };
    let mut pairs = Vec::new();
    flatten("", map, &mut pairs);
    let rows: Vec<Vec<String>> = pairs.into_iter().map(|(k, v)| vec![k, v]).collect();
    let mut out = aligned(&[String::new(), String::new()], &rows);
    // Drop the empty heading line.
    out.drain(..=out.find('\n').unwrap_or(0));
    out
}

fn flatten(prefix: &str, map: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    for (key, value) in map {
        let name = if prefix.is_empty() {
            printable(key)
        } else {
            format!("{prefix}.{}", printable(key))
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten(&name, inner, out),
            other => out.push((name, cell(Some(other)))),
        }
    }
}

/// A retained message with its payload: as text when it is printable UTF-8, else in base64.
fn retained_message(mut value: Value) -> String {
    let payload = value
        .as_object_mut()
        .and_then(|map| map.remove("payload"))
        .and_then(|p| p.as_str().map(str::to_owned));
    let mut out = key_values(&value);
    if let Some(encoded) = payload {
        match Base64::decode_vec(&encoded) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text)
                    if !text
                        .chars()
                        .any(|c| c.is_control() && c != '\n' && c != '\t') =>
                {
                    let _ = write!(out, "payload:\n{text}");
                    if !text.ends_with('\n') {
                        out.push('\n');
                    }
                }
                _ => {
                    let _ = writeln!(out, "payload (base64): {encoded}");
                }
            },
            Err(_) => {
                let _ = writeln!(out, "payload: {}", printable(&encoded));
            }
        }
    }
    out
}

/// What `POST /api/v1/reload` answered, in words.
fn reload_summary(value: &Value) -> String {
    let changes: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => map
            .values()
            .find_map(|v| v.as_array())
            .map(|items| items.iter().collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if changes.is_empty() {
        return "reloaded: nothing changed\n".to_owned();
    }
    let mut out = "reloaded:\n".to_owned();
    for change in changes {
        let text = change
            .as_str()
            .map_or_else(|| change.to_string(), str::to_owned);
        let _ = writeln!(out, "  {}", printable(&text));
    }
    out
}

// ---- API key files ----

fn run_apikey(command: &ApikeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApikeyCommand::Create { name, file } => {
            if let Err(why) = check_name(name) {
                eprintln!("tern ctl: invalid key name `{}`: {why}", printable(name));
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            let created = NewKey::generate(name)?;
            match file {
                Some(file) => {
                    let mut lines = match std::fs::read(file) {
                        Ok(bytes) => KeyFile::parse(file, &bytes)?,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyFile::default(),
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot read {}", file.display()));
                        }
                    };
                    if lines.keys().any(|key| key_name(key) == name) {
                        bail!(
                            "{} already has a key named `{name}` (delete it first with \
                             `tern ctl apikey delete {name} --file {}`)",
                            file.display(),
                            file.display()
                        );
                    }
                    lines.push(format!("{}:{}", created.key, created.hash));
                    write_atomically("ctl", file, lines.text().as_bytes())?;
                    println!("key:    {}", created.key);
                    println!("secret: {}", created.secret);
                    println!(
                        "The secret is shown only this once; {} keeps only its hash.",
                        file.display()
                    );
                    println!(
                        "The broker reads the file named by `[admin] api_key_file` at start and \
                         on reload."
                    );
                }
                None => {
                    println!("key:    {}", created.key);
                    println!("secret: {}", created.secret);
                    println!(
                        "The secret is shown only this once. Add this to the TOML \
                         configuration:\n"
                    );
                    println!("[[admin.api_keys]]");
                    println!("key = \"{}\"", created.key);
                    println!("secret_hash = \"{}\"", created.hash);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApikeyCommand::List { file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let lines = KeyFile::parse(file, &bytes)?;
            let rows: Vec<Vec<String>> = lines
                .entries()
                .map(|(key, hash)| {
                    vec![
                        printable(key_name(key)),
                        printable(key),
                        hash_scheme(hash).to_owned(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no keys in {}", file.display());
            } else {
                let headings = ["NAME", "KEY", "HASH"].map(str::to_owned);
                print!("{}", aligned(&headings, &rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        ApikeyCommand::Delete { name, file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut lines = KeyFile::parse(file, &bytes)?;
            let removed = lines.remove(name);
            if removed.is_empty() {
                bail!("{} has no key named `{}`", file.display(), printable(name));
            }
            write_atomically("ctl", file, lines.text().as_bytes())?;
            for key in removed {
                println!("deleted {}", printable(&key));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A key just made: `NAME.HEX`, its secret and the secret's hash.
struct NewKey {
    key: String,
    secret: String,
    hash: String,
}

impl NewKey {
    fn generate(name: &str) -> anyhow::Result<Self> {
        let suffix = random_bytes::<KEY_SUFFIX_LEN>()?;
        let mut key = format!("{name}.");
        for byte in suffix {
            let _ = write!(key, "{byte:02x}");
        }
        let secret = Base64UrlUnpadded::encode_string(&random_bytes::<SECRET_LEN>()?);
        let hash = password_file::encode_pbkdf2(
            secret.as_bytes(),
            &random_bytes::<SALT_LEN>()?,
            PBKDF2_ITERATIONS,
        );
        Ok(Self { key, secret, hash })
    }
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    Ok(bytes)
}

/// Names are kept simple: they are part of the key, which goes in HTTP Basic and in the file.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("use only letters, digits, `-` and `_`".to_owned());
    }
    Ok(())
}

/// The name part of a key made by `apikey create` (`NAME.HEX`); the whole key otherwise.
fn key_name(key: &str) -> &str {
    match key.rsplit_once('.') {
        Some((name, suffix))
            if !name.is_empty()
                && suffix.len() == 2 * KEY_SUFFIX_LEN
                && suffix.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            name
        }
        _ => key,
    }
}

/// The hash's scheme, for `apikey list`.
fn hash_scheme(hash: &str) -> &'static str {
    if hash.starts_with("$7$") {
        "sha512-pbkdf2"
    } else if hash.starts_with("$6$") {
        "sha512"
    } else if hash.starts_with("$argon2id$") {
        "argon2id"
    } else {
        "unknown"
    }
}

/// The lines of an API key file, kept as they are (comments and blank lines included).
#[derive(Debug, Default)]
struct KeyFile {
    lines: Vec<String>,
}

impl KeyFile {
    fn parse(path: &Path, bytes: &[u8]) -> anyhow::Result<Self> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{} is not valid UTF-8", path.display()))?;
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if !trimmed.contains(':') {
                bail!(
                    "{}:{}: expected `KEY:HASH`, found no `:`",
                    path.display(),
                    i + 1
                );
            }
        }
        Ok(Self { lines })
    }

    /// `(key, hash)` of every entry.
    fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            line.split_once(':').map(|(k, h)| (k.trim(), h.trim()))
        })
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries().map(|(key, _)| key)
    }

    fn push(&mut self, line: String) {
        self.lines.push(line);
    }

    /// Removes the entries whose key is `name` or whose name is `name`; returns their keys.
    fn remove(&mut self, name: &str) -> Vec<String> {
        let mut removed = Vec::new();
        self.lines.retain(|line| {
            let trimmed = line.trim();
            if trimmed.starts_with('#') {
                return true;
            }
            match trimmed.split_once(':') {
                Some((key, _)) if key.trim() == name || key_name(key.trim()) == name => {
                    removed.push(key.trim().to_owned());
                    false
                }
                _ => true,
            }
        });
        removed
    }

    fn text(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::auth::password_file::PasswordFile;

    fn parse_args(args: &[&str]) -> Result<CtlArgs, clap::Error> {
        crate::tools::parse_flags("ctl", args)
    }

    #[test]
    fn command_lines() {
        for good in [
            &["clients"][..],
            &["clients", "list", "--connected", "--page", "2"],
            &["clients", "--username", "u", "--limit", "5"],
            &["clients", "show", "a/b"],
            &["clients", "kick", "x", "--json"],
            &["sessions"],
            &["sessions", "discard", "x"],
            &["subscriptions", "--client", "x", "--topic", "a/#"],
            &["subscribe", "x", "a/+", "-q", "2", "--nl", "--rh", "1"],
            &["unsubscribe", "x", "a/+"],
            &["topics"],
            &["retained", "--topic", "#"],
            &["retained", "show", "a/b"],
            &["retained", "delete", "a/b"],
            &["publish", "t", "hello", "-q", "1", "-r"],
            &["stats"],
            &["listeners"],
            &["reload"],
            &["status"],
            &["apikey", "create", "ci"],
            &["apikey", "list", "--file", "f"],
            &["apikey", "delete", "ci", "--file", "f"],
        ] {
            assert!(parse_args(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            &[][..],
            &["clients", "--connected", "--disconnected"],
            &["clients", "show"],
            &["subscribe", "x", "a", "-q", "3"],
            &["clients", "--limit", "0"],
            &["clients", "--limit", "10001"],
            &["apikey", "list"],
            &["stats", "--timeout", "0"],
        ] {
            assert!(parse_args(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls_and_queries() {
        assert_eq!(
            parse_base_url("http://127.0.0.1:18083/").unwrap(),
            "http://127.0.0.1:18083"
        );
        assert_eq!(
            parse_base_url("http://h:1/tern/").unwrap(),
            "http://h:1/tern"
        );
        assert!(
            parse_base_url("https://h:1")
                .unwrap_err()
                .contains("plain HTTP")
        );
        assert!(parse_base_url("h:1").is_err());
        assert!(parse_base_url("http://h:1/?a=b").is_err());
        assert_eq!(encode("a/b c+#$é~"), "a%2Fb%20c%2B%23%24%C3%A9~");
        let mut q = Query::default();
        q.add("clientid", Some("a&b"));
        q.add("page", None::<String>);
        q.add("limit", Some("5"));
        assert_eq!(q.on("/x"), "/x?clientid=a%26b&limit=5");
    }

    #[test]
    fn tables_align_and_escape() {
        let rows = vec![
            json!({"clientid": "a", "connected": true, "port": 1883, "other": 1}),
            json!({"clientid": "evil\u{1b}[31m", "connected": false, "username": null}),
        ];
        assert_eq!(
            table(&rows, &CLIENT_COLUMNS),
            "CLIENT ID       USERNAME  CONNECTED  PORT\n\
             a               -         yes        1883\n\
             evil\\u{1b}[31m  -         no         -\n"
        );
        // No preferred column: every field of the first row.
        let spec = ListSpec {
            columns: &[("zz", "ZZ")],
            noun: "things",
        };
        assert_eq!(
            table(&[json!({"a_b": 1, "c": "x"})], &spec),
            "A B  C\n1    x\n"
        );
    }

    #[test]
    fn key_values_flatten() {
        let value = json!({"b": 2, "a": {"x": true, "y": "t"}, "c": []});
        assert_eq!(key_values(&value), "a.x  yes\na.y  t\nb    2\nc    []\n");
    }

    #[test]
    fn retained_payloads() {
        let text = retained_message(json!({"topic": "t", "payload": "aGVsbG8="}));
        assert_eq!(text, "topic  t\npayload:\nhello\n");
        let binary = retained_message(json!({"topic": "t", "payload": "AAEC"}));
        assert!(binary.ends_with("payload (base64): AAEC\n"), "{binary}");
    }

    #[test]
    fn api_errors_in_words() {
        assert_eq!(
            api_error(br#"{"code":"NOT_FOUND","message":"no client x"}"#),
            (Some("NOT_FOUND".to_owned()), Some("no client x".to_owned()))
        );
        assert_eq!(api_error(b"plain"), (None, Some("plain".to_owned())));
        let error = CtlError::Api {
            status: StatusCode::NOT_FOUND,
            code: Some("NOT_FOUND".to_owned()),
            message: "no client x".to_owned(),
        };
        assert_eq!(error.to_string(), "no client x (NOT_FOUND, HTTP 404)");
        assert_eq!(error.exit_status(), EXIT_ERROR);
        let error = CtlError::Unauthorized {
            message: "bad key".to_owned(),
            sent: false,
        };
        assert_eq!(error.exit_status(), EXIT_USAGE);
        assert!(error.to_string().contains("tern ctl apikey create"));
    }

    #[test]
    fn new_keys_verify_and_name_themselves() {
        let created = NewKey::generate("ci-1").unwrap();
        assert_eq!(key_name(&created.key), "ci-1");
        assert_eq!(created.key.len(), "ci-1.".len() + 16);
        assert_eq!(created.secret.len(), 43);
        let file = PasswordFile::parse(&format!("{}:{}\n", created.key, created.hash)).unwrap();
        assert!(file.verify(&created.key, created.secret.as_bytes()));
        assert!(!file.verify(&created.key, b"wrong"));
        assert_eq!(key_name("plain"), "plain");
        assert_eq!(key_name("a.b"), "a.b");
        for bad in ["", "a:b", "a.b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_files_keep_other_lines() {
        let path = Path::new("keys");
        let mut file = KeyFile::parse(
            path,
            b"# comment\nci.0011223344556677:$7$h\n\nops:$6$x\nci-2.0011223344556677:$7$y\n",
        )
        .unwrap();
        assert_eq!(
            file.keys().collect::<Vec<_>>(),
            ["ci.0011223344556677", "ops", "ci-2.0011223344556677"]
        );
        assert_eq!(file.remove("ci"), ["ci.0011223344556677"]);
        assert_eq!(file.remove("ops"), ["ops"]);
        assert!(file.remove("nothing").is_empty());
        assert_eq!(file.text(), "# comment\n\nci-2.0011223344556677:$7$y\n");
        let bad = KeyFile::parse(path, b"ok:h\nnocolon\n").unwrap_err();
        assert_eq!(bad.to_string(), "keys:2: expected `KEY:HASH`, found no `:`");
    }
}
