//! The command line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tern_core::ListenerPolicy;

use crate::auth::{Authenticator, SharedAuthenticator};
use crate::config::{self, Config, ListenAddr};
use crate::reload::{ListenerSecurity, SecurityReload};
use crate::server::{ListenerSpec, Server};
use crate::tls::TlsAcceptor;
use arc_swap::ArcSwap;

/// The listener of a broker started without any listener configured: loopback only, like
/// Mosquitto 2.
const DEFAULT_LISTEN: &str = "127.0.0.1:1883";
/// How long start-up waits for the bridges' sessions on this broker before serving clients.
const BRIDGES_PREPARED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "tern",
    version,
    about = "Tern, an MQTT 3.1, 3.1.1 and 5.0 broker",
    long_about = "Tern, an MQTT 3.1, 3.1.1 and 5.0 broker.\n\n\
        With no arguments, `tern` runs the broker on 127.0.0.1:1883 and lets anonymous clients in \
        there. `tern -c FILE` runs it on a configuration file, either Tern's TOML or an existing \
        mosquitto.conf."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Configuration file (TOML or mosquitto.conf) when no subcommand is given, as Mosquitto's
    /// `-c`.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Mosquitto's `-d` (run in the background): refused, see `crate::process`.
    #[arg(short = 'd', long = "daemon", hide = true)]
    daemon: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Validate a configuration file without starting: exit status 0 if it is valid.
    CheckConfig {
        /// The file to check (TOML or mosquitto.conf).
        file: PathBuf,
    },
    /// Publish messages, with mosquitto_pub's flags.
    Pub(crate::tools::PubArgs),
    /// Subscribe and print messages, with mosquitto_sub's flags.
    Sub(crate::tools::SubArgs),
    /// Generate load and measure: connections, throughput, loss, latency.
    Bench(Box<crate::bench::BenchArgs>),
    /// Create or edit a password file, with mosquitto_passwd's flags.
    Passwd(crate::tools::PasswdArgs),
    /// Manage a running broker through its admin API: clients, sessions, subscriptions,
    /// retained messages, stats, reload; and API key files.
    Ctl(crate::tools::CtlArgs),
}

#[derive(Debug, Args, Default)]
struct ServeArgs {
    /// Configuration file: Tern's TOML or a mosquitto.conf (detected by content).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Listen on HOST:PORT (repeatable); replaces the listeners of the configuration file.
    /// A bare PORT listens on 127.0.0.1. Port 0 picks a free port. `unix:PATH` listens on a
    /// Unix socket.
    #[arg(short, long = "listen", value_name = "HOST:PORT")]
    listen: Vec<String>,

    /// Let clients connect without credentials on every listener (by default only loopback
    /// listeners of a broker without configuration file allow it).
    #[arg(long)]
    allow_anonymous: bool,

    /// Log filter: error, warn, info, debug, trace, or tracing directives such as
    /// `tern=debug`. Overrides RUST_LOG and the configuration file.
    #[arg(long, value_name = "FILTER", env = "TERN_LOG_LEVEL")]
    log_level: Option<String>,

    /// Keep durable state (persistent sessions, their messages, retained messages) in DIR
    /// (default `tern-data` in the working directory). Overrides the configuration file.
    #[arg(long, value_name = "DIR", env = "TERN_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Keep everything in memory: nothing survives a restart (wins over --data-dir).
    #[arg(long)]
    in_memory: bool,

    /// Serve the admin REST API and dashboard on HOST:PORT (`off`: not at all). Overrides
    /// `[admin] listen`; the default is 127.0.0.1:18083.
    #[arg(long, value_name = "HOST:PORT|off")]
    admin_listen: Option<String>,
}

/// Runs the command line; the process exit status is the result.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.daemon {
        eprintln!("tern: {}", crate::process::DAEMON_REFUSED);
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Pub(args)) => crate::tools::run_pub(args),
        Some(Command::Sub(args)) => crate::tools::run_sub(args),
        Some(Command::Bench(args)) => crate::bench::run(*args),
        Some(Command::Passwd(args)) => crate::tools::run_passwd(args),
        Some(Command::Ctl(args)) => crate::tools::run_ctl(args),
        None => serve(ServeArgs {
            config: cli.config,
            ..ServeArgs::default()
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tern: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match config::load(file) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{}: configuration is valid", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.persistence.data_dir.clone_from(dir);
    }
    if args.in_memory {
        config.persistence.enabled = false;
    }
    let logging = crate::logging::init(args.log_level.as_deref(), &config.log)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let authenticator = Authenticator::from_config(&config);
    let mut listeners = listener_specs(&args, &config)?;
    for (i, l) in listeners.iter_mut().enumerate() {
        l.policy.authenticate = match declared_listeners(&args, &config).get(i) {
            Some(own) => {
                apply_listener_settings(l, own, &config, args.allow_anonymous);
                Authenticator::for_listener(&config, own).is_configured()
            }
            None => authenticator.is_configured(),
        };
        if !l.policy.allow_anonymous && !l.policy.authenticate {
            tracing::warn!(
                "listener {} refuses every client: anonymous access is off and no password file \
                 (or [auth.jwt], [auth.http]) is configured (set `allow_anonymous true` to let \
                 clients in)",
                l.bind
            );
        }
    }
    let runtime = crate::runtime::broker_runtime(None).context("cannot start the async runtime")?;
    // After a restart, a session whose owner had a user name stays that user's, if some
    // listener checks credentials (see `BrokerConfig::recovered_owners_authenticated`).
    config.broker.recovered_owners_authenticated = listeners.iter().any(|l| l.policy.authenticate);
    let opened = crate::persistence::open(&config.persistence, config.broker.clone())?;
    let store = opened.store.clone();
    // Each listener of the file has its own authentication sources and ACL slot, so that a
    // reload can give it its own files (`per_listener_settings`).
    let listener_security: Vec<ListenerSecurity> = declared_listeners(&args, &config)
        .iter()
        .map(|l| ListenerSecurity::new(&config, l, &opened.broker))
        .collect();
    for (spec, security) in listeners.iter_mut().zip(&listener_security) {
        spec.policy.acl = Some(security.acl.clone());
        spec.authenticator = Some(security.authenticator.clone());
    }
    runtime.block_on(async {
        let shutdown = shutdown_signal().context("cannot install the signal handlers")?;
        if let Some(store) = &store {
            checkpoint_on_sigusr1(store.clone())?;
        }
        let authenticator = SharedAuthenticator::new(ArcSwap::from_pointee(authenticator));
        let security = SecurityReload {
            config_file: args.config.clone(),
            broker: opened.broker.clone(),
            authenticator: authenticator.clone(),
            listeners: listener_security,
        };
        let admin = crate::admin::Wiring::new(&config, &security, &listeners);
        let hangups = crate::reload::hangups().context("cannot install the SIGHUP handler")?;
        crate::sys_topics::start(&opened.broker, config.sys_interval);
        let server = Server::bind(opened.broker, listeners)
            .await?
            .with_connection_messages(config.log.connection_messages.unwrap_or(true))
            .with_connection_limits(config.limits.clone())
            .with_authenticator(authenticator.clone());
        let command_line = crate::reload::CommandLine {
            listen: !args.listen.is_empty(),
            allow_anonymous: args.allow_anonymous,
            data_dir: args.data_dir.clone(),
            in_memory: args.in_memory,
        };
        let running = crate::reload::start(
            &server,
            &config,
            command_line,
            Some(logging),
            authenticator,
            &security.listeners,
            hangups,
        )?;
        let admin = admin
            .with_reloader(running.reloader.clone())
            .start(&config.admin, args.admin_listen.as_deref(), &server)
            .await?;
        let bridges = crate::bridge::start(&server, &config, &running.reloader);
        bridges.prepared(BRIDGES_PREPARED_TIMEOUT).await;
        crate::process::notify_ready();
        server.run(bridges.until(admin.until(shutdown))).await;
        crate::process::notify_stopping();
        drop(running);
        anyhow::Ok(())
    })?;
    // Connections are closed: write what is pending and close the store.
    crate::persistence::close(store);
    Ok(ExitCode::SUCCESS)
}

/// Resolves the listeners: `--listen` flags, else the file's, else the loopback default.
fn listener_specs(args: &ServeArgs, config: &Config) -> anyhow::Result<Vec<ListenerSpec>> {
    let mut specs: Vec<(ListenAddr, Option<&config::ListenerConfig>)> = Vec::new();
    let configured_in_file = args.listen.is_empty() && !config.listeners.is_empty();
    if !args.listen.is_empty() {
        for text in &args.listen {
            specs.push((parse_listen(text)?, None));
        }
    } else if configured_in_file {
        specs.extend(config.listeners.iter().map(|l| (l.bind.clone(), Some(l))));
    } else {
        specs.push((parse_listen(DEFAULT_LISTEN)?, None));
    }
    // Like Mosquitto 2: anonymous clients are let in by default only on loopback listeners that
    // the configuration file did not declare (the built-in default, or `--listen` on loopback
    // or on a Unix socket, which only local processes reach).
    specs
        .into_iter()
        .map(|(bind, declared)| {
            let local = bind.tcp().is_none_or(|addr| addr.ip().is_loopback());
            let allow_anonymous = args.allow_anonymous
                || config
                    .allow_anonymous
                    .unwrap_or(!configured_in_file && local);
            // The files were checked when the configuration was read; they are read again
            // here, and a file changed in between still stops the start (never a plain-text
            // listener instead).
            let tls = match declared.and_then(|l| l.tls.as_ref()) {
                None => None,
                Some(settings) => Some(Arc::new(TlsAcceptor::new(settings.clone()).map_err(
                    |e| anyhow::anyhow!("TLS listener {bind}: `{}`: {e}", e.key.mosquitto_name()),
                )?)),
            };
            Ok(ListenerSpec {
                max_connections: declared.and_then(|l| l.max_connections),
                policy: ListenerPolicy {
                    allow_anonymous,
                    ..ListenerPolicy::default()
                },
                tls,
                websocket: declared.and_then(|l| l.websocket.clone()).map(Arc::new),
                authenticator: None,
                proxy_protocol: declared.and_then(|l| l.settings.proxy_protocol),
                bind,
            })
        })
        .collect()
}

/// The listeners of the file, in the order of the specs [`listener_specs`] makes of them, with
/// their own settings; none with `--listen`, which replaces them.
fn declared_listeners<'a>(args: &ServeArgs, config: &'a Config) -> &'a [config::ListenerConfig] {
    if args.listen.is_empty() {
        &config.listeners
    } else {
        &[]
    }
}

/// Applies what a listener of the file sets for itself (protocol versions, mount point,
/// anonymous access, client ids) to its spec. `allow_anonymous` is the `--allow-anonymous`
/// flag, which wins.
fn apply_listener_settings(
    spec: &mut ListenerSpec,
    listener: &config::ListenerConfig,
    config: &Config,
    allow_anonymous: bool,
) {
    // The same policy as a reload gives it.
    spec.policy = crate::reload::declared_policy(config, listener, allow_anonymous, false);
}

fn parse_listen(text: &str) -> anyhow::Result<ListenAddr> {
    if let Some(path) = text.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        crate::unix_socket::check_path(&path)
            .map_err(|e| anyhow::anyhow!("invalid listen address `{text}`: {e}"))?;
        return Ok(ListenAddr::Unix(crate::unix_socket::UnixSocketConfig {
            path,
            mode: None,
        }));
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)).into());
    }
    let mut addrs = text
        .to_socket_addrs()
        .with_context(|| format!("invalid listen address `{text}` (expected HOST:PORT)"))?;
    match addrs.next() {
        Some(addr) => Ok(addr.into()),
        None => bail!("listen address `{text}` resolves to nothing"),
    }
}

/// SIGUSR1 forces a store checkpoint, as it makes Mosquitto write its persistence file.
fn checkpoint_on_sigusr1(store: std::sync::Arc<tern_store::DiskStore>) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut usr1 = signal(SignalKind::user_defined1())?;
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                crate::persistence::checkpoint(store.clone()).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = store;
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that completes on the
/// first of these signals; a second one exits at once. The handlers are installed before the
/// listeners are bound, so that a signal sent as soon as `listening on` is logged stops the
/// broker gracefully instead of killing it.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut signals = Signals::install()?;
    Ok(async move {
        signals.recv().await;
        tokio::spawn(async move {
            signals.recv().await;
            eprintln!("tern: second signal, exiting now");
            std::process::exit(130);
        });
    })
}

/// The signals that stop the broker, listened to from the moment they are installed.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    async fn recv(&mut self) {
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
