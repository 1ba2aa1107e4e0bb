//! What `tern pub` and `tern sub` share: the connection flags, the connection itself, debug
//! lines, errors in words and exit statuses.

use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{ArgAction, Args};
use tern_client::tern_codec::{
    ByteString, Disconnect, LastWill, ProtocolVersion, Publish, QoS, ReasonCode,
    is_valid_topic_name,
};
use tern_client::{Client, ClientError, ConnectOptions, MinTlsVersion, TlsFiles};

use super::properties::Properties;

/// Exit status of a failure that is not a refusal: no connection, connection lost, a message
/// or subscription refused, a file that cannot be read.
pub(super) const EXIT_ERROR: u8 = 1;
/// Exit status of bad flags (clap's own errors exit with 2 too).
pub(super) const EXIT_USAGE: u8 = 2;
/// Exit status of `tern sub -W` when the time is up (Mosquitto's `MOSQ_ERR_TIMEOUT`).
pub(super) const EXIT_TIMEOUT: u8 = 27;

/// Flags of both tools: where to connect and how.
#[derive(Debug, Args)]
pub(super) struct ConnArgs {
    /// Broker host.
    #[arg(
        short = 'h',
        long = "host",
        value_name = "HOST",
        default_value = "localhost"
    )]
    pub host: String,

    /// Broker port (default: 1883, or 8883 with TLS).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<u16>,

    /// Protocol version: 5, 311 or 31 (also mqttv5, mqttv311, mqttv31).
    #[arg(
        short = 'V',
        long = "protocol-version",
        value_name = "VERSION",
        default_value = "311",
        value_parser = parse_version
    )]
    pub version: ProtocolVersion,

    /// Client identifier (default: the tool's name and a random suffix).
    #[arg(
        short = 'i',
        long = "id",
        value_name = "ID",
        conflicts_with = "id_prefix"
    )]
    pub id: Option<String>,

    /// Client identifier made of this prefix and the process id.
    #[arg(short = 'I', long = "id-prefix", value_name = "PREFIX")]
    pub id_prefix: Option<String>,

    /// User name.
    #[arg(short = 'u', long = "username", value_name = "USERNAME")]
    pub username: Option<String>,

    /// Password.
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD")]
    pub password: Option<String>,

    /// Keep alive in seconds (0 turns it off).
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub keep_alive: u16,

    /// Persistent session: no Clean Start / Clean Session (needs -i). On MQTT 5 the session
    /// never expires unless -x says otherwise.
    #[arg(short = 'c', long = "disable-clean-session")]
    pub persistent: bool,

    /// MQTT 5 Session Expiry Interval in seconds; -1 or 4294967295: never expires.
    #[arg(
        short = 'x',
        long = "session-expiry-interval",
        value_name = "SECONDS",
        value_parser = parse_expiry,
        allow_hyphen_values = true
    )]
    pub session_expiry: Option<u32>,

    /// Local address to connect from.
    #[arg(short = 'A', value_name = "ADDRESS")]
    pub bind_address: Option<IpAddr>,

    /// Topic of the Will, published by the broker if this client goes away without
    /// DISCONNECT.
    #[arg(long = "will-topic", value_name = "TOPIC")]
    pub will_topic: Option<String>,

    /// Payload of the Will (default: empty).
    #[arg(long = "will-payload", value_name = "PAYLOAD", requires = "will_topic")]
    pub will_payload: Option<String>,

    /// QoS of the Will.
    #[arg(long = "will-qos", value_name = "QOS", value_parser = parse_qos, requires = "will_topic")]
    pub will_qos: Option<QoS>,

    /// Retain the Will.
    #[arg(long = "will-retain", requires = "will_topic")]
    pub will_retain: bool,

    /// MQTT 5 property: COMMAND IDENTIFIER VALUE (user-property takes NAME VALUE). Commands:
    /// connect, publish (pub), subscribe (sub), will, disconnect. Repeatable.
    #[arg(
        short = 'D',
        long = "property",
        value_names = ["COMMAND", "IDENTIFIER", "VALUE"],
        num_args = 3..=4,
        action = ArgAction::Append
    )]
    pub properties: Vec<String>,

    /// `--cafile`, `--capath`, `--cert`, `--key`, `--insecure`, `--tls-version`.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// Print a line on stderr for every packet sent and received.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,

    /// Do not print error messages.
    #[arg(long = "quiet")]
    pub quiet: bool,

    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// The TLS flags, with mosquitto_pub's meanings: shared by `tern pub`, `tern sub` and
/// `tern bench`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct TlsArgs {
    /// CA certificates (PEM) to verify the broker's certificate with; turns TLS on.
    #[arg(long = "cafile", value_name = "FILE")]
    pub cafile: Option<PathBuf>,

    /// A directory of CA certificate files (PEM) to verify the broker with; turns TLS on.
    #[arg(long = "capath", value_name = "DIR")]
    pub capath: Option<PathBuf>,

    /// Client certificate (PEM), for brokers that require one (needs --key).
    #[arg(long = "cert", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long = "key", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Do not check that the broker's certificate is valid for the host name (its chain is
    /// still verified). For tests only.
    #[arg(long = "insecure")]
    pub insecure: bool,

    /// Lowest TLS version: tlsv1.2 (the default) or tlsv1.3.
    #[arg(long = "tls-version", value_name = "VERSION", value_parser = parse_tls_version)]
    pub tls_version: Option<MinTlsVersion>,
}

/// Why the TLS flags give no TLS options.
#[derive(Debug)]
pub(crate) enum TlsFlagError {
    /// A flag that only makes sense with TLS, given without `--cafile` or `--capath`: a usage
    /// error (the flag's name).
    NeedsTls(&'static str),
    /// A file could not be read or used (the client library's words, naming the file).
    Files(String),
}

impl fmt::Display for TlsFlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeedsTls(flag) => write!(
                f,
                "{flag} needs TLS: give the CA certificates with --cafile or --capath"
            ),
            Self::Files(message) => write!(f, "Problem setting TLS options: {message}"),
        }
    }
}

impl TlsArgs {
    /// Whether TLS is on: a CA file or directory was given, as with mosquitto_pub.
    pub(crate) fn enabled(&self) -> bool {
        self.cafile.is_some() || self.capath.is_some()
    }

    /// The TLS options of the flags, their files read; `None` without TLS.
    pub(crate) fn options(&self) -> Result<Option<tern_client::TlsOptions>, TlsFlagError> {
        if !self.enabled() {
            let flag = [
                (self.cert.is_some(), "--cert"),
                (self.insecure, "--insecure"),
                (self.tls_version.is_some(), "--tls-version"),
            ]
            .into_iter()
            .find_map(|(set, flag)| set.then_some(flag));
            return match flag {
                Some(flag) => Err(TlsFlagError::NeedsTls(flag)),
                None => Ok(None),
            };
        }
        let files = TlsFiles {
            cafile: self.cafile.clone(),
            capath: self.capath.clone(),
            certfile: self.cert.clone(),
            keyfile: self.key.clone(),
            insecure: self.insecure,
            min_version: self.tls_version.unwrap_or_default(),
        };
        files
            .load()
            .map(Some)
            .map_err(|e| TlsFlagError::Files(describe(&e)))
    }
}

/// `-V`: Mosquitto's spellings and ours.
fn parse_version(text: &str) -> Result<ProtocolVersion, String> {
    match text {
        "31" | "3.1" | "mqttv31" => Ok(ProtocolVersion::V31),
        "311" | "3.1.1" | "mqttv311" => Ok(ProtocolVersion::V311),
        "5" | "5.0" | "mqttv5" => Ok(ProtocolVersion::V5),
        _ => Err("expected 5, 311 or 31 (or mqttv5, mqttv311, mqttv31)".to_owned()),
    }
}

/// `--tls-version`: Mosquitto's names.
fn parse_tls_version(text: &str) -> Result<MinTlsVersion, String> {
    match text {
        "tlsv1.2" => Ok(MinTlsVersion::Tls12),
        "tlsv1.3" => Ok(MinTlsVersion::Tls13),
        _ => Err("expected tlsv1.2 or tlsv1.3".to_owned()),
    }
}

/// `-q`: 0, 1 or 2.
pub(super) fn parse_qos(text: &str) -> Result<QoS, String> {
    text.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| "expected 0, 1 or 2".to_owned())
}

/// `-x`: seconds, or -1 / 4294967295 / ∞ for "never".
fn parse_expiry(text: &str) -> Result<u32, String> {
    match text {
        "-1" | "∞" => Ok(u32::MAX),
        _ => text
            .parse::<u32>()
            .map_err(|_| "expected 0 to 4294967295, or -1 for no expiry".to_owned()),
    }
}

/// Why a tool stops, with the exit status that says so.
#[derive(Debug)]
pub(super) struct Failure {
    /// The exit status.
    pub code: u8,
    /// What to print on stderr (unless `--quiet`).
    pub message: String,
}

impl Failure {
    pub(super) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Bad flags: exit status 2, with a pointer to `--help`.
    pub(super) fn usage(tool: &str, message: impl fmt::Display) -> Self {
        Self::new(
            EXIT_USAGE,
            format!("Error: {message}\nUse 'tern {tool} --help' to see usage."),
        )
    }

    /// A broken connection after CONNACK.
    pub(super) fn lost(e: &ClientError) -> Self {
        Self::new(EXIT_ERROR, format!("Connection lost: {}", describe(e)))
    }
}

/// The exit status for a tool's outcome; prints the failure unless `quiet`.
pub(super) fn finish(result: Result<(), Failure>, quiet: bool) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !quiet && !failure.message.is_empty() {
                eprintln!("{}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

/// A client error in words, without Rust's `(os error N)` suffixes.
pub(super) fn describe(e: &ClientError) -> String {
    let text = match e {
        ClientError::Io(io) => io.to_string(),
        ClientError::Timeout(_) => "no answer from the broker in time".to_owned(),
        other => other.to_string(),
    };
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The words for a reason code in the given version: its name and hexadecimal value on MQTT 5,
/// its name and return code on 3.x CONNACK.
pub(super) fn connack_words(version: ProtocolVersion, reason: ReasonCode) -> (String, u8) {
    if version.is_v5() {
        (reason.to_string(), reason.0)
    } else {
        let code = reason.to_v3_connect_return_code();
        let name = reason.name().unwrap_or("unknown reason");
        (format!("{name} (return code {code})"), code)
    }
}

/// A random client identifier such as `tern-pub-1a2b3c4d5e6f` (21 characters: short enough
/// for MQTT 3.1's limit of 23).
fn random_id(tool: &str) -> String {
    let seed = std::collections::hash_map::RandomState::new()
        .hash_one((std::process::id(), std::time::SystemTime::now()));
    format!("tern-{tool}-{:012x}", seed & 0xFFFF_FFFF_FFFF)
}

/// A connected tool: the client, its identifier for debug lines, and the flags that matter
/// after CONNECT.
pub(super) struct Session {
    pub client: Client,
    pub client_id: String,
    pub debug: bool,
    pub quiet: bool,
    pub disconnect: Disconnect,
}

impl ConnArgs {
    /// The port: `-p`, else 8883 with TLS and 1883 without.
    fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls.enabled() { 8883 } else { 1883 })
    }

    /// The TLS options of `--cafile`, `--capath`, `--cert`, `--key`, `--insecure` and
    /// `--tls-version`, their files read; `None` without TLS.
    fn tls(&self, tool: &str) -> Result<Option<tern_client::TlsOptions>, Failure> {
        self.tls.options().map_err(|e| match e {
            TlsFlagError::NeedsTls(_) => Failure::usage(tool, e),
            TlsFlagError::Files(_) => Failure::new(EXIT_ERROR, format!("Error: {e}")),
        })
    }

    /// Checks the flags that clap cannot and builds the CONNECT options.
    pub(super) fn options(
        &self,
        tool: &str,
        props: &Properties,
    ) -> Result<(ConnectOptions, String), Failure> {
        let v5 = self.version.is_v5();
        if self.persistent && self.id.is_none() {
            return Err(Failure::usage(
                tool,
                "a persistent session (-c) needs a client id (-i)",
            ));
        }
        if self.password.is_some() && self.username.is_none() && !v5 {
            return Err(Failure::usage(
                tool,
                "a password (-P) needs a username (-u) before MQTT 5",
            ));
        }
        let client_id = match (&self.id, &self.id_prefix) {
            (Some(id), _) => id.clone(),
            (None, Some(prefix)) => format!("{prefix}{}", std::process::id()),
            (None, None) => random_id(tool),
        };
        if !v5 && !props.is_empty() && !self.quiet {
            eprintln!(
                "Warning: -D properties are ignored with MQTT {}",
                self.version
            );
        }
        let mut options = ConnectOptions::new(
            self.host.clone(),
            self.port(),
            client_id.clone(),
            self.version,
        );
        options.tls = self.tls(tool)?;
        options.local_addr = self.bind_address;
        options.clean_start = !self.persistent;
        options.keep_alive = self.keep_alive;
        options.username.clone_from(&self.username);
        options.password = self.password.clone().map(Bytes::from);
        if v5 {
            let c = &props.connect;
            options.session_expiry = c
                .session_expiry_interval
                .or(self.session_expiry)
                .or(self.persistent.then_some(u32::MAX));
            options.receive_maximum = c.receive_maximum;
            options.maximum_packet_size = c.maximum_packet_size;
            options.topic_alias_maximum = c.topic_alias_maximum;
            options.request_response_information = c.request_response_information;
            options.request_problem_information = c.request_problem_information;
            options.user_properties = c
                .user_properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
        if let Some(topic) = &self.will_topic {
            if !is_valid_topic_name(topic) {
                return Err(Failure::usage(
                    tool,
                    format!("invalid will topic '{topic}': it must not contain '+' or '#'"),
                ));
            }
            options.will = Some(LastWill {
                topic: ByteString::from(topic.as_str()),
                payload: Bytes::from(self.will_payload.clone().unwrap_or_default()),
                qos: self.will_qos.unwrap_or_default(),
                retain: self.will_retain,
                properties: if v5 {
                    props.will.clone()
                } else {
                    Default::default()
                },
            });
        }
        Ok((options, client_id))
    }

    /// Connects (printing debug lines); a refusal exits with the CONNACK code, like Mosquitto.
    pub(super) async fn connect(
        &self,
        options: &ConnectOptions,
        client_id: String,
        props: &Properties,
    ) -> Result<Session, Failure> {
        let debug = self.debug;
        if debug {
            eprintln!("Client {client_id} sending CONNECT");
        }
        let client = match Client::connect(options).await {
            Ok(client) => client,
            Err(ClientError::Refused(reason)) => {
                let (words, code) = connack_words(self.version, reason);
                if debug {
                    eprintln!("Client {client_id} received CONNACK ({code})");
                }
                return Err(Failure::new(
                    code,
                    format!("Connection error: Connection refused: {words}"),
                ));
            }
            Err(e) => {
                return Err(Failure::new(
                    EXIT_ERROR,
                    format!(
                        "Connection error: {}:{}: {}",
                        self.host,
                        self.port(),
                        describe(&e)
                    ),
                ));
            }
        };
        let connack = client.connack();
        let client_id = connack
            .properties
            .assigned_client_identifier
            .as_ref()
            .map_or(client_id, ToString::to_string);
        if debug {
            eprintln!(
                "Client {client_id} received CONNACK (0{})",
                if connack.session_present {
                    ", session present"
                } else {
                    ""
                }
            );
        }
        let mut disconnect = Disconnect::default();
        if self.version.is_v5() {
            disconnect.properties = props.disconnect.clone();
        }
        Ok(Session {
            client,
            client_id,
            debug,
            quiet: self.quiet,
            disconnect,
        })
    }
}

impl Session {
    /// Sends DISCONNECT and closes; errors at this point change nothing for the user.
    pub(super) async fn disconnect(self) {
        if self.debug {
            eprintln!("Client {} sending DISCONNECT", self.client_id);
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.client.disconnect_with(self.disconnect),
        )
        .await;
    }

    /// A debug line for a PUBLISH sent or received.
    pub(super) fn debug_publish(&self, direction: &str, p: &Publish, packet_id: Option<u16>) {
        if self.debug {
            eprintln!(
                "Client {} {direction} PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                self.client_id,
                u8::from(p.dup),
                p.qos as u8,
                u8::from(p.retain),
                packet_id.unwrap_or(0),
                p.topic,
                p.payload.len()
            );
        }
    }
}

/// SIGINT and SIGTERM, listened to from the moment they are installed.
pub(super) struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (inside the runtime).
    pub(super) fn install() -> Result<Self, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let installed = signal(SignalKind::interrupt()).and_then(|interrupt| {
                Ok(Self {
                    interrupt,
                    terminate: signal(SignalKind::terminate())?,
                })
            });
            installed.map_err(|e| {
                Failure::new(
                    EXIT_ERROR,
                    format!("Error: cannot install signal handlers: {e}"),
                )
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Completes on the next SIGINT or SIGTERM.
    pub(super) async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs a tool's future on a single-threaded runtime.
pub(super) fn block_on<F: std::future::Future<Output = Result<(), Failure>>>(
    future: F,
) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(EXIT_ERROR, format!("Error: cannot start the runtime: {e}")))?;
    let result = runtime.block_on(future);
    // A read of standard input may still be pending on tokio's blocking thread (`tern pub -l`
    // stopped by a signal): do not wait for it.
    runtime.shutdown_background();
    result
}
