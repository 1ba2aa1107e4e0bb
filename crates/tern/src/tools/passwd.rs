//! `tern passwd`: creates and edits password files, with `mosquitto_passwd`'s flags.
//!
//! The file stays usable by Mosquitto unless `--scram` adds SCRAM lines (which Mosquitto
//! ignores, with an error message): the default hash is `$7$` (PBKDF2-HMAC-SHA512) with a
//! 12-byte salt, the only salt length Mosquitto 2.0 reads.
//! Every change replaces the file atomically (a temporary file in the same directory, renamed
//! over it) and keeps its permissions; a new file is created with mode 0600.

use super::file_replace::write_atomically;
use std::ffi::OsString;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use clap::{Args, ValueEnum};

use crate::auth::password_file::{self, HashError};
use crate::auth::scram::{ScramCredential, ScramMechanism};

/// PBKDF2 iterations of `$7$` by default: Mosquitto 2.1's default (2.0 writes 101 and reads
/// any count).
const PBKDF2_ITERATIONS: u32 = 1000;
/// Salt of `$7$` and `$6$`: Mosquitto 2.0 refuses any other length.
const MOSQUITTO_SALT_LEN: usize = 12;
/// argon2id memory cost in KiB, time cost and parallelism: Mosquitto 2.1's parameters.
const ARGON2_M_COST: u32 = 47_104;
const ARGON2_T_COST: u32 = 1;
const ARGON2_P_COST: u32 = 1;
/// argon2id salt and output lengths (the argon2 crate's and RFC 9106's recommendations).
const ARGON2_SALT_LEN: usize = 16;
const ARGON2_OUTPUT_LEN: usize = 32;
// SCRAM entries: the server's own parameters, so that a made-up credential for an unknown
// user looks like a real one.
use crate::auth::scram::{
    DEFAULT_ITERATIONS as SCRAM_ITERATIONS, DEFAULT_SALT_LEN as SCRAM_SALT_LEN,
};
/// The longest username and password MQTT can carry (a two-byte length prefix).
const MQTT_MAX_LEN: usize = 65_535;

/// Exit status of flags that contradict each other (clap's own errors exit with 2 too).
const EXIT_USAGE: u8 = 2;

/// Flags of `tern passwd`.
#[derive(Debug, Args)]
#[command(
    override_usage = "tern passwd [-H HASH] [-I ITERATIONS] [--scram] [-c | -D] FILE USERNAME\n       \
                      tern passwd [-H HASH] [-I ITERATIONS] [--scram] [-c] -b FILE USERNAME PASSWORD\n       \
                      tern passwd [-H HASH] [-I ITERATIONS] -U FILE",
    after_long_help = "Without -b, the password is asked twice, without echo, when standard input is a \
        terminal; otherwise the first line of standard input is the password (for scripts: \
        `printf '%s\\n' \"$PW\" | tern passwd FILE alice`), which keeps it out of the process \
        list.\n\n\
        Files written without --scram are read by Mosquitto 1.6 and later (-H sha512-pbkdf2, the \
        default, and -H sha512) or Mosquitto 2.1 built with argon2 (-H argon2id), and by Tern.\n\n\
        Exit status: 0 on success, 1 on any error (the message says which), 2 for bad flags."
)]
pub struct PasswdArgs {
    /// Hash to write: sha512-pbkdf2 ($7$), sha512 ($6$, legacy) or argon2id.
    ///
    /// sha512-pbkdf2 is PBKDF2-HMAC-SHA512 with a 12-byte salt, read by Mosquitto 1.6 and
    /// later; sha512 is a single salted SHA-512, weak, only for older brokers; argon2id uses
    /// m=47104 KiB, t=1, p=1, as Mosquitto 2.1 writes it.
    #[arg(
        short = 'H',
        long = "hash",
        value_enum,
        value_name = "HASH",
        default_value_t = HashKind::Sha512Pbkdf2
    )]
    hash: HashKind,

    /// PBKDF2 iterations for -H sha512-pbkdf2 [default: 1000].
    ///
    /// 1000 is Mosquitto 2.1's default; Mosquitto 2.0 writes 101 and reads any count.
    #[arg(
        short = 'I',
        long = "iterations",
        value_name = "ITERATIONS",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    iterations: Option<u32>,

    /// Create a new password file; an existing file is overwritten.
    #[arg(short = 'c', long = "create", conflicts_with_all = ["delete", "update"])]
    create: bool,

    /// Delete USERNAME (every line of that user) instead of setting a password.
    #[arg(short = 'D', long = "delete", conflicts_with_all = ["batch", "update", "scram"])]
    delete: bool,

    /// Batch mode: the password is the PASSWORD argument.
    ///
    /// Other local users can see it in the process list: scripts had better give it on
    /// standard input.
    #[arg(
        short = 'b',
        long = "batch",
        requires = "password",
        conflicts_with = "update"
    )]
    batch: bool,

    /// Hash, in place, every plain-text `username:password` line of FILE.
    ///
    /// Lines already hashed, comments and blank lines are kept as they are.
    #[arg(short = 'U', long = "update", conflicts_with_all = ["username", "scram"])]
    update: bool,

    /// Tern only: also write SCRAM lines for the user; Mosquitto cannot use them.
    ///
    /// SCRAM-SHA-256 and SCRAM-SHA-512 credentials (4096 iterations, 16-byte random salt) for
    /// MQTT 5 enhanced authentication. Mosquitto does not understand these lines, so the file
    /// is then meant for Tern: Mosquitto 2.0 logs an error for each of them, ignores it and
    /// still accepts the user's password line.
    #[arg(long = "scram")]
    scram: bool,

    /// The password file.
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// The user to add, update or delete (UTF-8, without `:`).
    #[arg(value_name = "USERNAME", required_unless_present = "update")]
    username: Option<String>,

    /// The password, with -b.
    #[arg(value_name = "PASSWORD", requires = "batch")]
    password: Option<OsString>,
}

/// The password hashes `tern passwd` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HashKind {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    #[value(name = "sha512-pbkdf2")]
    Sha512Pbkdf2,
    /// `$6$`: SHA-512 of the password and salt.
    #[value(name = "sha512")]
    Sha512,
    /// `$argon2id$`: PHC string.
    #[value(name = "argon2id")]
    Argon2id,
}

/// How new hashes are made.
#[derive(Debug, Clone, Copy)]
struct Hasher {
    kind: HashKind,
    iterations: u32,
}

impl Hasher {
    /// The hash field for `password` with a fresh random salt.
    fn hash(self, password: &[u8]) -> anyhow::Result<String> {
        match self.kind {
            HashKind::Sha512Pbkdf2 => Ok(password_file::encode_pbkdf2(
                password,
                &random_bytes::<MOSQUITTO_SALT_LEN>()?,
                self.iterations,
            )),
            HashKind::Sha512 => Ok(password_file::encode_sha512(
                password,
                &random_bytes::<MOSQUITTO_SALT_LEN>()?,
            )),
            HashKind::Argon2id => {
                let params = Params::new(
                    ARGON2_M_COST,
                    ARGON2_T_COST,
                    ARGON2_P_COST,
                    Some(ARGON2_OUTPUT_LEN),
                )
                .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
                let salt = SaltString::encode_b64(&random_bytes::<ARGON2_SALT_LEN>()?)
                    .map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?;
                let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                    .hash_password(password, &salt)
                    .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
                Ok(hash.to_string())
            }
        }
    }

    /// Every line for `username`: the password line, then the SCRAM lines if asked.
    fn user_lines(self, username: &str, password: &[u8], scram: bool) -> anyhow::Result<Vec<Line>> {
        let mut lines = vec![Line::entry(username, &self.hash(password)?)];
        if scram {
            for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
                let credential = ScramCredential::derive(
                    mechanism,
                    password,
                    &random_bytes::<SCRAM_SALT_LEN>()?,
                    SCRAM_ITERATIONS,
                );
                lines.push(Line::entry(
                    username,
                    &password_file::encode_scram(mechanism, &credential),
                ));
            }
        }
        Ok(lines)
    }
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    Ok(bytes)
}

/// One line of the file, kept byte for byte unless its user is edited.
#[derive(Debug, Clone)]
struct Line {
    /// The text without its line terminator.
    text: String,
    /// `\n` or `\r\n`, whatever the line had (new lines get `\n`).
    ending: &'static str,
}

impl Line {
    fn entry(username: &str, hash: &str) -> Self {
        Self {
            text: format!("{username}:{hash}"),
            ending: "\n",
        }
    }

    /// The username and the rest, for lines that are neither blank nor comments; `None` for
    /// those (and `Some((name, None))` for a line without `:`), trimmed as the reader trims.
    fn fields(&self) -> Option<(&str, Option<&str>)> {
        let line = self.text.trim_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        Some(match line.split_once(':') {
            Some((name, rest)) => (name.trim_end_matches([' ', '\t']), Some(rest)),
            None => (line, None),
        })
    }

    fn user(&self) -> Option<&str> {
        self.fields().map(|(name, _)| name)
    }
}

/// Splits a file's text into lines, keeping each line's terminator.
fn split_lines(text: &str) -> Vec<Line> {
    text.split_inclusive('\n')
        .map(|raw| {
            if let Some(text) = raw.strip_suffix("\r\n") {
                Line {
                    text: text.to_owned(),
                    ending: "\r\n",
                }
            } else {
                Line {
                    text: raw.strip_suffix('\n').unwrap_or(raw).to_owned(),
                    ending: "\n",
                }
            }
        })
        .collect()
}

fn join_lines(lines: &[Line]) -> String {
    lines
        .iter()
        .flat_map(|line| [line.text.as_str(), line.ending])
        .collect()
}

/// Runs `tern passwd`.
///
/// # Errors
/// Any failure, described for the user (the caller prints it and exits with status 1).
pub fn run(args: PasswdArgs) -> anyhow::Result<ExitCode> {
    if args.iterations.is_some() && args.hash != HashKind::Sha512Pbkdf2 {
        eprintln!("tern passwd: -I applies only to -H sha512-pbkdf2");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let hasher = Hasher {
        kind: args.hash,
        iterations: args.iterations.unwrap_or(PBKDF2_ITERATIONS),
    };
    let file = args.file.as_path();
    if args.update {
        let lines = read_lines(file)?;
        let converted =
            hash_plain_lines(lines, hasher).with_context(|| format!("{}", file.display()))?;
        write_atomically("passwd", file, join_lines(&converted).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(username) = args.username.as_deref() else {
        bail!("a USERNAME is needed (or -U to hash a plain-text file)");
    };
    check_username(username)?;
    if args.delete {
        let lines = read_lines(file)?;
        let before = lines.len();
        let kept: Vec<Line> = lines
            .into_iter()
            .filter(|line| line.user() != Some(username))
            .collect();
        if kept.len() == before {
            bail!("user `{username}` is not in {}", file.display());
        }
        write_atomically("passwd", file, join_lines(&kept).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    // Read the file first: a missing file is reported before asking for a password.
    let existing = if args.create {
        Vec::new()
    } else {
        read_lines(file)?
    };
    let password = match args.password {
        Some(password) => password.into_encoded_bytes(),
        None => read_password()?,
    };
    if password.len() > MQTT_MAX_LEN {
        bail!("the password is longer than {MQTT_MAX_LEN} bytes, more than MQTT can carry");
    }
    let new_lines = hasher.user_lines(username, &password, args.scram)?;
    let updated = replace_user(existing, username, new_lines);
    write_atomically("passwd", file, join_lines(&updated).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses usernames the file format or MQTT cannot carry.
fn check_username(username: &str) -> anyhow::Result<()> {
    if username.is_empty() {
        bail!("the username is empty");
    }
    if username.contains(':') {
        bail!("invalid username `{username}`: it must not contain `:`");
    }
    if username.chars().any(char::is_control) {
        bail!("invalid username {username:?}: it must not contain control characters");
    }
    if username.starts_with('#') {
        bail!("invalid username `{username}`: a line starting with `#` is a comment");
    }
    if username.starts_with([' ', '\t']) || username.ends_with([' ', '\t']) {
        bail!("invalid username `{username}`: it must not begin or end with a blank");
    }
    if username.len() > MQTT_MAX_LEN {
        bail!("the username is longer than {MQTT_MAX_LEN} bytes, more than MQTT can carry");
    }
    Ok(())
}

/// The file's lines with every line of `username` replaced by `new_lines`, at the place of the
/// user's first line (at the end for a new user).
fn replace_user(lines: Vec<Line>, username: &str, new_lines: Vec<Line>) -> Vec<Line> {
    let mut out = Vec::with_capacity(lines.len() + new_lines.len());
    let mut new_lines = Some(new_lines);
    for line in lines {
        if line.user() == Some(username) {
            if let Some(new) = new_lines.take() {
                out.extend(new);
            }
        } else {
            out.push(line);
        }
    }
    if let Some(new) = new_lines {
        out.extend(new);
    }
    out
}

/// `-U`: hashes the plain-text password of every line that has one. Lines already hashed,
/// comments and blank lines are kept as they are.
fn hash_plain_lines(lines: Vec<Line>, hasher: Hasher) -> anyhow::Result<Vec<Line>> {
    let mut out = Vec::with_capacity(lines.len());
    for (index, line) in lines.into_iter().enumerate() {
        let number = index + 1;
        let Some((name, rest)) = line.fields() else {
            out.push(line);
            continue;
        };
        let Some(rest) = rest else {
            bail!("line {number}: expected `username:password`, found no `:`");
        };
        if name.is_empty() {
            bail!("line {number}: empty username");
        }
        // The password is everything after the first `:` (colons included, where Mosquitto
        // would cut), without the blanks around it, which Mosquitto ignores too.
        let password = rest.trim_matches([' ', '\t']);
        match password_file::parse_hash(password) {
            Ok(_) => out.push(line),
            Err(HashError::NotHashed) => {
                let mut hashed = Line::entry(name, &hasher.hash(password.as_bytes())?);
                hashed.ending = line.ending;
                out.push(hashed);
            }
            Err(HashError::Unsupported(form)) => {
                bail!("line {number}: unsupported password hash `{form}` for `{name}`")
            }
            Err(HashError::Malformed { scheme, reason }) => {
                bail!("line {number}: malformed {scheme} hash for `{name}`: {reason}")
            }
        }
    }
    Ok(out)
}

/// Reads an existing password file.
fn read_lines(file: &Path) -> anyhow::Result<Vec<Line>> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not valid UTF-8", file.display()))?;
    Ok(split_lines(&text))
}

/// The password: asked twice without echo on a terminal, else the first line of standard
/// input.
fn read_password() -> anyhow::Result<Vec<u8>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        if first.is_empty() {
            bail!("empty password");
        }
        let second =
            rpassword::prompt_password("Reenter password: ").context("cannot read the password")?;
        if first != second {
            bail!("passwords do not match");
        }
        return Ok(first.into_bytes());
    }
    let mut line = Vec::new();
    stdin
        .lock()
        .read_until(b'\n', &mut line)
        .context("cannot read the password from standard input")?;
    if line.is_empty() {
        bail!("no password: standard input is empty (give one line, or use -b)");
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::auth::password_file::PasswordFile;

    fn parse(args: &[&str]) -> Result<PasswdArgs, clap::Error> {
        crate::tools::parse_flags("passwd", args)
    }

    #[test]
    fn flag_combinations() {
        assert!(parse(&["f", "alice"]).is_ok());
        assert!(parse(&["-c", "f", "alice"]).is_ok());
        assert!(parse(&["-cb", "f", "alice", "pw"]).is_ok());
        assert!(parse(&["-b", "-H", "sha512", "f", "alice", "pw"]).is_ok());
        assert!(parse(&["-U", "f"]).is_ok());
        assert!(parse(&["-U", "-H", "argon2id", "f"]).is_ok());
        assert!(parse(&["-D", "f", "alice"]).is_ok());
        for bad in [
            &["f"][..],
            &["-b", "f", "alice"],
            &["f", "alice", "pw"],
            &["-c", "-D", "f", "alice"],
            &["-D", "-b", "f", "alice", "pw"],
            &["-U", "f", "alice"],
            &["-U", "-c", "f"],
            &["-U", "--scram", "f"],
            &["-I", "0", "f", "alice"],
            &["-H", "md5", "f", "alice"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn usernames_that_the_file_cannot_hold_are_refused() {
        for bad in ["", "a:b", "a\nb", "#x", " x", "x\t"] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        assert!(check_username(&"x".repeat(MQTT_MAX_LEN + 1)).is_err());
        assert!(check_username("ålice smith/+#").is_ok());
    }

    #[test]
    fn every_hash_kind_verifies() {
        for (kind, prefix) in [
            (HashKind::Sha512Pbkdf2, "$7$1000$"),
            (HashKind::Sha512, "$6$"),
            (HashKind::Argon2id, "$argon2id$v=19$m=47104,t=1,p=1$"),
        ] {
            let hasher = Hasher {
                kind,
                iterations: PBKDF2_ITERATIONS,
            };
            let lines = hasher.user_lines("alice", b"right", false).unwrap();
            assert_eq!(lines.len(), 1);
            assert!(
                lines[0].text.starts_with(&format!("alice:{prefix}")),
                "{:?}",
                lines[0]
            );
            let file = PasswordFile::parse(&join_lines(&lines)).unwrap();
            assert!(file.verify("alice", b"right"));
            assert!(!file.verify("alice", b"wrong"));
        }
        // 12-byte salts (16 base64 characters) for Mosquitto 2.0.
        let hash = Hasher {
            kind: HashKind::Sha512Pbkdf2,
            iterations: 7,
        }
        .hash(b"x")
        .unwrap();
        let fields: Vec<&str> = hash.split('$').collect();
        assert_eq!(fields[2], "7");
        assert_eq!(fields[3].len(), 16);
    }

    #[test]
    fn replacing_a_user_keeps_the_other_lines_in_place() {
        let text = "# head\r\nalice:old\nsam:SCRAM\n\nbob:x\nalice:SCRAM-SHA-256$\n# tail";
        let lines = split_lines(text);
        let new = vec![Line::entry("alice", "new1"), Line::entry("alice", "new2")];
        assert_eq!(
            join_lines(&replace_user(lines.clone(), "alice", new)),
            "# head\r\nalice:new1\nalice:new2\nsam:SCRAM\n\nbob:x\n# tail\n"
        );
        assert_eq!(
            join_lines(&replace_user(lines, "zed", vec![Line::entry("zed", "h")])),
            "# head\r\nalice:old\nsam:SCRAM\n\nbob:x\nalice:SCRAM-SHA-256$\n# tail\nzed:h\n"
        );
    }

    #[test]
    fn update_hashes_only_plain_lines() {
        let hasher = Hasher {
            kind: HashKind::Sha512Pbkdf2,
            iterations: 3,
        };
        let hashed = format!("kept:{}", password_file::encode_sha512(b"k", b"saltsalt"));
        let text = format!("# c\nalice:right\n{hashed}\r\nbob: two words \n\ncarol:\ndave:a:b\n");
        let out = hash_plain_lines(split_lines(&text), hasher).unwrap();
        let joined = join_lines(&out);
        assert!(joined.starts_with("# c\nalice:$7$3$"), "{joined}");
        assert!(joined.contains(&format!("\n{hashed}\r\n")), "{joined}");
        let file = PasswordFile::parse(&joined).unwrap();
        assert!(file.verify("alice", b"right"));
        assert!(file.verify("kept", b"k"));
        assert!(file.verify("bob", b"two words"));
        assert!(file.verify("dave", b"a:b"));
        assert!(file.verify("carol", b""));
        let bad = hash_plain_lines(split_lines("a:x\nnocolon\n"), hasher).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "line 2: expected `username:password`, found no `:`"
        );
        let bad = hash_plain_lines(split_lines("a:$7$0$AAAA$BBBB\n"), hasher).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "line 1: malformed $7$ hash for `a`: zero iterations"
        );
    }
}
