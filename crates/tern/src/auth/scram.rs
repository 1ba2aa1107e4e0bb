//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): the stored credential of a user and
//! the server side of the exchange that MQTT 5 carries in AUTH packets.
//!
//! The server side is a pure state machine: [`ClientFirst::parse`] reads the
//! client-first-message, [`ScramServer::start`] answers it (server-first-message, with a nonce
//! the caller supplies: [`fresh_nonce`] in the broker, a fixed one in tests) and
//! [`ScramServer::finish`] checks the client-final-message and gives the server-final-message.
//! Users without a credential get a fake one from [`FakeCredentials`], so that their exchange
//! fails where a wrong password does, at the proof. Nothing here is expensive: `Hi` runs when a
//! credential is made (`tern passwd --scram`), not when it is checked.

use std::sync::OnceLock;

use base64ct::{Base64, Encoding};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::{Choice, ConstantTimeEq};

/// The SCRAM mechanisms Tern offers, by their MQTT 5 Authentication Method names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256` (RFC 7677).
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl ScramMechanism {
    /// Every mechanism, strongest first.
    pub const ALL: [Self; 2] = [Self::Sha512, Self::Sha256];

    /// The Authentication Method name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism an Authentication Method names, if Tern offers it.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// HMAC with this mechanism's hash.
    #[must_use]
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut mac = <Hmac<Sha512>>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// This mechanism's hash of `data`.
    #[must_use]
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, iterations)` of RFC 5802: PBKDF2 with this mechanism's HMAC.
    #[must_use]
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            Self::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }
}

/// What the server keeps for one user and mechanism (RFC 5802 §3): never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// Iteration count of `Hi`.
    pub iterations: u32,
    /// The user's salt.
    pub salt: Vec<u8>,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// The credential for `password` with `salt` and `iterations`.
    #[must_use]
    pub fn derive(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let salted = mechanism.salted_password(password, salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
        }
    }
}

/// Iteration count of `Hi` that `tern passwd --scram` writes, and that an unknown user's fake
/// credential announces.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length that `tern passwd --scram` writes, and of an unknown user's fake salt.
pub const DEFAULT_SALT_LEN: usize = 16;
/// Random bytes in the server's part of the nonce (RFC 5802 asks for a fresh, hard to guess
/// value; 24 bytes are 32 base64 characters).
const NONCE_BYTES: usize = 24;

/// Why an exchange fails, with the `server-error-value` of RFC 5802 §7 it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramError {
    /// A message that does not follow the grammar (or is not UTF-8, or has invalid base64).
    InvalidEncoding,
    /// A mandatory extension (`m=`) in the client-first-message.
    ExtensionsNotSupported,
    /// The proof does not match: a wrong password, an unknown user, or a proof of the wrong
    /// length. These three are deliberately one error.
    InvalidProof,
    /// The client-final-message's `c=` is not the gs2 header of the client-first-message.
    ChannelBindingsDontMatch,
    /// The client asked for channel binding (`p=`); Tern offers no `-PLUS` mechanism.
    ChannelBindingNotSupported,
    /// A user name that is not a valid `saslname` (bad `=` escape, empty) or that SASLprep
    /// would have to change (anything but printable ASCII).
    InvalidUsernameEncoding,
    /// An authorization identity (`a=`) other than the user name.
    AuthzidNotUser,
    /// The nonce of the client-final-message is not the one the server sent.
    NonceMismatch,
}

impl ScramError {
    /// The `server-error-value` of RFC 5802 §7.
    #[must_use]
    pub fn server_error(self) -> &'static str {
        match self {
            Self::InvalidEncoding => "invalid-encoding",
            Self::ExtensionsNotSupported => "extensions-not-supported",
            Self::InvalidProof => "invalid-proof",
            Self::ChannelBindingsDontMatch => "channel-bindings-dont-match",
            Self::ChannelBindingNotSupported => "channel-binding-not-supported",
            Self::InvalidUsernameEncoding => "invalid-username-encoding",
            Self::AuthzidNotUser | Self::NonceMismatch => "other-error",
        }
    }

    /// The server-final-message that reports this error (`e=...`).
    #[must_use]
    pub fn server_final(self) -> String {
        format!("e={}", self.server_error())
    }
}

impl std::fmt::Display for ScramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Self::InvalidEncoding => "malformed SCRAM message",
            Self::ExtensionsNotSupported => "mandatory SCRAM extension not supported",
            Self::InvalidProof => "invalid SCRAM proof",
            Self::ChannelBindingsDontMatch => "SCRAM channel binding does not match",
            Self::ChannelBindingNotSupported => "SCRAM channel binding not supported",
            Self::InvalidUsernameEncoding => "invalid SCRAM user name",
            Self::AuthzidNotUser => "SCRAM authorization identity differs from the user name",
            Self::NonceMismatch => "SCRAM nonce does not match",
        };
        f.write_str(what)
    }
}

impl std::error::Error for ScramError {}

/// A client-first-message (RFC 5802 §7), parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// `n,,`, `y,,` or either with `a=<user>`: what `c=` of the client-final-message encodes.
    gs2_header: String,
    /// The user name, unescaped.
    username: String,
    /// The client's nonce.
    client_nonce: String,
    /// The message without its gs2 header: the start of the AuthMessage.
    bare: String,
}

impl ClientFirst {
    /// Parses a client-first-message.
    ///
    /// Accepted: the gs2 flags `n` (no channel binding) and `y` (the client could bind but
    /// thinks the server cannot: true, Tern offers no `-PLUS` mechanism); an authorization
    /// identity only if it is the user name; optional extensions after the nonce (ignored, as
    /// RFC 5802 says).
    ///
    /// SASLprep (RFC 4013): user names are accepted only when they are printable ASCII,
    /// which SASLprep leaves as they are; anything else is refused rather than normalised
    /// (Tern carries no Unicode normalisation tables). Passwords never reach the server; the
    /// stored credentials are derived from the password bytes as given.
    ///
    /// # Errors
    /// The [`ScramError`] that the message earns.
    pub fn parse(message: &[u8]) -> Result<Self, ScramError> {
        let text = message_text(message)?;
        let mut parts = text.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ScramError::InvalidEncoding);
        };
        match flag {
            "n" | "y" => {}
            _ if flag.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
            _ => return Err(ScramError::InvalidEncoding),
        }
        let gs2_header = text[..flag.len() + authzid.len() + 2].to_owned();
        let authzid = match authzid {
            "" => None,
            _ => match authzid.strip_prefix("a=") {
                Some(name) => Some(decode_saslname(name).ok_or(ScramError::InvalidEncoding)?),
                None => return Err(ScramError::InvalidEncoding),
            },
        };

        let mut attributes = bare.split(',');
        let user = attributes.next().unwrap_or_default();
        if user.starts_with("m=") {
            return Err(ScramError::ExtensionsNotSupported);
        }
        let username = user
            .strip_prefix("n=")
            .ok_or(ScramError::InvalidEncoding)
            .and_then(|name| decode_saslname(name).ok_or(ScramError::InvalidUsernameEncoding))?;
        if !username.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(ScramError::InvalidUsernameEncoding);
        }
        let client_nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|nonce| is_nonce(nonce))
            .ok_or(ScramError::InvalidEncoding)?;
        if !attributes.all(is_extension) {
            return Err(ScramError::InvalidEncoding);
        }
        if authzid.is_some_and(|a| a != username) {
            return Err(ScramError::AuthzidNotUser);
        }
        Ok(Self {
            gs2_header,
            username,
            client_nonce: client_nonce.to_owned(),
            bare: bare.to_owned(),
        })
    }

    /// The user name, unescaped.
    #[must_use]
    pub fn username(&self) -> &str {
        &self.username
    }
}

/// A message as text: UTF-8 without NUL (which no SCRAM attribute may hold).
fn message_text(message: &[u8]) -> Result<&str, ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::InvalidEncoding)?;
    if text.contains('\0') {
        return Err(ScramError::InvalidEncoding);
    }
    Ok(text)
}

/// A `saslname` unescaped (`=2C` is `,`, `=3D` is `=`); `None` if it is empty or has another
/// `=`.
fn decode_saslname(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        out.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A nonce: printable ASCII other than `,`, at least one character.
fn is_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// An optional extension `x=value` after the nonce (RFC 5802 `attr-val`, non-empty value).
fn is_extension(attribute: &str) -> bool {
    let bytes = attribute.as_bytes();
    bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && bytes[1] == b'='
}

/// A fresh server nonce part: [`NONCE_BYTES`] random bytes in base64, or `None` if the
/// operating system has no random numbers to give.
#[must_use]
pub fn fresh_nonce() -> Option<String> {
    let mut bytes = [0u8; NONCE_BYTES];
    getrandom::fill(&mut bytes).ok()?;
    Some(Base64::encode_string(&bytes))
}

/// Credentials for users that have none, so that the exchange of an unknown user looks like
/// that of a known one until the proof fails like a wrong password: the salt is derived from
/// a secret and the user name (asking twice gives the same salt) and the iteration count is
/// the one `tern passwd --scram` writes.
pub struct FakeCredentials {
    secret: [u8; 32],
}

impl FakeCredentials {
    /// Fake credentials from `secret`.
    #[must_use]
    pub fn with_secret(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// The fake credentials of this process (a random secret made on first use, kept across
    /// reloads so that an unknown user's salt does not change when the password file does),
    /// or `None` if the operating system has no random numbers to give.
    #[must_use]
    pub fn process() -> Option<&'static Self> {
        static PROCESS: OnceLock<FakeCredentials> = OnceLock::new();
        if let Some(fakes) = PROCESS.get() {
            return Some(fakes);
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).ok()?;
        Some(PROCESS.get_or_init(|| Self::with_secret(secret)))
    }

    /// The fake credential of `username` for `mechanism`. Its keys are not derived from any
    /// password: finding one that matches would mean inverting the hash.
    #[must_use]
    pub fn credential(&self, mechanism: ScramMechanism, username: &str) -> ScramCredential {
        let derive = |label: &[u8]| {
            let mut input = Vec::with_capacity(label.len() + 16 + username.len());
            input.extend_from_slice(label);
            input.push(0);
            input.extend_from_slice(mechanism.name().as_bytes());
            input.push(0);
            input.extend_from_slice(username.as_bytes());
            mechanism.hmac(&self.secret, &input)
        };
        let mut salt = derive(b"salt");
        salt.truncate(DEFAULT_SALT_LEN);
        ScramCredential {
            iterations: DEFAULT_ITERATIONS,
            salt,
            stored_key: derive(b"stored-key"),
            server_key: derive(b"server-key"),
        }
    }
}

/// The server side of one exchange after the server-first-message: waits for the
/// client-final-message. Pure: no IO, no randomness of its own (the nonce is given).
pub struct ScramServer {
    mechanism: ScramMechanism,
    username: String,
    credential: ScramCredential,
    /// Whether `credential` is the user's (otherwise it is a fake one).
    known: bool,
    gs2_header: String,
    /// Client nonce followed by server nonce.
    nonce: String,
    /// The start of the AuthMessage: client-first-message-bare and server-first-message.
    client_first_bare: String,
    server_first: String,
}

impl ScramServer {
    /// Answers `first` with the user's `credential`, or a fake one from `fakes` when the user
    /// has none, appending `server_nonce` (printable ASCII without `,`; see [`fresh_nonce`])
    /// to the client's nonce. The server-first-message is [`ScramServer::server_first`].
    #[must_use]
    pub fn start(
        mechanism: ScramMechanism,
        first: ClientFirst,
        credential: Option<&ScramCredential>,
        fakes: &FakeCredentials,
        server_nonce: &str,
    ) -> Self {
        debug_assert!(is_nonce(server_nonce), "server nonce {server_nonce:?}");
        // The fake is made whether needed or not: the same work for known and unknown users.
        let fake = fakes.credential(mechanism, &first.username);
        let (credential, known) = match credential {
            Some(c) => (c.clone(), true),
            None => (fake, false),
        };
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            Base64::encode_string(&credential.salt),
            credential.iterations
        );
        Self {
            mechanism,
            username: first.username,
            credential,
            known,
            gs2_header: first.gs2_header,
            nonce,
            client_first_bare: first.bare,
            server_first,
        }
    }

    /// The server-first-message.
    #[must_use]
    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// The user name the client gave.
    #[must_use]
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The mechanism of this exchange.
    #[must_use]
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Checks the client-final-message; on success returns the server-final-message
    /// (`v=<ServerSignature>`). The proof is compared in constant time, and an unknown user
    /// fails exactly like a wrong password ([`ScramError::InvalidProof`]).
    ///
    /// # Errors
    /// The [`ScramError`] that the message earns.
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = message_text(client_final)?;
        let (without_proof, proof) = text.rsplit_once(',').ok_or(ScramError::InvalidEncoding)?;
        let proof = proof
            .strip_prefix("p=")
            .ok_or(ScramError::InvalidEncoding)?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::InvalidEncoding)?;
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::InvalidEncoding)?;
        if !attributes.all(is_extension) {
            return Err(ScramError::InvalidEncoding);
        }
        let binding = Base64::decode_vec(binding).map_err(|_| ScramError::InvalidEncoding)?;
        let proof = Base64::decode_vec(proof).map_err(|_| ScramError::InvalidEncoding)?;
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingsDontMatch);
        }
        if nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }

        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let m = self.mechanism;
        let client_signature = m.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::InvalidProof);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let matches = m.hash(&client_key).ct_eq(&self.credential.stored_key);
        if !bool::from(matches & Choice::from(u8::from(self.known))) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = m.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", Base64::encode_string(&server_signature)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        Base64::decode_vec(text).unwrap()
    }

    fn fakes() -> FakeCredentials {
        FakeCredentials::with_secret([7; 32])
    }

    /// The client side, written from RFC 5802 §3 for the tests: the client-final-message for
    /// `password` answering `server_first` (whose salt and iteration count it reads).
    pub(crate) fn client_final(
        mechanism: ScramMechanism,
        password: &str,
        gs2_header: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for attribute in server_first.split(',') {
            match attribute.split_at(2) {
                ("r=", v) => nonce = v,
                ("s=", v) => salt = b64(v),
                ("i=", v) => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!(
            "c={},r={nonce}",
            Base64::encode_string(gs2_header.as_bytes())
        );
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", Base64::encode_string(&proof))
    }

    /// A server for `client_first` with `password`'s credential (salt `salt`, 4096 iterations).
    fn server(mechanism: ScramMechanism, client_first: &str, password: &str) -> ScramServer {
        let credential = ScramCredential::derive(mechanism, password.as_bytes(), b"salt1234", 4096);
        let first = ClientFirst::parse(client_first.as_bytes()).unwrap();
        ScramServer::start(mechanism, first, Some(&credential), &fakes(), "SERVERnonce")
    }

    #[test]
    fn rfc7677_sha256_test_vector() {
        // RFC 7677 §3: user "user", password "pencil".
        let m = ScramMechanism::Sha256;
        let credential =
            ScramCredential::derive(m, b"pencil", &b64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
        let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.username(), "user");
        let server = ScramServer::start(
            m,
            first,
            Some(&credential),
            &fakes(),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        );
        assert_eq!(
            server.server_first(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let rfc_client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        // The test client computes the RFC's proof too.
        assert_eq!(
            client_final(
                m,
                "pencil",
                "n,,",
                "n=user,r=rOprNGfwEbeRWgbNEkqO",
                server.server_first()
            ),
            rfc_client_final
        );
        assert_eq!(
            server.finish(rfc_client_final.as_bytes()).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn sha512_matches_scramp() {
        // Made with Python's `scramp` 1.5.0 (client and server), user "user", password
        // "pencil", salt "tern-scram-512-salt!", 4096 iterations, server nonce
        // "3rfcNHYJY1ZVvWVs7j".
        let m = ScramMechanism::Sha512;
        let credential = ScramCredential::derive(m, b"pencil", b"tern-scram-512-salt!", 4096);
        assert_eq!(
            credential.stored_key,
            b64(
                "9i3E/nqrxdOtcxSC3ay+xH7RsMSymf3qCYymM9x3y5o43+2ZTLzV4gJTyxPFV0oI0QbBQEfnpYUf1+sYfaljKQ=="
            )
        );
        assert_eq!(
            credential.server_key,
            b64(
                "2vowT2VGxdyOkU93O4e7wywoDOBhlUvMRbdygDHXT9O3G+PQtsapZDXjepUrQ/CHpHGDQ04e8qro/hLV2J5qMw=="
            )
        );
        let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let server =
            ScramServer::start(m, first, Some(&credential), &fakes(), "3rfcNHYJY1ZVvWVs7j");
        assert_eq!(
            server.server_first(),
            "r=rOprNGfwEbeRWgbNEkqO3rfcNHYJY1ZVvWVs7j,s=dGVybi1zY3JhbS01MTItc2FsdCE=,i=4096"
        );
        let scramp_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO3rfcNHYJY1ZVvWVs7j,p=nDuTJMnqXESHvvoh3xgI9aQ\
                            NZ3P5JC76/AZGd9JzgFehPZhktOMLirqsRdlOwNgGZHgghZsuENRtLfW9B7J3oA==";
        assert_eq!(
            server.finish(scramp_final.as_bytes()).unwrap(),
            "v=eKcSDBFCD40cUV2j04sd6K42005ifiMCx+LpcR52YlUpaML4P14Yfpe6tqXzJv3ElLnSE1hicfIGcIrbuVt/AA=="
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_both_fail_with_invalid_proof() {
        for m in ScramMechanism::ALL {
            let s = server(m, "n,,n=alice,r=abc", "right");
            let wrong = client_final(m, "wrong", "n,,", "n=alice,r=abc", s.server_first());
            assert_eq!(s.finish(wrong.as_bytes()), Err(ScramError::InvalidProof));
            let right = client_final(m, "right", "n,,", "n=alice,r=abc", s.server_first());
            assert!(s.finish(right.as_bytes()).unwrap().starts_with("v="));

            let first = ClientFirst::parse(b"n,,n=nobody,r=abc").unwrap();
            let s = ScramServer::start(m, first, None, &fakes(), "xyz");
            let attempt = client_final(m, "right", "n,,", "n=nobody,r=abc", s.server_first());
            assert_eq!(s.finish(attempt.as_bytes()), Err(ScramError::InvalidProof));
            assert_eq!(ScramError::InvalidProof.server_final(), "e=invalid-proof");
        }
    }

    #[test]
    fn unknown_users_get_a_stable_salt_and_the_usual_iteration_count() {
        let start = |fakes: &FakeCredentials, user: &str| {
            let first = ClientFirst::parse(format!("n,,n={user},r=abc").as_bytes()).unwrap();
            ScramServer::start(ScramMechanism::Sha256, first, None, fakes, "xyz")
                .server_first()
                .to_owned()
        };
        let fakes = fakes();
        let once = start(&fakes, "nobody");
        assert_eq!(once, start(&fakes, "nobody"));
        assert_ne!(once, start(&fakes, "somebody"));
        assert_ne!(
            once,
            start(&FakeCredentials::with_secret([8; 32]), "nobody")
        );
        assert!(once.ends_with(",i=4096"), "{once}");
        for m in ScramMechanism::ALL {
            let fake = fakes.credential(m, "nobody");
            assert_eq!(fake.salt.len(), DEFAULT_SALT_LEN);
            assert_eq!(fake.iterations, DEFAULT_ITERATIONS);
            assert_eq!(fake.stored_key.len(), m.hash(b"").len());
            assert_eq!(fake.server_key.len(), m.hash(b"").len());
        }
        assert_ne!(
            fakes.credential(ScramMechanism::Sha256, "nobody").salt,
            fakes.credential(ScramMechanism::Sha512, "nobody").salt
        );
        let process = FakeCredentials::process().unwrap();
        assert_eq!(
            process.credential(ScramMechanism::Sha256, "x"),
            FakeCredentials::process()
                .unwrap()
                .credential(ScramMechanism::Sha256, "x")
        );
    }

    #[test]
    fn fresh_nonces_are_long_printable_and_differ() {
        let a = fresh_nonce().unwrap();
        let b = fresh_nonce().unwrap();
        assert_ne!(a, b);
        assert_eq!(Base64::decode_vec(&a).unwrap().len(), NONCE_BYTES);
        assert!(is_nonce(&a), "{a}");
    }

    #[test]
    fn gs2_flag_y_and_matching_authzid_are_accepted() {
        let m = ScramMechanism::Sha256;
        for (first, gs2, binding) in [
            ("y,,n=user,r=abc", "y,,", "eSws"),
            ("n,a=user,n=user,r=abc", "n,a=user,", "bixhPXVzZXIs"),
            ("n,,n=user,r=abc,x=ext,y=1", "n,,", "biws"),
        ] {
            let s = server(m, first, "pw");
            let bare = first.strip_prefix(gs2).unwrap();
            let last = client_final(m, "pw", gs2, bare, s.server_first());
            assert!(last.starts_with(&format!("c={binding},")), "{last}");
            assert!(s.finish(last.as_bytes()).is_ok(), "{first}");
            // The channel binding must be this gs2 header, not another.
            let other = if binding == "biws" { "eSws" } else { "biws" };
            let swapped = last.replacen(binding, other, 1);
            assert_eq!(
                s.finish(swapped.as_bytes()),
                Err(ScramError::ChannelBindingsDontMatch),
                "{first}"
            );
        }
    }

    #[test]
    fn escaped_user_names_are_unescaped() {
        let first = ClientFirst::parse(b"n,,n=a=2Cb=3Dc,r=abc").unwrap();
        assert_eq!(first.username(), "a,b=c");
        let first = ClientFirst::parse(b"n,a=a=3D,n=a=3D,r=abc").unwrap();
        assert_eq!(first.username(), "a=");
        let first = ClientFirst::parse(b"n,,n=with space,r=abc").unwrap();
        assert_eq!(first.username(), "with space");
    }

    #[test]
    fn malformed_client_first_messages_are_refused() {
        use ScramError::*;
        let cases: &[(&[u8], ScramError)] = &[
            (b"", InvalidEncoding),
            (b"n", InvalidEncoding),
            (b"n,", InvalidEncoding),
            (b"n,,", InvalidEncoding),
            (b"x,,n=user,r=abc", InvalidEncoding),
            (b"nn,,n=user,r=abc", InvalidEncoding),
            (b"p=tls-unique,,n=user,r=abc", ChannelBindingNotSupported),
            (
                b"p=tls-server-end-point,,n=user,r=abc",
                ChannelBindingNotSupported,
            ),
            (b"n,b=user,n=user,r=abc", InvalidEncoding),
            (b"n,a=,n=user,r=abc", InvalidEncoding),
            (b"n,a=x=41,n=user,r=abc", InvalidEncoding),
            (b"n,a=admin,n=user,r=abc", AuthzidNotUser),
            (b"n,,m=ext,n=user,r=abc", ExtensionsNotSupported),
            (b"n,,r=abc,n=user", InvalidEncoding),
            (b"n,,n=user", InvalidEncoding),
            (b"n,,n=user,", InvalidEncoding),
            (b"n,,n=user,r=", InvalidEncoding),
            (b"n,,n=user,x=abc", InvalidEncoding),
            (b"n,,n=user,r=a b", InvalidEncoding),
            (b"n,,n=user,r=\x7f", InvalidEncoding),
            (b"n,,n=user,r=abc,", InvalidEncoding),
            (b"n,,n=user,r=abc,=x", InvalidEncoding),
            (b"n,,n=user,r=abc,xy", InvalidEncoding),
            (b"n,,n=user,r=abc,x=", InvalidEncoding),
            (b"n,,n=,r=abc", InvalidUsernameEncoding),
            (b"n,,n=us=er,r=abc", InvalidUsernameEncoding),
            (b"n,,n=user=2,r=abc", InvalidUsernameEncoding),
            (b"n,,n=user=,r=abc", InvalidUsernameEncoding),
            (b"n,,n=user=2c,r=abc", InvalidUsernameEncoding),
            (b"n,,n=us\tr,r=abc", InvalidUsernameEncoding),
            ("n,,n=j\u{f6}rg,r=abc".as_bytes(), InvalidUsernameEncoding),
            ("n,,n=\u{2163},r=abc".as_bytes(), InvalidUsernameEncoding),
            (b"n,,n=user\0,r=abc", InvalidEncoding),
            (b"n,,n=\xff,r=abc", InvalidEncoding),
            (b"N,,n=user,r=abc", InvalidEncoding),
            (b" n,,n=user,r=abc", InvalidEncoding),
            (b"n,,N=user,r=abc", InvalidEncoding),
        ];
        for (message, expected) in cases {
            assert_eq!(
                ClientFirst::parse(message),
                Err(*expected),
                "{}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn malformed_client_final_messages_are_refused() {
        use ScramError::*;
        let m = ScramMechanism::Sha256;
        let s = server(m, "n,,n=user,r=abc", "pw");
        let good = client_final(m, "pw", "n,,", "n=user,r=abc", s.server_first());
        let nonce = format!("abc{}", "SERVERnonce");
        let proof = good.rsplit_once(",p=").unwrap().1.to_owned();
        let cases: Vec<(String, ScramError)> = vec![
            (String::new(), InvalidEncoding),
            ("c=biws".into(), InvalidEncoding),
            (format!("c=biws,r={nonce}"), InvalidEncoding),
            (format!("c=biws,r={nonce},p="), InvalidProof),
            (format!("c=biws,r={nonce},p=!!!!"), InvalidEncoding),
            (format!("c=biws,r={nonce},p=AAAA"), InvalidProof),
            (format!("c=biws,r={nonce},p={proof}x"), InvalidEncoding),
            (format!("r={nonce},c=biws,p={proof}"), InvalidEncoding),
            (format!("c=biws,p={proof}"), InvalidEncoding),
            (format!("p={proof}"), InvalidEncoding),
            (format!("c=biws,r={nonce},x,p={proof}"), InvalidEncoding),
            (format!("c=biws,r={nonce},p={proof},x=1"), InvalidEncoding),
            (format!("c=biws,r=abc,p={proof}"), NonceMismatch),
            (format!("c=biws,r={nonce}x,p={proof}"), NonceMismatch),
            (format!("c=biws,r=,p={proof}"), NonceMismatch),
            (
                format!("c=eSws,r={nonce},p={proof}"),
                ChannelBindingsDontMatch,
            ),
            (format!("c=,r={nonce},p={proof}"), ChannelBindingsDontMatch),
            (format!("c=bi,r={nonce},p={proof}"), InvalidEncoding),
            (format!("c=biws\0,r={nonce},p={proof}"), InvalidEncoding),
            // A valid proof for another AuthMessage: an extension the proof did not cover.
            (good.replacen(",p=", ",x=extra,p=", 1), InvalidProof),
        ];
        for (message, expected) in cases {
            assert_eq!(s.finish(message.as_bytes()), Err(expected), "{message}");
        }
        assert_eq!(s.finish(b"\xff\xfe"), Err(InvalidEncoding));
        // The good one still works: failed attempts leave the state as it was.
        assert!(s.finish(good.as_bytes()).is_ok());
    }

    #[test]
    fn every_error_has_an_rfc5802_server_error() {
        use ScramError::*;
        let all = [
            (InvalidEncoding, "e=invalid-encoding"),
            (ExtensionsNotSupported, "e=extensions-not-supported"),
            (InvalidProof, "e=invalid-proof"),
            (ChannelBindingsDontMatch, "e=channel-bindings-dont-match"),
            (
                ChannelBindingNotSupported,
                "e=channel-binding-not-supported",
            ),
            (InvalidUsernameEncoding, "e=invalid-username-encoding"),
            (AuthzidNotUser, "e=other-error"),
            (NonceMismatch, "e=other-error"),
        ];
        for (error, expected) in all {
            assert_eq!(error.server_final(), expected);
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn truncated_and_mutated_messages_never_panic() {
        let m = ScramMechanism::Sha512;
        let first = "n,a=user,n=user,r=abc,x=1";
        let s = server(m, first, "pw");
        let last = client_final(m, "pw", "n,a=user,", "n=user,r=abc,x=1", s.server_first());
        // Every prefix, and many single-byte changes (a fixed xorshift sequence).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for message in [first.as_bytes(), last.as_bytes()] {
            for end in 0..message.len() {
                let _ = ClientFirst::parse(&message[..end]);
                assert!(s.finish(&message[..end]).is_err());
            }
            for _ in 0..2000 {
                let mut mutated = message.to_vec();
                let at = usize::try_from(next() % mutated.len() as u64).unwrap();
                let byte = [b',', b'=', 0, 0xff, b'a', b'2', b'C', (next() & 0xff) as u8]
                    [usize::try_from(next() % 8).unwrap()];
                mutated[at] = byte;
                let _ = ClientFirst::parse(&mutated);
                if mutated != message {
                    let _ = s.finish(&mutated);
                }
            }
        }
        assert!(s.finish(last.as_bytes()).is_ok());
    }
}
