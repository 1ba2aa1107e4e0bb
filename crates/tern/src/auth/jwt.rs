//! JWT authentication (`[auth.jwt]`): a client proves who it is with a JSON Web Token (RFC 7519)
//! in CONNECT's Password (or User Name), signed by an issuer the broker trusts.
//!
//! # What is checked
//!
//! - The signature, with the one configured algorithm and key: HS256/384/512 with a shared
//!   secret, RS256/384/512 and PS256/384/512 with an RSA public key (2048 to 8192 bits),
//!   ES256/ES384 with a P-256/P-384 public key, EdDSA with an Ed25519 public key. The token's
//!   `alg` header must name exactly that algorithm: `none`, another family (an HS256 token
//!   "signed" with the RSA public key as secret) or another size are refused.
//! - `exp` (required unless `require_exp = false`) and `nbf`, with a small leeway for clocks
//!   that disagree; `iss` and `aud` when `issuer` / `audience` are configured (a token with an
//!   `aud` claim is refused when no `audience` is configured: it was meant for someone else);
//!   and the claims of `verify_claims`, each a string that must equal its template with `%u`
//!   (CONNECT's User Name) and `%c` (the client id) filled in.
//!
//! # What a token grants
//!
//! - An `acl` claim carries the client's own rules, in EMQX's classic shape
//!   `{"pub": [filters], "sub": [filters], "all": [filters]}`. They apply in addition to the
//!   broker's ACL file: an action must be allowed by both. Filters may use `%c` and `%u` as
//!   ACL file patterns do. A filter that is not a valid topic filter, or holds a line break, a
//!   NUL or surrounding blanks, makes the whole token refused: nothing from a token is ever
//!   spliced into ACL text unchecked. Without an `acl` claim only the ACL file applies.
//! - `exp` closes the connection when the token runs out (MQTT 5: DISCONNECT 0xA0, Maximum
//!   connect time), `leeway` after the time it names.
//! - The user name access checks use: CONNECT's User Name when the token comes in the
//!   Password (or, when the client sent no User Name, the token's `sub`); the token's `sub`
//!   when the token comes in the User Name (such a token must have one).
//!
//! A refused token gets CONNACK 0x86 Bad User Name or Password (MQTT 3.x: return code 4), and
//! the reason is logged at debug level, never the token.
//!
//! # Cryptography
//!
//! `jsonwebtoken` parses the token and checks the standard claims; the signature checks run on
//! ring, the crypto library Tern's TLS already uses, through the
//! [`CryptoProvider`](jsonwebtoken::crypto::CryptoProvider) this module installs
//! ([`install_crypto_provider`]). The provider signs with HMAC only (the broker never signs;
//! tests make HMAC tokens with it).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};
use tern_codec::{ByteString, ReasonCode};
use tern_core::{Acl, AuthDecision, AuthRequest, Grant};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The leeway when none is configured: enough for clocks kept by NTP.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// Where the token is in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenField {
    /// The Password (the default).
    #[default]
    Password,
    /// The User Name.
    Username,
}

/// Where the verification key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum JwtKeySource {
    /// A shared secret written in the configuration (`secret`).
    Secret(Vec<u8>),
    /// A file holding the shared secret (`secret_file`); a final line break is not part of it.
    SecretFile(PathBuf),
    /// A PEM file with the issuer's public key or certificate (`public_key_file`).
    PublicKeyFile(PathBuf),
}

impl fmt::Debug for JwtKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret(..)"),
            Self::SecretFile(p) => f.debug_tuple("SecretFile").field(p).finish(),
            Self::PublicKeyFile(p) => f.debug_tuple("PublicKeyFile").field(p).finish(),
        }
    }
}

/// The settings of `[auth.jwt]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// The only algorithm accepted.
    pub algorithm: Algorithm,
    /// The verification key.
    pub key: JwtKeySource,
    /// Where the token is.
    pub from: TokenField,
    /// Whether a token without `exp` is refused.
    pub require_exp: bool,
    /// How far `exp` and `nbf` may be off (whole seconds).
    pub leeway: Duration,
    /// Accepted `iss` values; empty = `iss` is not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty = a token with `aud` is refused.
    pub audiences: Vec<String>,
    /// Claims that must equal a template (`%u`, `%c` filled in), by claim name.
    pub verify_claims: BTreeMap<String, String>,
}

impl JwtSettings {
    /// Settings for `algorithm` and `key`, with the defaults for the rest.
    #[must_use]
    pub fn new(algorithm: Algorithm, key: JwtKeySource) -> Self {
        Self {
            algorithm,
            key,
            from: TokenField::Password,
            require_exp: true,
            leeway: DEFAULT_LEEWAY,
            issuers: Vec::new(),
            audiences: Vec::new(),
            verify_claims: BTreeMap::new(),
        }
    }
}

/// A setting of `[auth.jwt]` that cannot be used: which one (its TOML key) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSetupError {
    /// The key at fault (`algorithm`, `secret_file`, `public_key_file`, `verify_claims.sub`...).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for JwtSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for JwtSetupError {}

fn setup_error(key: &str, message: impl Into<String>) -> JwtSetupError {
    JwtSetupError {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The algorithm named `name`, as in a token's `alg` header (`HS256`, `RS256`, `ES256`...).
///
/// # Errors
///
/// A message listing the supported names.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let algorithm = match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            return Err(format!(
                "expected HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, \
                 ES384 or EdDSA, got `{other}`"
            ));
        }
    };
    Ok(algorithm)
}

/// The JWT authentication source.
pub struct JwtAuth {
    settings: JwtSettings,
    key: DecodingKey,
    validation: Validation,
    warnings: Vec<(String, String)>,
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Two sources are equal when their settings are (the files named are not read again).
impl PartialEq for JwtAuth {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl JwtAuth {
    /// Reads the key and checks the settings.
    ///
    /// # Errors
    ///
    /// The setting at fault: a key of the wrong kind for the algorithm, an unreadable or
    /// unusable key file, an empty secret, a claim template that cannot be filled.
    pub fn new(settings: JwtSettings) -> Result<Self, JwtSetupError> {
        install_crypto_provider();
        let algorithm = settings.algorithm;
        let name = algorithm_name(algorithm);
        let mut warnings = Vec::new();
        let key = match (algorithm.family(), &settings.key) {
            (AlgorithmFamily::Hmac, JwtKeySource::PublicKeyFile(_)) => {
                return Err(setup_error(
                    "public_key_file",
                    format!("{name} takes a shared secret: set `secret` or `secret_file` instead"),
                ));
            }
            (AlgorithmFamily::Hmac, JwtKeySource::Secret(secret)) => {
                hmac_key(algorithm, "secret", secret, &mut warnings)?
            }
            (AlgorithmFamily::Hmac, JwtKeySource::SecretFile(path)) => {
                let secret = read_secret_file(path)?;
                hmac_key(algorithm, "secret_file", &secret, &mut warnings)?
            }
            (_, JwtKeySource::PublicKeyFile(path)) => read_public_key(algorithm, path)?,
            (_, JwtKeySource::Secret(_)) => return Err(public_key_needed("secret", name)),
            (_, JwtKeySource::SecretFile(_)) => return Err(public_key_needed("secret_file", name)),
        };
        for (claim, template) in &settings.verify_claims {
            let key = format!("verify_claims.{claim}");
            if template.is_empty() {
                return Err(setup_error(&key, "the template is empty"));
            }
            if settings.from == TokenField::Username && template.contains("%u") {
                return Err(setup_error(
                    &key,
                    "`%u` would be the token itself: the token is in the User Name (`from = \
                     \"username\"`)",
                ));
            }
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = settings.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Strict, as RFC 7519 §4.1.3 asks: a token naming audiences must name this broker.
        validation.validate_aud = true;
        let mut required = Vec::new();
        if settings.require_exp {
            required.push("exp");
        }
        if !settings.issuers.is_empty() {
            validation.set_issuer(&settings.issuers);
            required.push("iss");
        }
        if !settings.audiences.is_empty() {
            validation.set_audience(&settings.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            settings,
            key,
            validation,
            warnings,
        })
    }

    /// The settings this source was made from.
    #[must_use]
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Settings that work but are weak (a short HMAC secret), as (TOML key, message).
    #[must_use]
    pub fn warnings(&self) -> &[(String, String)] {
        &self.warnings
    }

    /// Decides `request` if it carries something that looks like a JWT where the token is
    /// expected; `None` when it does not (the next source decides).
    #[must_use]
    pub fn decide(&self, request: &AuthRequest) -> Option<AuthDecision> {
        let token = match self.settings.from {
            TokenField::Password => request
                .password
                .as_deref()
                .and_then(|p| std::str::from_utf8(p).ok())?,
            TokenField::Username => request.username.as_deref()?,
        };
        if !looks_like_jwt(token) {
            return None;
        }
        Some(match self.check(token, request) {
            Ok(grant) => AuthDecision::Allow(grant),
            Err(why) => {
                tracing::debug!(
                    client = %request.client_id,
                    peer = ?request.remote_addr,
                    "JWT refused: {why}"
                );
                AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
            }
        })
    }

    /// Checks the token and builds what it grants.
    fn check(&self, token: &str, request: &AuthRequest) -> Result<Grant, String> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| describe_error(&e))?;
        let claims = data.claims;
        for (claim, template) in &self.settings.verify_claims {
            let expected = fill_template(template, request).ok_or_else(|| {
                format!(
                    "`{claim}` cannot be checked: {template} names a value the client did not send"
                )
            })?;
            match claims.get(claim) {
                Some(Value::String(s)) if *s == expected => {}
                Some(Value::String(_)) => {
                    return Err(format!("the `{claim}` claim is not `{template}`"));
                }
                Some(_) => return Err(format!("the `{claim}` claim is not a string")),
                None => return Err(format!("the `{claim}` claim is missing")),
            }
        }
        let sub = match claims.get("sub") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err("the `sub` claim is not a string".to_owned()),
        };
        let username = match self.settings.from {
            TokenField::Username => Some(sub.ok_or(
                "the token is in the User Name, so it needs a `sub` claim to name the client",
            )?),
            TokenField::Password if request.username.is_none() => sub,
            TokenField::Password => None,
        };
        let acl = match claims.get("acl") {
            None => None,
            Some(value) => Some(Arc::new(
                client_acl(value).map_err(|e| format!("the `acl` claim: {e}"))?,
            )),
        };
        let expires_at = match claims.get("exp").and_then(Value::as_f64) {
            None => None,
            Some(exp) => instant_at(exp + self.settings.leeway.as_secs_f64()),
        };
        Ok(Grant {
            username: username.map(ByteString::from),
            acl,
            expires_at,
            data: None,
        })
    }
}

/// The HMAC key for `secret` (from the setting `key_name`), with a warning when it is shorter
/// than RFC 7518 asks.
fn hmac_key(
    algorithm: Algorithm,
    key_name: &str,
    secret: &[u8],
    warnings: &mut Vec<(String, String)>,
) -> Result<DecodingKey, JwtSetupError> {
    if secret.is_empty() {
        return Err(setup_error(key_name, "the secret is empty"));
    }
    let recommended = hmac_output_len(algorithm);
    if secret.len() < recommended {
        warnings.push((
            key_name.to_owned(),
            format!(
                "the {} secret is {} bytes long; RFC 7518 asks for at least {recommended} \
                 random bytes",
                algorithm_name(algorithm),
                secret.len()
            ),
        ));
    }
    DecodingKey::from_secret(secret).map_err(|e| setup_error(key_name, e.to_string()))
}

fn public_key_needed(key: &str, name: &str) -> JwtSetupError {
    setup_error(
        key,
        format!("{name} verifies with the issuer's public key: set `public_key_file` instead"),
    )
}

/// The output length of the HMAC of `algorithm`, the secret length RFC 7518 §3.2 asks for.
fn hmac_output_len(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "the algorithm",
    }
}

/// A secret file's bytes, without the line break an editor or `echo` leaves at the end.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, JwtSetupError> {
    let mut bytes = std::fs::read(path).map_err(|e| {
        setup_error(
            "secret_file",
            format!("cannot read `{}`: {e}", path.display()),
        )
    })?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(setup_error(
            "secret_file",
            format!("`{}` is empty", path.display()),
        ));
    }
    Ok(bytes)
}

/// Reads a PEM public key (`PUBLIC KEY`, `RSA PUBLIC KEY`) or certificate and checks that it
/// fits `algorithm`: an RSA key of 2048 to 8192 bits, an EC key on the algorithm's curve, an
/// Ed25519 key.
fn read_public_key(algorithm: Algorithm, path: &Path) -> Result<DecodingKey, JwtSetupError> {
    let key = "public_key_file";
    let fail = |message: String| setup_error(key, format!("`{}`: {message}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).map_err(|_| {
        fail("no PEM block found (expected `-----BEGIN PUBLIC KEY-----`)".to_owned())
    })?;
    let name = algorithm_name(algorithm);
    let label = pem.label.as_str();
    if label.contains("PRIVATE KEY") {
        return Err(fail(
            "this is a private key; the broker needs only the issuer's public key (make it with \
             `openssl pkey -in KEY -pubout`)"
                .to_owned(),
        ));
    }
    if label == "RSA PUBLIC KEY" {
        // PKCS#1 RSAPublicKey, what ring verifies with directly.
        if algorithm.family() != AlgorithmFamily::Rsa {
            return Err(fail(format!(
                "this is an RSA key; {name} needs another kind"
            )));
        }
        let (_, rsa) = x509_parser::public_key::RSAPublicKey::from_der(&pem.contents)
            .map_err(|_| fail("the RSA public key is malformed".to_owned()))?;
        check_rsa_size(rsa.modulus).map_err(fail)?;
        return Ok(DecodingKey::from_rsa_der(&pem.contents));
    }
    let certificate;
    let spki = match label {
        "PUBLIC KEY" => {
            SubjectPublicKeyInfo::from_der(&pem.contents)
                .map_err(|_| fail("the public key is malformed".to_owned()))?
                .1
        }
        "CERTIFICATE" => {
            certificate = x509_parser::parse_x509_certificate(&pem.contents)
                .map_err(|_| fail("the certificate is malformed".to_owned()))?
                .1;
            certificate.tbs_certificate.subject_pki.clone()
        }
        other => {
            return Err(fail(format!(
                "expected a PEM public key (`-----BEGIN PUBLIC KEY-----`) or certificate, found \
                 `{other}`"
            )));
        }
    };
    let point = &*spki.subject_public_key.data;
    let oid = &spki.algorithm.algorithm;
    match algorithm.family() {
        AlgorithmFamily::Rsa => {
            if *oid != OID_PKCS1_RSAENCRYPTION {
                return Err(fail(format!("this is not an RSA key, which {name} needs")));
            }
            let (_, rsa) = x509_parser::public_key::RSAPublicKey::from_der(point)
                .map_err(|_| fail("the RSA public key is malformed".to_owned()))?;
            check_rsa_size(rsa.modulus).map_err(fail)?;
            Ok(DecodingKey::from_rsa_der(point))
        }
        AlgorithmFamily::Ec => {
            if *oid != OID_KEY_TYPE_EC_PUBLIC_KEY {
                return Err(fail(format!("this is not an EC key, which {name} needs")));
            }
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            let (wanted, curve_name) = if algorithm == Algorithm::ES384 {
                (OID_NIST_EC_P384, "P-384")
            } else {
                (OID_EC_P256, "P-256")
            };
            if curve.as_ref() != Some(&wanted) {
                return Err(fail(format!(
                    "{name} needs a key on the {curve_name} curve, this one is on another"
                )));
            }
            if point.first() != Some(&4) {
                return Err(fail("the EC point is not in uncompressed form".to_owned()));
            }
            Ok(DecodingKey::from_ec_der(point))
        }
        AlgorithmFamily::Ed => {
            if *oid != OID_SIG_ED25519 || point.len() != 32 {
                return Err(fail(format!(
                    "this is not an Ed25519 key, which {name} needs"
                )));
            }
            Ok(DecodingKey::from_ed_der(point))
        }
        AlgorithmFamily::Hmac => Err(fail(format!("{name} takes a shared secret"))),
    }
}

/// RSA moduli ring verifies with: 2048 to 8192 bits.
fn check_rsa_size(modulus: &[u8]) -> Result<(), String> {
    let significant: &[u8] = match modulus.iter().position(|&b| b != 0) {
        Some(i) => &modulus[i..],
        None => &[],
    };
    let bits = match significant.first() {
        Some(first) => significant.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    };
    if (2048..=8192).contains(&bits) {
        Ok(())
    } else {
        Err(format!(
            "the RSA key has {bits} bits; keys of 2048 to 8192 bits are accepted"
        ))
    }
}

/// Why a token was refused, in words for the debug log (never the token).
fn describe_error(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => "bad signature".to_owned(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token's `alg` is not the configured algorithm".to_owned()
        }
        ErrorKind::ExpiredSignature => "expired (`exp`)".to_owned(),
        ErrorKind::ImmatureSignature => "not valid yet (`nbf`)".to_owned(),
        ErrorKind::InvalidIssuer => "the issuer (`iss`) is not accepted".to_owned(),
        ErrorKind::InvalidAudience => {
            "the audience (`aud`) does not name this broker (see `audience`)".to_owned()
        }
        ErrorKind::MissingRequiredClaim(c) => format!("the `{c}` claim is missing"),
        ErrorKind::InvalidClaimFormat(c) => format!("the `{c}` claim is malformed"),
        ErrorKind::Json(_)
        | ErrorKind::Base64(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidToken => "malformed token".to_owned(),
        _ => e.to_string(),
    }
}

/// `template` with `%u` (CONNECT's User Name) and `%c` (the client id) filled in; `None` when
/// it needs a value the client did not send.
fn fill_template(template: &str, request: &AuthRequest) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let value = match rest.as_bytes().get(i + 1) {
            Some(b'u') => Some(request.username.as_deref()?),
            Some(b'c') if !request.client_id.is_empty() => Some(&*request.client_id),
            Some(b'c') => return None,
            _ => None,
        };
        match value {
            Some(v) => {
                out.push_str(v);
                rest = &rest[i + 2..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

/// Whether `token` has a JWT's shape: three base64url parts (the last may be empty), the first
/// of which is a JSON object. Anything else is left to the next source (a password, say).
#[must_use]
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty() || payload.is_empty() {
        return false;
    }
    if !(base64url(header) && base64url(payload) && base64url(signature)) {
        return false;
    }
    Base64UrlUnpadded::decode_vec(header)
        .ok()
        .is_some_and(|json| serde_json::from_slice::<Map<String, Value>>(&json).is_ok())
}

/// The instant at which the wall-clock time `unix_seconds` comes, as seen now; now if it has
/// passed, `None` if it is too far ahead to represent (it never comes).
pub(crate) fn instant_at(unix_seconds: f64) -> Option<Instant> {
    let now = Instant::now();
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let ahead = unix_seconds - since_epoch;
    if ahead.is_nan() || ahead <= 0.0 {
        return Some(now);
    }
    Duration::try_from_secs_f64(ahead)
        .ok()
        .and_then(|d| now.checked_add(d))
}

/// The client's own rules from a JSON value of the shape `{"pub": [filters], "sub": [filters],
/// "all": [filters]}` (each key optional): `pub` lets the client publish, `sub` subscribe and
/// receive, `all` both. The rules become ACL `pattern` lines, so `%c` and `%u` work as in the
/// ACL file. An empty set of rules allows nothing.
///
/// # Errors
///
/// A description of the first thing that is not of that shape, or of a filter that is not a
/// valid topic filter or could change the ACL text (line breaks, NUL, surrounding blanks).
pub fn client_acl(value: &Value) -> Result<Acl, String> {
    let Value::Object(rules) = value else {
        return Err("expected an object such as {\"pub\": [..], \"sub\": [..]}".to_owned());
    };
    let mut text = String::new();
    for (key, filters) in rules {
        let access = match key.as_str() {
            "pub" => "write",
            "sub" => "read",
            "all" => "readwrite",
            other => {
                return Err(format!(
                    "unknown key `{other}` (expected `pub`, `sub` or `all`)"
                ));
            }
        };
        let Value::Array(filters) = filters else {
            return Err(format!("`{key}` is not an array of topic filters"));
        };
        for filter in filters {
            let Value::String(filter) = filter else {
                return Err(format!("`{key}` holds something other than a string"));
            };
            check_rule_filter(filter).map_err(|e| format!("`{key}`: {e}"))?;
            text.push_str("pattern ");
            text.push_str(access);
            text.push(' ');
            text.push_str(filter);
            text.push('\n');
        }
    }
    if text.is_empty() {
        return Ok(Acl::default());
    }
    Acl::parse(&text)
        .map(|(acl, _warnings)| acl)
        .map_err(|d| d.message)
}

/// A filter that is safe to write after `pattern ACCESS `: a valid topic filter, on one line,
/// without NUL or other control characters, and without blanks at either end (the ACL parser
/// would trim them and change the filter).
fn check_rule_filter(filter: &str) -> Result<(), String> {
    let shown = filter.escape_debug();
    if filter.is_empty() {
        return Err("an empty topic filter".to_owned());
    }
    if filter.len() > usize::from(u16::MAX) {
        return Err("a topic filter longer than 65535 bytes".to_owned());
    }
    if filter.chars().any(char::is_control) {
        return Err(format!(
            "the topic filter \"{shown}\" holds a control character (line break, NUL...)"
        ));
    }
    if filter.trim() != filter {
        return Err(format!(
            "the topic filter \"{shown}\" starts or ends with a blank"
        ));
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let valid = match level {
            "+" => true,
            "#" => last,
            other => !other.contains(['+', '#']),
        };
        if !valid {
            return Err(format!(
                "\"{shown}\" is not a valid topic filter (`+` and `#` fill a whole level, `#` \
                 only the last)"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The ring-based CryptoProvider.

/// Installs the ring-based [`CryptoProvider`](jsonwebtoken::crypto::CryptoProvider) as
/// jsonwebtoken's process-wide provider (once; later calls, and a provider installed by someone
/// else first, change nothing).
pub fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&ring_provider::PROVIDER);
}

mod ring_provider {
    use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
    use jsonwebtoken::errors::{ErrorKind, Result};
    use jsonwebtoken::signature::{self, Signer, Verifier};
    use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
    use ring::hmac;
    use ring::signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256,
        RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512, RSA_PSS_2048_8192_SHA256,
        RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512, RsaParameters, RsaPublicKeyComponents,
        UnparsedPublicKey, VerificationAlgorithm,
    };

    /// Verification of every algorithm Tern accepts; signing with HMAC only.
    pub(super) static PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory: signer,
        verifier_factory: verifier,
        key_utils: KeyUtils::new_unimplemented(),
    };

    fn hmac_algorithm(algorithm: Algorithm) -> Option<hmac::Algorithm> {
        match algorithm {
            Algorithm::HS256 => Some(hmac::HMAC_SHA256),
            Algorithm::HS384 => Some(hmac::HMAC_SHA384),
            Algorithm::HS512 => Some(hmac::HMAC_SHA512),
            _ => None,
        }
    }

    struct HmacSigner {
        algorithm: Algorithm,
        key: hmac::Key,
    }

    impl Signer<Vec<u8>> for HmacSigner {
        fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
            Ok(hmac::sign(&self.key, message).as_ref().to_vec())
        }
    }

    impl JwtSigner for HmacSigner {
        fn algorithm(&self) -> Algorithm {
            self.algorithm
        }
    }

    fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
        let Some(hmac_algorithm) = hmac_algorithm(*algorithm) else {
            return Err(ErrorKind::UnsupportedAlgorithm.into());
        };
        if key.family() != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        Ok(Box::new(HmacSigner {
            algorithm: *algorithm,
            key: hmac::Key::new(hmac_algorithm, key.as_bytes()),
        }))
    }

    enum Check {
        Hmac(hmac::Key),
        PublicKey(&'static dyn VerificationAlgorithm, Vec<u8>),
        RsaComponents(&'static RsaParameters, Vec<u8>, Vec<u8>),
    }

    struct RingVerifier {
        algorithm: Algorithm,
        check: Check,
    }

    impl Verifier<Vec<u8>> for RingVerifier {
        fn verify(
            &self,
            message: &[u8],
            signature: &Vec<u8>,
        ) -> std::result::Result<(), signature::Error> {
            let valid = match &self.check {
                // Constant time.
                Check::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
                Check::PublicKey(algorithm, key) => UnparsedPublicKey::new(*algorithm, key)
                    .verify(message, signature)
                    .is_ok(),
                Check::RsaComponents(parameters, n, e) => RsaPublicKeyComponents { n, e }
                    .verify(parameters, message, signature)
                    .is_ok(),
            };
            if valid {
                Ok(())
            } else {
                Err(signature::Error::new())
            }
        }
    }

    impl JwtVerifier for RingVerifier {
        fn algorithm(&self) -> Algorithm {
            self.algorithm
        }
    }

    fn rsa(parameters: &'static RsaParameters, key: &DecodingKey) -> Check {
        match key.kind() {
            DecodingKeyKind::SecretOrDer(der) => Check::PublicKey(parameters, der.clone()),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                Check::RsaComponents(parameters, n.clone(), e.clone())
            }
        }
    }

    fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
        // A key is only ever used with the family it was made for: no HS256 "signature" made
        // with an RSA public key as the secret.
        if key.family() != algorithm.family() {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        let bytes = || key.try_get_as_bytes().map(<[u8]>::to_vec);
        let check = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let Some(hmac_algorithm) = hmac_algorithm(*algorithm) else {
                    return Err(ErrorKind::InvalidAlgorithm.into());
                };
                Check::Hmac(hmac::Key::new(hmac_algorithm, key.try_get_as_bytes()?))
            }
            Algorithm::RS256 => rsa(&RSA_PKCS1_2048_8192_SHA256, key),
            Algorithm::RS384 => rsa(&RSA_PKCS1_2048_8192_SHA384, key),
            Algorithm::RS512 => rsa(&RSA_PKCS1_2048_8192_SHA512, key),
            Algorithm::PS256 => rsa(&RSA_PSS_2048_8192_SHA256, key),
            Algorithm::PS384 => rsa(&RSA_PSS_2048_8192_SHA384, key),
            Algorithm::PS512 => rsa(&RSA_PSS_2048_8192_SHA512, key),
            Algorithm::ES256 => Check::PublicKey(&ECDSA_P256_SHA256_FIXED, bytes()?),
            Algorithm::ES384 => Check::PublicKey(&ECDSA_P384_SHA384_FIXED, bytes()?),
            Algorithm::EdDSA => Check::PublicKey(&ED25519, bytes()?),
            _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
        };
        Ok(Box::new(RingVerifier {
            algorithm: *algorithm,
            check,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use tern_core::{Access, Identity};

    #[test]
    fn jwt_shape() {
        let header = Base64UrlUnpadded::encode_string(br#"{"alg":"HS256","typ":"JWT"}"#);
        assert!(looks_like_jwt(&format!("{header}.eyJhIjoxfQ.c2ln")));
        assert!(looks_like_jwt(&format!("{header}.eyJhIjoxfQ.")));
        assert!(!looks_like_jwt("secret"));
        assert!(!looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt(&format!("{header}.eyJhIjoxfQ")));
        assert!(!looks_like_jwt(&format!("{header}.eyJhIjoxfQ.c2ln.x")));
        assert!(!looks_like_jwt(&format!("{header}.eyJh IjoxfQ.c2ln")));
        assert!(!looks_like_jwt(".eyJhIjoxfQ.c2ln"));
        assert!(!looks_like_jwt(&format!("{header}..c2ln")));
    }

    fn who<'a>(client_id: &'a str, username: Option<&'a str>) -> Identity<'a> {
        Identity {
            client_id,
            username,
        }
    }

    #[test]
    fn acl_claim_becomes_patterns() {
        let acl = client_acl(&serde_json::json!({
            "pub": ["up/%c", "shared/+/in"],
            "sub": ["down/%c/#"],
            "all": ["chat"],
        }))
        .unwrap();
        let dev = who("dev1", Some("alice"));
        assert!(acl.allows(Access::Write, dev, "up/dev1"));
        assert!(!acl.allows(Access::Write, dev, "up/dev2"));
        assert!(!acl.allows(Access::Read, dev, "up/dev1"));
        assert!(acl.allows(Access::Write, dev, "shared/x/in"));
        assert!(acl.allows_subscribe(dev, "down/dev1/#"));
        assert!(!acl.allows_subscribe(dev, "down/#"));
        assert!(acl.allows(Access::Read, dev, "chat"));
        assert!(acl.allows(Access::Write, dev, "chat"));
        // A client id that is a wildcard fills no pattern.
        assert!(!acl.allows(Access::Write, who("+", None), "up/+"));
    }

    #[test]
    fn empty_acl_claim_allows_nothing() {
        let acl = client_acl(&serde_json::json!({"pub": [], "sub": []})).unwrap();
        assert!(!acl.allows(Access::Write, who("c", None), "a"));
        assert!(!acl.allows_subscribe(who("c", None), "a"));
    }

    #[test]
    fn acl_claim_refuses_anything_that_could_change_the_acl_text() {
        for bad in [
            serde_json::json!({"pub": ["a\ntopic readwrite #"]}),
            serde_json::json!({"pub": ["a\r\npattern readwrite #"]}),
            serde_json::json!({"pub": ["a\u{0}b"]}),
            serde_json::json!({"pub": [" #"]}),
            serde_json::json!({"pub": ["a\u{a0}"]}),
            serde_json::json!({"pub": ["a/#/b"]}),
            serde_json::json!({"pub": ["a+"]}),
            serde_json::json!({"pub": [""]}),
            serde_json::json!({"pub": [1]}),
            serde_json::json!({"pub": "a"}),
            serde_json::json!({"publish": ["a"]}),
            serde_json::json!(["a"]),
        ] {
            assert!(client_acl(&bad).is_err(), "{bad} accepted");
        }
    }

    fn request(client_id: &str, username: Option<&str>) -> AuthRequest {
        AuthRequest {
            stage: tern_core::AuthStage::Connect,
            version: tern_codec::ProtocolVersion::V5,
            client_id: ByteString::from(client_id),
            username: username.map(ByteString::from),
            password: None,
            method: None,
            data: None,
            remote_addr: None,
        }
    }

    #[test]
    fn templates() {
        let r = request("dev1", Some("alice"));
        assert_eq!(fill_template("%u", &r).as_deref(), Some("alice"));
        assert_eq!(fill_template("%c:%u", &r).as_deref(), Some("dev1:alice"));
        assert_eq!(fill_template("100%", &r).as_deref(), Some("100%"));
        assert_eq!(fill_template("%x", &r).as_deref(), Some("%x"));
        assert_eq!(fill_template("%u", &request("dev1", None)), None);
        assert_eq!(fill_template("%c", &request("", Some("a"))), None);
    }

    #[test]
    fn rsa_sizes() {
        let mut modulus = vec![0u8];
        modulus.extend([0xc5; 256]);
        assert_eq!(check_rsa_size(&modulus), Ok(()));
        assert!(check_rsa_size(&[0x00, 0xff, 0x01]).is_err());
        let mut small = vec![0u8];
        small.extend([0xc5; 128]);
        assert!(check_rsa_size(&small).is_err());
    }

    fn hs256(secret: &[u8], claims: &Value) -> String {
        install_crypto_provider();
        let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn hmac_tokens_round_trip_and_wrong_secrets_fail() {
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let auth = JwtAuth::new(JwtSettings::new(
            Algorithm::HS256,
            JwtKeySource::Secret(secret.clone()),
        ))
        .unwrap();
        let claims = serde_json::json!({"exp": now() + 60, "sub": "alice"});
        let token = hs256(&secret, &claims);
        assert!(looks_like_jwt(&token));
        let mut r = request("c", Some("alice"));
        r.password = Some(bytes::Bytes::from(token.clone()));
        assert!(matches!(auth.decide(&r), Some(AuthDecision::Allow(_))));
        let forged = hs256(b"another secret of thirty-two b..", &claims);
        r.password = Some(bytes::Bytes::from(forged));
        assert!(matches!(
            auth.decide(&r),
            Some(AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD))
        ));
        r.password = Some(bytes::Bytes::from_static(b"plain password"));
        assert!(auth.decide(&r).is_none());
    }

    #[test]
    fn hmac_settings_refuse_public_keys_and_the_other_way_round() {
        let e = JwtAuth::new(JwtSettings::new(
            Algorithm::HS256,
            JwtKeySource::PublicKeyFile("/x".into()),
        ))
        .unwrap_err();
        assert_eq!(e.key, "public_key_file");
        let e = JwtAuth::new(JwtSettings::new(
            Algorithm::RS256,
            JwtKeySource::Secret(b"s".to_vec()),
        ))
        .unwrap_err();
        assert_eq!(e.key, "secret");
        let e = JwtAuth::new(JwtSettings::new(
            Algorithm::HS256,
            JwtKeySource::Secret(Vec::new()),
        ))
        .unwrap_err();
        assert_eq!(e.key, "secret");
        let short = JwtAuth::new(JwtSettings::new(
            Algorithm::HS256,
            JwtKeySource::Secret(b"short".to_vec()),
        ))
        .unwrap();
        assert_eq!(short.warnings().len(), 1);
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(parse_algorithm("RS256"), Ok(Algorithm::RS256));
        assert_eq!(parse_algorithm("EdDSA"), Ok(Algorithm::EdDSA));
        assert!(parse_algorithm("none").is_err());
        assert!(parse_algorithm("hs256").is_err());
    }
}
