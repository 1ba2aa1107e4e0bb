//! Logging set-up: one `tracing` subscriber writing to stderr.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The filter comes from, in order of precedence: the command
/// line, `RUST_LOG`, the configuration file, then `info`.
pub(crate) fn init(
    cli_level: Option<&str>,
    config_level: Option<&str>,
    timestamps: bool,
) -> anyhow::Result<()> {
    let filter = match (cli_level, std::env::var("RUST_LOG").ok(), config_level) {
        (Some(level), _, _) => EnvFilter::try_new(level)?,
        (None, Some(env), _) if !env.is_empty() => EnvFilter::try_new(env)?,
        (None, _, Some(level)) => EnvFilter::try_new(level)?,
        _ => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if timestamps {
        builder.try_init()
    } else {
        builder.without_time().try_init()
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
