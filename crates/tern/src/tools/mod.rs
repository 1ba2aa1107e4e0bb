//! `tern pub` and `tern sub`: command-line clients with Mosquitto's flags, on `tern-client`.
//!
//! Module map: `common` (connection flags, CONNECT, errors in words, exit statuses, signals),
//! `properties` (`-D COMMAND IDENTIFIER VALUE`), `publish` (`tern pub`), `subscribe`
//! (`tern sub`), `format` (`-v`, `-F` output).
//!
//! Exit statuses, as Mosquitto's clients: 0 on success; the CONNACK code when the broker
//! refuses the connection (the MQTT 3.x return code, or the MQTT 5 reason code such as 135
//! for Not authorized); 27 when `tern sub -W` expires; 1 for every other failure (nothing
//! listening, connection lost, a message or every subscription refused); 2 for bad flags.

mod common;
mod ctl;
mod file_replace;
mod format;
mod passwd;
mod properties;
mod publish;
mod subscribe;

pub use ctl::{CtlArgs, run as run_ctl};
pub use passwd::{PasswdArgs, run as run_passwd};
pub use publish::{PubArgs, run as run_pub};
pub use subscribe::{SubArgs, run as run_sub};

/// The TLS flags, also used by `tern bench`.
pub(crate) use common::{TlsArgs, TlsFlagError};

/// Parses `args` as the flags of one subcommand (`name`), for the tools' unit tests.
#[cfg(test)]
pub(crate) fn parse_flags<A: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    args: &[&str],
) -> Result<A, clap::Error> {
    let matches = A::augment_args(clap::Command::new(name))
        .try_get_matches_from(std::iter::once(name).chain(args.iter().copied()))?;
    A::from_arg_matches(&matches)
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    use super::{CtlArgs, PasswdArgs, PubArgs, SubArgs};

    #[test]
    fn flags_are_consistent() {
        PubArgs::augment_args(Command::new("pub")).debug_assert();
        SubArgs::augment_args(Command::new("sub")).debug_assert();
        CtlArgs::augment_args(Command::new("ctl")).debug_assert();
        PasswdArgs::augment_args(Command::new("passwd")).debug_assert();
    }
}
