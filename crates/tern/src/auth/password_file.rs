//! Password files in Mosquitto's format (`mosquitto_passwd`), plus Tern's optional SCRAM lines.
//!
//! One `username:hash` per line; blank lines and lines starting with `#` are ignored. Hashes
//! read:
//!
//! | Form | Meaning |
//! |---|---|
//! | `$6$<b64 salt>$<b64 digest>` | SHA-512(password ‖ salt) (Mosquitto before 1.6) |
//! | `$7$<iterations>$<b64 salt>$<b64 key>` | PBKDF2-HMAC-SHA512, 64-byte key (Mosquitto 1.6–2.1) |
//! | `$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>` | PHC string (Mosquitto 2.1 built with argon2) |
//! | `SCRAM-SHA-256$<iterations>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>` | RFC 5803; Tern only, also `SCRAM-SHA-512` |
//!
//! A user may have one password line and one line per SCRAM mechanism. Loading fails closed:
//! anything that is not one of these forms (including a plain-text password) is an error naming
//! the line, and a file without any user is an error too.
//!
//! [`PasswordFile::verify`] compares digests in constant time and spends the same work on an
//! unknown user as on a known user with a wrong password: it then checks the password against
//! a dummy entry made at load time with the scheme and parameters of the file's first password
//! entry. It is CPU-bound (PBKDF2, argon2): call it from a blocking thread.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::path::Path;

use argon2::password_hash::PasswordHash;
use argon2::{Argon2, PasswordVerifier};
use base64ct::{Base64, Base64Unpadded, Encoding};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::auth::scram::{ScramCredential, ScramMechanism};

/// Length of a SHA-512 digest and of the PBKDF2-HMAC-SHA512 key Mosquitto stores.
const SHA512_LEN: usize = 64;

/// The users of a password file, ready to check passwords and to answer SCRAM exchanges.
///
/// Immutable once loaded, `Send + Sync`: share it in an `Arc` and replace it whole on reload.
#[derive(Clone)]
pub struct PasswordFile {
    users: HashMap<String, User>,
    /// What an unknown user's password (or one of a user with only SCRAM lines) is checked
    /// against, so that the check costs the same as for a known user.
    dummy: StoredHash,
}

/// Why a password file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFileError {
    /// The 1-based line at fault, if the problem is on one line.
    pub line: Option<usize>,
    /// What is wrong, in words.
    pub message: String,
}

impl PasswordFileError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        Self {
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for PasswordFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PasswordFileError {}

/// What the file holds for one user.
#[derive(Clone, Default)]
struct User {
    password: Option<StoredHash>,
    scram_sha256: Option<ScramCredential>,
    scram_sha512: Option<ScramCredential>,
}

impl User {
    fn scram(&self, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        match mechanism {
            ScramMechanism::Sha256 => self.scram_sha256.as_ref(),
            ScramMechanism::Sha512 => self.scram_sha512.as_ref(),
        }
    }

    fn scram_slot(&mut self, mechanism: ScramMechanism) -> &mut Option<ScramCredential> {
        match mechanism {
            ScramMechanism::Sha256 => &mut self.scram_sha256,
            ScramMechanism::Sha512 => &mut self.scram_sha512,
        }
    }
}

/// A password hash of one of the forms Mosquitto reads.
#[derive(Clone)]
pub(crate) enum StoredHash {
    /// `$6$`: SHA-512(password ‖ salt).
    Sha512 {
        salt: Vec<u8>,
        digest: [u8; SHA512_LEN],
    },
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        key: [u8; SHA512_LEN],
    },
    /// `$argon2id$`: the PHC string, checked when loaded.
    Argon2id { phc: String },
}

impl StoredHash {
    /// Whether `password` matches, comparing in constant time.
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Sha512 { salt, digest } => {
                let computed = sha512_salted(password, salt);
                bool::from(computed.as_slice().ct_eq(digest.as_slice()))
            }
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                key,
            } => {
                let computed = pbkdf2_sha512(password, salt, *iterations);
                bool::from(computed.as_slice().ct_eq(key.as_slice()))
            }
            // The verifier recomputes the hash with the string's parameters and compares the
            // outputs in constant time. The string was validated at load, so a parse error
            // cannot happen here; it would count as a mismatch anyway.
            Self::Argon2id { phc } => PasswordHash::new(phc)
                .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok()),
        }
    }

    /// An entry of the same scheme and cost that no password matches in practice (all-zero
    /// salt and digest: finding a preimage would break the hash).
    fn dummy_like(&self) -> Self {
        match self {
            Self::Sha512 { salt, .. } => Self::Sha512 {
                salt: vec![0; salt.len()],
                digest: [0; SHA512_LEN],
            },
            Self::Pbkdf2Sha512 {
                iterations, salt, ..
            } => Self::Pbkdf2Sha512 {
                iterations: *iterations,
                salt: vec![0; salt.len()],
                key: [0; SHA512_LEN],
            },
            Self::Argon2id { phc } => {
                let dummy = PasswordHash::new(phc).ok().and_then(|hash| {
                    let version = hash.version?;
                    let salt_len = decoded_salt_len(&hash)?;
                    let output_len = hash.hash?.len();
                    let params = hash
                        .params
                        .iter()
                        .map(|(name, value)| format!("{name}={value}"))
                        .collect::<Vec<_>>()
                        .join(",");
                    Some(format!(
                        "$argon2id$v={version}${params}${}${}",
                        Base64Unpadded::encode_string(&vec![0; salt_len]),
                        Base64Unpadded::encode_string(&vec![0; output_len]),
                    ))
                });
                match dummy {
                    Some(phc) => Self::Argon2id { phc },
                    // Unreachable for a validated string; a same-scheme fallback keeps the
                    // cost in the right order of magnitude.
                    None => Self::default_dummy(),
                }
            }
        }
    }

    /// The dummy of a file without password entries: Mosquitto's default scheme.
    fn default_dummy() -> Self {
        Self::Pbkdf2Sha512 {
            iterations: 1000,
            salt: vec![0; 12],
            key: [0; SHA512_LEN],
        }
    }
}

impl fmt::Debug for StoredHash {
    /// Names the scheme and its cost only: hashes stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha512 { .. } => f.write_str("$6$"),
            Self::Pbkdf2Sha512 { iterations, .. } => write!(f, "$7$ ({iterations} iterations)"),
            Self::Argon2id { .. } => f.write_str("$argon2id$"),
        }
    }
}

impl fmt::Debug for PasswordFile {
    /// Lists the users and what they have, never their hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.users.keys().collect();
        names.sort();
        let mut map = f.debug_map();
        for name in names {
            let user = &self.users[name];
            let mut kinds = Vec::new();
            if let Some(hash) = &user.password {
                kinds.push(format!("{hash:?}"));
            }
            for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
                if user.scram(mechanism).is_some() {
                    kinds.push(mechanism.name().to_owned());
                }
            }
            map.entry(name, &kinds);
        }
        map.finish()
    }
}

/// One `username:hash` line's hash, parsed.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A password hash (`$6$`, `$7$`, `$argon2id$`).
    Password(StoredHash),
    /// A SCRAM credential.
    Scram(ScramMechanism, ScramCredential),
}

/// Why the hash part of a line is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashError {
    /// Neither a `$…$` hash nor a SCRAM entry: a plain-text password (or nothing).
    NotHashed,
    /// A `$id$` or `SCRAM-…` form Tern does not read.
    Unsupported(String),
    /// A known form with a defect.
    Malformed { scheme: String, reason: String },
}

/// Parses the part of a line after `username:`.
pub(crate) fn parse_hash(hash: &str) -> Result<Entry, HashError> {
    if let Some(rest) = hash.strip_prefix('$') {
        let (id, rest) = rest.split_once('$').unwrap_or((rest, ""));
        match id {
            "6" => parse_sha512(rest).map(Entry::Password),
            "7" => parse_pbkdf2(rest).map(Entry::Password),
            "argon2id" => parse_argon2id(hash).map(Entry::Password),
            _ => Err(HashError::Unsupported(format!("${id}$"))),
        }
    } else if hash.starts_with("SCRAM-") {
        let (name, rest) = hash.split_once('$').unwrap_or((hash, ""));
        let mechanism =
            ScramMechanism::from_name(name).ok_or_else(|| HashError::Unsupported(name.into()))?;
        parse_scram(mechanism, rest).map(|cred| Entry::Scram(mechanism, cred))
    } else {
        Err(HashError::NotHashed)
    }
}

fn malformed(scheme: &str, reason: impl Into<String>) -> HashError {
    HashError::Malformed {
        scheme: scheme.to_owned(),
        reason: reason.into(),
    }
}

/// Decodes standard padded base64 (what Mosquitto writes) that must not be empty.
fn decode_b64(scheme: &str, what: &str, text: &str) -> Result<Vec<u8>, HashError> {
    let bytes = Base64::decode_vec(text)
        .map_err(|_| malformed(scheme, format!("invalid base64 {what}")))?;
    if bytes.is_empty() {
        return Err(malformed(scheme, format!("empty {what}")));
    }
    Ok(bytes)
}

fn decode_digest(scheme: &str, text: &str) -> Result<[u8; SHA512_LEN], HashError> {
    let bytes = decode_b64(scheme, "hash", text)?;
    <[u8; SHA512_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        malformed(
            scheme,
            format!("the hash is {} bytes, expected {SHA512_LEN}", bytes.len()),
        )
    })
}

fn parse_iterations(scheme: &str, text: &str) -> Result<u32, HashError> {
    match text.parse::<u32>() {
        Ok(0) => Err(malformed(scheme, "zero iterations")),
        Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(malformed(
            scheme,
            format!("invalid iteration count `{text}`"),
        )),
    }
}

/// `<b64 salt>$<b64 digest>` after `$6$`.
fn parse_sha512(rest: &str) -> Result<StoredHash, HashError> {
    const SCHEME: &str = "$6$";
    let parts: Vec<&str> = rest.split('$').collect();
    let [salt, digest] = parts.as_slice() else {
        return Err(malformed(SCHEME, "expected `$6$SALT$HASH`"));
    };
    Ok(StoredHash::Sha512 {
        salt: decode_b64(SCHEME, "salt", salt)?,
        digest: decode_digest(SCHEME, digest)?,
    })
}

/// `<iterations>$<b64 salt>$<b64 key>` after `$7$`.
fn parse_pbkdf2(rest: &str) -> Result<StoredHash, HashError> {
    const SCHEME: &str = "$7$";
    let parts: Vec<&str> = rest.split('$').collect();
    let [iterations, salt, key] = parts.as_slice() else {
        return Err(malformed(SCHEME, "expected `$7$ITERATIONS$SALT$HASH`"));
    };
    Ok(StoredHash::Pbkdf2Sha512 {
        iterations: parse_iterations(SCHEME, iterations)?,
        salt: decode_b64(SCHEME, "salt", salt)?,
        key: decode_digest(SCHEME, key)?,
    })
}

/// The whole PHC string: checks everything the verifier will need, so that a line that loads
/// can be verified.
fn parse_argon2id(phc: &str) -> Result<StoredHash, HashError> {
    const SCHEME: &str = "$argon2id$";
    let hash = PasswordHash::new(phc).map_err(|e| malformed(SCHEME, e.to_string()))?;
    match hash.version {
        Some(v) if argon2::Version::try_from(v).is_ok() => {}
        Some(v) => return Err(malformed(SCHEME, format!("unsupported version v={v}"))),
        None => return Err(malformed(SCHEME, "no version (`v=19`)")),
    }
    argon2::Params::try_from(&hash).map_err(|e| malformed(SCHEME, e.to_string()))?;
    match decoded_salt_len(&hash) {
        Some(len) if len >= argon2::MIN_SALT_LEN => {}
        Some(len) => {
            return Err(malformed(
                SCHEME,
                format!(
                    "the salt is {len} bytes, at least {} needed",
                    argon2::MIN_SALT_LEN
                ),
            ));
        }
        None => return Err(malformed(SCHEME, "missing or invalid salt")),
    }
    if hash.hash.is_none() {
        return Err(malformed(SCHEME, "missing hash"));
    }
    Ok(StoredHash::Argon2id {
        phc: phc.to_owned(),
    })
}

/// The length in bytes of a PHC string's salt, if it has a decodable one.
fn decoded_salt_len(hash: &PasswordHash<'_>) -> Option<usize> {
    let mut buf = [0u8; 64];
    hash.salt?.decode_b64(&mut buf).ok().map(<[u8]>::len)
}

/// `<iterations>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>` after `SCRAM-SHA-…$` (RFC 5803).
fn parse_scram(mechanism: ScramMechanism, rest: &str) -> Result<ScramCredential, HashError> {
    let scheme = mechanism.name();
    let shape = || malformed(scheme, "expected `ITERATIONS:SALT$STOREDKEY:SERVERKEY`");
    let (head, keys) = rest.split_once('$').ok_or_else(shape)?;
    let (iterations, salt) = head.split_once(':').ok_or_else(shape)?;
    let (stored, server) = keys.split_once(':').ok_or_else(shape)?;
    let key_len = mechanism.hash(b"").len();
    let key = |what: &str, text: &str| {
        let bytes = decode_b64(scheme, what, text)?;
        if bytes.len() == key_len {
            Ok(bytes)
        } else {
            Err(malformed(
                scheme,
                format!("the {what} is {} bytes, expected {key_len}", bytes.len()),
            ))
        }
    };
    Ok(ScramCredential {
        iterations: parse_iterations(scheme, iterations)?,
        salt: decode_b64(scheme, "salt", salt)?,
        stored_key: key("StoredKey", stored)?,
        server_key: key("ServerKey", server)?,
    })
}

fn sha512_salted(password: &[u8], salt: &[u8]) -> [u8; SHA512_LEN] {
    Sha512::new()
        .chain_update(password)
        .chain_update(salt)
        .finalize()
        .into()
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; SHA512_LEN] {
    pbkdf2::pbkdf2_hmac_array::<Sha512, SHA512_LEN>(password, salt, iterations)
}

/// The `$6$` hash of `password` with `salt`, as Mosquitto writes it.
pub(crate) fn encode_sha512(password: &[u8], salt: &[u8]) -> String {
    format!(
        "$6${}${}",
        Base64::encode_string(salt),
        Base64::encode_string(&sha512_salted(password, salt))
    )
}

/// The `$7$` hash of `password`, as Mosquitto writes it.
pub(crate) fn encode_pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> String {
    format!(
        "$7${iterations}${}${}",
        Base64::encode_string(salt),
        Base64::encode_string(&pbkdf2_sha512(password, salt, iterations))
    )
}

/// The RFC 5803 form of a SCRAM credential (without `username:`).
pub(crate) fn encode_scram(mechanism: ScramMechanism, credential: &ScramCredential) -> String {
    format!(
        "{}${}:{}${}:{}",
        mechanism.name(),
        credential.iterations,
        Base64::encode_string(&credential.salt),
        Base64::encode_string(&credential.stored_key),
        Base64::encode_string(&credential.server_key)
    )
}

/// Which slot of a user a line fills, to find duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Password,
    Scram(ScramMechanism),
}

impl PasswordFile {
    /// Parses the text of a password file.
    ///
    /// # Errors
    /// The first line that is not a valid entry, a duplicate entry, or a file without users.
    pub fn parse(text: &str) -> Result<Self, PasswordFileError> {
        let mut users: HashMap<String, User> = HashMap::new();
        let mut first_lines: HashMap<(String, Kind), usize> = HashMap::new();
        let mut first_password: Option<StoredHash> = None;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim_matches([' ', '\t']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, hash)) = line.split_once(':') else {
                return Err(PasswordFileError::at(
                    number,
                    "expected `username:password-hash`, found no `:`",
                ));
            };
            let name = name.trim_end_matches([' ', '\t']);
            let hash = hash.trim_start_matches([' ', '\t']);
            if name.is_empty() {
                return Err(PasswordFileError::at(number, "empty username"));
            }
            let entry = parse_hash(hash).map_err(|e| {
                PasswordFileError::at(
                    number,
                    match e {
                        HashError::NotHashed if hash.is_empty() => {
                            format!("no password hash for `{name}`")
                        }
                        HashError::NotHashed => format!(
                            "password for `{name}` is not hashed; run `tern passwd -U FILE`"
                        ),
                        HashError::Unsupported(form) => format!(
                            "unsupported password hash `{form}` for `{name}` (Tern reads $6$, \
                             $7$, $argon2id$, SCRAM-SHA-256 and SCRAM-SHA-512)"
                        ),
                        HashError::Malformed { scheme, reason } => {
                            format!("malformed {scheme} hash for `{name}`: {reason}")
                        }
                    },
                )
            })?;
            let kind = match &entry {
                Entry::Password(_) => Kind::Password,
                Entry::Scram(mechanism, _) => Kind::Scram(*mechanism),
            };
            match first_lines.entry((name.to_owned(), kind)) {
                MapEntry::Occupied(first) => {
                    let what = match kind {
                        Kind::Password => "password".to_owned(),
                        Kind::Scram(mechanism) => mechanism.name().to_owned(),
                    };
                    return Err(PasswordFileError::at(
                        number,
                        format!(
                            "duplicate {what} entry for `{name}` (first on line {})",
                            first.get()
                        ),
                    ));
                }
                MapEntry::Vacant(slot) => {
                    slot.insert(number);
                }
            }
            let user = users.entry(name.to_owned()).or_default();
            match entry {
                Entry::Password(hash) => {
                    if first_password.is_none() {
                        first_password = Some(hash.clone());
                    }
                    user.password = Some(hash);
                }
                Entry::Scram(mechanism, credential) => {
                    *user.scram_slot(mechanism) = Some(credential);
                }
            }
        }
        if users.is_empty() {
            return Err(PasswordFileError::whole(
                "no users: the password file has no `username:password-hash` line",
            ));
        }
        let dummy = first_password
            .as_ref()
            .map_or_else(StoredHash::default_dummy, StoredHash::dummy_like);
        Ok(Self { users, dummy })
    }

    /// Reads and parses a password file.
    ///
    /// # Errors
    /// The operating system's error if the file cannot be read (the caller names the file),
    /// text that is not UTF-8, or any [`PasswordFile::parse`] error.
    pub fn load(path: &Path) -> Result<Self, PasswordFileError> {
        let bytes = std::fs::read(path).map_err(|e| PasswordFileError::whole(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            PasswordFileError::at(line, "not valid UTF-8")
        })?;
        Self::parse(&text)
    }

    /// Whether `password` is `username`'s password. Constant-time in the password; an unknown
    /// user, or a user with only SCRAM entries, costs the same as a wrong password.
    #[must_use]
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        let stored = self
            .users
            .get(username)
            .and_then(|user| user.password.as_ref());
        let (hash, known) = match stored {
            Some(hash) => (hash, true),
            None => (&self.dummy, false),
        };
        let matches = hash.verify(password);
        known & matches
    }

    /// Whether the file has any entry for `username`.
    #[must_use]
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// `username`'s SCRAM credential for `mechanism`, if the file has one.
    #[must_use]
    pub fn scram_credential(
        &self,
        username: &str,
        mechanism: ScramMechanism,
    ) -> Option<&ScramCredential> {
        self.users.get(username)?.scram(mechanism)
    }

    /// The number of users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users (never true for a loaded file: that is an error).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // Generated with Debian's mosquitto_passwd 2.0.11:
    //   mosquitto_passwd -c -b FILE alice right            ($7$, 101 iterations, 12-byte salt)
    //   mosquitto_passwd -b FILE bob 'pässword:with colon'
    //   mosquitto_passwd -I 1000 -c -b FILE alice right
    //   mosquitto_passwd -H sha512 -c -b FILE alice right  ($6$)
    //   mosquitto_passwd -H sha512 -b FILE carol ''
    const MOSQ_PBKDF2_ALICE: &str = "alice:$7$101$OBRR7/JNvsGd1/sO$/rmoYAcfvnbv/mT68fktqR9ZWykks7YiSXNx6v/2qMEUyYu5ZGXehXZas0iRgcVQEc6xxrHk/4eHvY6KxcLykA==";
    const MOSQ_PBKDF2_BOB: &str = "bob:$7$101$gvmyDAFycZyq5blP$HqQ4v+Zisfia62Ft+ixcymVSU0RpygGR3laIvIE7MsTkpogKGgLChP2VMPFxHHSg915szuFdn/S0tYofJNQC3g==";
    const MOSQ_PBKDF2_1000_ALICE: &str = "alice:$7$1000$z2y0TIff+cmcWza/$L6d4wVOCM2RHFwc1DN6QG95POM2TTokKcpt9vN/a1rXoRjlgwswhnA3s1cYO/Nd1B3dJlMLZ3XUQulf8SLJrfQ==";
    const MOSQ_SHA512_ALICE: &str = "alice:$6$CqEuIRTVG2UQ6xAY$qMqu60gykUfck7obDHraloMIWowNZ9/ReWcv9XFTmQOLdB4bJIOYLiK5evRYHSCkpzV7/v1euoCTXu/3vfQZNw==";
    const MOSQ_SHA512_CAROL_EMPTY: &str = "carol:$6$Fu1UyZGmO7KFbWvE$nhROpWIzS2kCgqyTWc1ockF9gDTevt77mNeeCAWRjyiNiH7lOWRDJ6Gv8F1m9OhZ1zZ2zd6Cyu/Sjm9K1hAC0g==";

    // Generated with the argon2 reference implementation's command-line tool (Debian package
    // `argon2`), e.g. `printf right | argon2 saltsaltsalt1234 -id -t 1 -m 15 -p 1 -l 32 -e`.
    const ARGON2_M32768: &str = "$argon2id$v=19$m=32768,t=1,p=1$c2FsdHNhbHRzYWx0MTIzNA$++yIIb1lRXeq5LbxGLlJRorszfWbw1BUhFipNJc5tAc";
    /// Mosquitto 2.1's parameters (m=47104, t=1, p=1), password `right`.
    const ARGON2_MOSQ21: &str = "$argon2id$v=19$m=47104,t=1,p=1$bW9zcXVpdHRvMjFzYWx0IQ$Jap7mZ2u1CobM5/9JJinwwkyhG/7/ossQLf/SFiVvpk";
    /// Password `pässword`, p=2, 64-byte output.
    const ARGON2_P2_L64: &str = "$argon2id$v=19$m=4096,t=3,p=2$eHl6eHl6eHl6eHl6$Qvvm5R/qSNvTBPhWj66nriVZ7GM2uYys2H8C0rZn9oSuaTiksATF8jNKpMP96urEYdFGsBHR0GfCuyXnHe7jjQ";

    fn parse_err(text: &str) -> PasswordFileError {
        PasswordFile::parse(text).unwrap_err()
    }

    #[test]
    fn mosquitto_pbkdf2_lines_verify() {
        let file =
            PasswordFile::parse(&format!("{MOSQ_PBKDF2_ALICE}\n{MOSQ_PBKDF2_BOB}\n")).unwrap();
        assert_eq!(file.len(), 2);
        assert!(file.verify("alice", b"right"));
        assert!(!file.verify("alice", b"wrong"));
        assert!(!file.verify("alice", b"righ"));
        assert!(!file.verify("alice", b""));
        assert!(file.verify("bob", "pässword:with colon".as_bytes()));
        assert!(!file.verify("bob", b"right"));
        let file = PasswordFile::parse(MOSQ_PBKDF2_1000_ALICE).unwrap();
        assert!(file.verify("alice", b"right"));
        assert!(!file.verify("alice", b"Right"));
    }

    #[test]
    fn mosquitto_sha512_lines_verify() {
        let file = PasswordFile::parse(&format!(
            "{MOSQ_SHA512_ALICE}\r\n{MOSQ_SHA512_CAROL_EMPTY}\r\n"
        ))
        .unwrap();
        assert!(file.verify("alice", b"right"));
        assert!(!file.verify("alice", b"wrong"));
        assert!(file.verify("carol", b""));
        assert!(!file.verify("carol", b" "));
    }

    #[test]
    fn argon2id_lines_verify() {
        let text = format!("a:{ARGON2_M32768}\nb:{ARGON2_MOSQ21}\nc:{ARGON2_P2_L64}\n");
        let file = PasswordFile::parse(&text).unwrap();
        assert!(file.verify("a", b"right"));
        assert!(!file.verify("a", b"wrong"));
        assert!(file.verify("b", b"right"));
        assert!(!file.verify("b", b"righT"));
        assert!(file.verify("c", "pässword".as_bytes()));
        assert!(!file.verify("c", b"password"));
    }

    #[test]
    fn unknown_user_and_scram_only_user_are_refused_through_the_dummy() {
        for first in [MOSQ_PBKDF2_ALICE, MOSQ_SHA512_ALICE] {
            let text = format!("{first}\n{}\n", scram_line("sam", "pw"));
            let file = PasswordFile::parse(&text).unwrap();
            assert!(!file.verify("nobody", b"right"));
            assert!(!file.verify("nobody", b""));
            assert!(
                !file.verify("sam", b"pw"),
                "SCRAM-only user has no password"
            );
            assert!(file.contains("sam"));
            assert!(!file.contains("nobody"));
        }
        let file = PasswordFile::parse(&format!("a:{ARGON2_M32768}\n")).unwrap();
        assert!(!file.verify("nobody", b"right"));
    }

    #[test]
    fn dummy_has_the_first_entry_scheme_and_parameters() {
        let file = PasswordFile::parse(&format!("{MOSQ_PBKDF2_1000_ALICE}\n")).unwrap();
        match &file.dummy {
            StoredHash::Pbkdf2Sha512 {
                iterations, salt, ..
            } => assert_eq!((*iterations, salt.len()), (1000, 12)),
            other => panic!("dummy {other:?}"),
        }
        let file = PasswordFile::parse(&format!("{MOSQ_SHA512_ALICE}\n")).unwrap();
        assert!(matches!(&file.dummy, StoredHash::Sha512 { salt, .. } if salt.len() == 12));
        let file = PasswordFile::parse(&format!("b:{ARGON2_MOSQ21}\n")).unwrap();
        let StoredHash::Argon2id { phc } = &file.dummy else {
            panic!("dummy {:?}", file.dummy)
        };
        let dummy = PasswordHash::new(phc).unwrap();
        let real = PasswordHash::new(ARGON2_MOSQ21).unwrap();
        assert_eq!(
            argon2::Params::try_from(&dummy).unwrap(),
            argon2::Params::try_from(&real).unwrap()
        );
        assert_eq!(decoded_salt_len(&dummy), decoded_salt_len(&real));
        assert_eq!(phc.len(), ARGON2_MOSQ21.len());
        // No password entry at all: Mosquitto's default scheme.
        let file = PasswordFile::parse(&scram_line("sam", "pw")).unwrap();
        assert!(matches!(
            file.dummy,
            StoredHash::Pbkdf2Sha512 {
                iterations: 1000,
                ..
            }
        ));
        assert!(!file.verify("sam", b"pw"));
    }

    fn scram_line(user: &str, password: &str) -> String {
        let mut lines = String::new();
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let cred =
                ScramCredential::derive(mechanism, password.as_bytes(), b"0123456789abcdef", 4096);
            lines.push_str(&format!("{user}:{}\n", encode_scram(mechanism, &cred)));
        }
        lines
    }

    #[test]
    fn scram_lines_round_trip_beside_a_password_line() {
        let text = format!("{MOSQ_PBKDF2_ALICE}\n{}", scram_line("alice", "right"));
        let file = PasswordFile::parse(&text).unwrap();
        assert_eq!(file.len(), 1);
        assert!(file.verify("alice", b"right"));
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let expected = ScramCredential::derive(mechanism, b"right", b"0123456789abcdef", 4096);
            assert_eq!(file.scram_credential("alice", mechanism), Some(&expected));
            assert_eq!(file.scram_credential("bob", mechanism), None);
        }
        let only_256 = format!(
            "{MOSQ_PBKDF2_ALICE}\nalice:{}\n",
            encode_scram(
                ScramMechanism::Sha256,
                &ScramCredential::derive(ScramMechanism::Sha256, b"x", b"salt", 10)
            )
        );
        let file = PasswordFile::parse(&only_256).unwrap();
        assert!(
            file.scram_credential("alice", ScramMechanism::Sha256)
                .is_some()
        );
        assert!(
            file.scram_credential("alice", ScramMechanism::Sha512)
                .is_none()
        );
    }

    #[test]
    fn encoders_match_mosquitto_and_round_trip() {
        // Re-derive Mosquitto's own line from its salt: the encoders write the same text.
        let salt = Base64::decode_vec("OBRR7/JNvsGd1/sO").unwrap();
        assert_eq!(
            format!("alice:{}", encode_pbkdf2(b"right", &salt, 101)),
            MOSQ_PBKDF2_ALICE
        );
        let salt = Base64::decode_vec("CqEuIRTVG2UQ6xAY").unwrap();
        assert_eq!(
            format!("alice:{}", encode_sha512(b"right", &salt)),
            MOSQ_SHA512_ALICE
        );
        // Any salt length reads (Mosquitto 2.1 writes 64 bytes).
        let line = format!("u:{}", encode_pbkdf2(b"pw", &[7; 64], 5));
        let file = PasswordFile::parse(&line).unwrap();
        assert!(file.verify("u", b"pw"));
        assert!(!file.verify("u", b"pw "));
    }

    #[test]
    fn comments_blank_lines_and_blanks_around_fields_are_ignored() {
        let text = format!("# users\n\n   \n  # indented comment\n {MOSQ_PBKDF2_ALICE} \n");
        let file = PasswordFile::parse(&text).unwrap();
        assert!(file.verify("alice", b"right"));
        let spaced = MOSQ_PBKDF2_ALICE.replacen(':', " :\t", 1);
        assert!(
            PasswordFile::parse(&spaced)
                .unwrap()
                .verify("alice", b"right")
        );
    }

    #[test]
    fn empty_files_are_errors() {
        for text in ["", "\n\n", "# only a comment\n"] {
            let e = parse_err(text);
            assert_eq!(e.line, None);
            assert!(e.message.starts_with("no users"), "{e}");
        }
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let ok = MOSQ_PBKDF2_ALICE;
        let cases: Vec<(String, &str)> = vec![
            (
                format!("{ok}\nbob\n"),
                "line 2: expected `username:password-hash`, found no `:`",
            ),
            (
                format!("# c\n{ok}\n:$6$abc$def\n"),
                "line 3: empty username",
            ),
            (
                format!("{ok}\nbob:secret\n"),
                "line 2: password for `bob` is not hashed; run `tern passwd -U FILE`",
            ),
            (
                format!("{ok}\nbob:\n"),
                "line 2: no password hash for `bob`",
            ),
            (
                format!("{ok}\nbob:$5$abc$def\n"),
                "line 2: unsupported password hash `$5$` for `bob` (Tern reads $6$, $7$, \
                 $argon2id$, SCRAM-SHA-256 and SCRAM-SHA-512)",
            ),
            (
                format!("{ok}\nbob:SCRAM-SHA-1$4096:c2FsdA==$a:b\n"),
                "line 2: unsupported password hash `SCRAM-SHA-1` for `bob` (Tern reads $6$, \
                 $7$, $argon2id$, SCRAM-SHA-256 and SCRAM-SHA-512)",
            ),
            (
                format!(
                    "{ok}\n{}\n",
                    ok.replace("alice", "bob").replace("$7$101$", "$7$0$")
                ),
                "line 2: malformed $7$ hash for `bob`: zero iterations",
            ),
            (
                format!(
                    "{ok}\n{}\n",
                    ok.replace("alice", "bob").replace("$7$101$", "$7$-1$")
                ),
                "line 2: malformed $7$ hash for `bob`: invalid iteration count `-1`",
            ),
            (
                format!(
                    "{ok}\n{}\n",
                    ok.replace("alice", "bob").replace("OBRR", "OB*R")
                ),
                "line 2: malformed $7$ hash for `bob`: invalid base64 salt",
            ),
            (
                format!("{ok}\nbob:$7$101$OBRR7/JNvsGd1/sO$AAAA\n"),
                "line 2: malformed $7$ hash for `bob`: the hash is 3 bytes, expected 64",
            ),
            (
                format!("{ok}\nbob:$7$101$$AAAA\n"),
                "line 2: malformed $7$ hash for `bob`: empty salt",
            ),
            (
                format!("{ok}\nbob:$7$101$OBRR7/JNvsGd1/sO\n"),
                "line 2: malformed $7$ hash for `bob`: expected `$7$ITERATIONS$SALT$HASH`",
            ),
            (
                format!("{ok}\nbob:$6$CqEuIRTVG2UQ6xAY$AAAAAAAAAAAAAAAAAAAAAA==\n"),
                "line 2: malformed $6$ hash for `bob`: the hash is 16 bytes, expected 64",
            ),
            (
                format!("{ok}\n{ok}\n"),
                "line 2: duplicate password entry for `alice` (first on line 1)",
            ),
            (
                format!("{ok}\n{}\n", MOSQ_SHA512_ALICE),
                "line 2: duplicate password entry for `alice` (first on line 1)",
            ),
            (
                format!("{}{}", scram_line("s", "x"), scram_line("s", "y")),
                "line 3: duplicate SCRAM-SHA-256 entry for `s` (first on line 1)",
            ),
            (
                format!("{ok}\nbob:SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA\n"),
                "line 2: malformed SCRAM-SHA-256 hash for `bob`: the StoredKey is 3 bytes, \
                 expected 32",
            ),
            (
                format!("{ok}\nbob:SCRAM-SHA-512$4096:c2FsdA==\n"),
                "line 2: malformed SCRAM-SHA-512 hash for `bob`: expected \
                 `ITERATIONS:SALT$STOREDKEY:SERVERKEY`",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_err(&text).to_string(), expected, "for {text:?}");
        }
    }

    #[test]
    fn bad_argon2_strings_are_errors() {
        let cases = [
            // Only argon2id.
            ARGON2_M32768.replace("argon2id", "argon2i"),
            // No version.
            ARGON2_M32768.replace("v=19$", ""),
            // Memory below the minimum.
            ARGON2_M32768.replace("m=32768", "m=1"),
            // Salt shorter than 8 bytes.
            ARGON2_M32768.replace("c2FsdHNhbHRzYWx0MTIzNA", "c2FsdA"),
            // No hash.
            ARGON2_M32768
                .rsplit_once('$')
                .map(|(head, _)| head.to_owned())
                .unwrap(),
            // Bad characters.
            ARGON2_M32768.replace("++yI", "**yI"),
        ];
        for hash in cases {
            let e = parse_err(&format!("x:{hash}\n"));
            assert_eq!(e.line, Some(1), "{hash}: {e}");
            assert!(e.message.contains("argon2"), "{hash}: {e}");
        }
    }

    #[test]
    fn load_reports_os_errors_and_bad_utf8() {
        let dir = std::env::temp_dir().join(format!("tern-pwfile-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = PasswordFile::load(&dir.join("missing")).unwrap_err();
        assert_eq!(missing.line, None);
        assert!(missing.message.contains("No such file"), "{missing}");
        let bad = dir.join("bad");
        std::fs::write(&bad, b"# ok\n# \xff\n").unwrap();
        assert_eq!(
            PasswordFile::load(&bad).unwrap_err().to_string(),
            "line 2: not valid UTF-8"
        );
        let good = dir.join("good");
        std::fs::write(&good, MOSQ_SHA512_ALICE).unwrap();
        assert!(PasswordFile::load(&good).unwrap().verify("alice", b"right"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn is_shareable_and_debug_hides_hashes() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<PasswordFile>();
        let file = PasswordFile::parse(MOSQ_PBKDF2_ALICE).unwrap();
        let debug = format!("{file:?}");
        assert_eq!(debug, r#"{"alice": ["$7$ (101 iterations)"]}"#);
        assert!(!file.is_empty());
    }
}
