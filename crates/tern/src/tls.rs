//! TLS listeners: the settings of one listener ([`TlsConfig`]), the rustls server configuration
//! built from its files, and the [`TlsAcceptor`] that handshakes new connections with the
//! current configuration and can be reloaded (SIGHUP) without touching established ones.
//!
//! Everything fails closed: a certificate, key, CA or CRL file that is missing, empty or not
//! what it should be is an error naming the file, at start-up (the broker does not start) and on
//! reload (the previous configuration stays in use).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::{self as ring_provider, cipher_suite};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use tern_codec::ByteString;
use tokio_rustls::server::TlsStream;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// The TLS settings of one listener, as written in the configuration (paths already made
/// absolute or relative to the working directory by the configuration reader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM: the server certificate first, then intermediates
    /// (`certfile`).
    pub certfile: PathBuf,
    /// The server's private key, PEM: PKCS#8, RSA (PKCS#1) or SEC1 EC (`keyfile`).
    pub keyfile: PathBuf,
    /// CA certificates that client certificates are verified against, PEM (`cafile`).
    pub cafile: Option<PathBuf>,
    /// A directory of CA certificate files (`capath`): every file holding PEM certificates.
    pub capath: Option<PathBuf>,
    /// Certificate revocation lists, PEM (`crlfile`).
    pub crlfile: Option<PathBuf>,
    /// Whether a client must present a valid certificate (`require_certificate`).
    pub require_certificate: bool,
    /// Whether the client certificate gives the user name.
    pub identity: CertificateIdentity,
    /// The lowest TLS version accepted (`tls_version`).
    pub min_version: TlsVersion,
    /// TLS 1.2 cipher suites, OpenSSL's syntax (`ciphers`); `None` = every suite Tern has.
    pub ciphers: Option<String>,
    /// TLS 1.3 cipher suites, colon-separated names (`ciphers_tls1.3`); `None` = all three.
    pub ciphers_tls13: Option<String>,
    /// How long the handshake may take; `None` = the broker's `connect_timeout`.
    pub handshake_timeout: Option<Duration>,
}

impl TlsConfig {
    /// A TLS listener with this certificate and key and every other setting at its default.
    #[must_use]
    pub fn new(certfile: impl Into<PathBuf>, keyfile: impl Into<PathBuf>) -> Self {
        Self {
            certfile: certfile.into(),
            keyfile: keyfile.into(),
            cafile: None,
            capath: None,
            crlfile: None,
            require_certificate: false,
            identity: CertificateIdentity::None,
            min_version: TlsVersion::Tls12,
            ciphers: None,
            ciphers_tls13: None,
            handshake_timeout: None,
        }
    }

    /// Whether clients must present a certificate: `require_certificate`, or a user name taken
    /// from the certificate (a client without one would otherwise pick its own user name).
    #[must_use]
    pub fn certificate_required(&self) -> bool {
        self.require_certificate || self.identity != CertificateIdentity::None
    }

    /// Checks the settings together (no file is read): what is wrong and the key at fault.
    fn check_settings(&self) -> Result<(), TlsError> {
        let verifies = self.cafile.is_some() || self.capath.is_some();
        if !verifies {
            if self.require_certificate {
                return Err(TlsError::setting(
                    TlsKey::RequireCertificate,
                    "needs `cafile` or `capath`: the CA certificates to verify clients against",
                ));
            }
            let key = match self.identity {
                CertificateIdentity::None => None,
                CertificateIdentity::CommonName => Some(TlsKey::UseIdentityAsUsername),
                CertificateIdentity::Subject => Some(TlsKey::UseSubjectAsUsername),
            };
            if let Some(key) = key {
                return Err(TlsError::setting(
                    key,
                    "needs `cafile` or `capath`: the CA certificates to verify clients against",
                ));
            }
            if self.crlfile.is_some() {
                return Err(TlsError::setting(
                    TlsKey::Crlfile,
                    "needs `cafile` or `capath`: revocation lists apply to verified client \
                     certificates",
                ));
            }
        }
        Ok(())
    }

    /// Reads every file and builds the rustls configuration: what a listener would use. Used
    /// by the configuration readers to refuse a file that names bad certificates.
    pub fn check(&self) -> Result<(), TlsError> {
        build_server_config(self).map(drop)
    }
}

/// What the client certificate gives as user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertificateIdentity {
    /// Nothing: the user name comes from CONNECT.
    #[default]
    None,
    /// The certificate's Common Name (`use_identity_as_username`).
    CommonName,
    /// The certificate's whole subject, in RFC 2253 form as OpenSSL prints it
    /// (`use_subject_as_username`).
    Subject,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl TlsVersion {
    /// Mosquitto's names: `tlsv1.2`, `tlsv1.3`. `tlsv1.1` and `tlsv1` are older than anything
    /// Tern speaks: `Err` carries the warning to give, and TLS 1.2 is used.
    pub fn parse(text: &str) -> Result<Self, ParseVersionError> {
        match text {
            "tlsv1.3" => Ok(Self::Tls13),
            "tlsv1.2" => Ok(Self::Tls12),
            "tlsv1.1" | "tlsv1" => Err(ParseVersionError::TooOld),
            _ => Err(ParseVersionError::Unknown),
        }
    }
}

/// Why a `tls_version` value was not taken as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseVersionError {
    /// `tlsv1.1` or `tlsv1`: Tern's minimum, TLS 1.2, is used instead (it is higher).
    TooOld,
    /// Not a version name.
    Unknown,
}

impl ParseVersionError {
    /// The words for a configuration message about `value`.
    #[must_use]
    pub fn message(self, value: &str) -> String {
        match self {
            Self::TooOld => format!(
                "`{value}` is older than any version Tern speaks: clients need TLS 1.2 or 1.3"
            ),
            Self::Unknown => format!("expected tlsv1.2 or tlsv1.3, got `{value}`"),
        }
    }
}

/// The TLS settings, by their Mosquitto names: which one an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKey {
    /// `certfile`.
    Certfile,
    /// `keyfile`.
    Keyfile,
    /// `cafile`.
    Cafile,
    /// `capath`.
    Capath,
    /// `crlfile`.
    Crlfile,
    /// `require_certificate`.
    RequireCertificate,
    /// `use_identity_as_username`.
    UseIdentityAsUsername,
    /// `use_subject_as_username`.
    UseSubjectAsUsername,
    /// `ciphers`.
    Ciphers,
    /// `ciphers_tls1.3`.
    CiphersTls13,
    /// `tls_version`.
    TlsVersion,
}

impl TlsKey {
    /// The Mosquitto directive.
    #[must_use]
    pub fn mosquitto_name(self) -> &'static str {
        match self {
            Self::Certfile => "certfile",
            Self::Keyfile => "keyfile",
            Self::Cafile => "cafile",
            Self::Capath => "capath",
            Self::Crlfile => "crlfile",
            Self::RequireCertificate => "require_certificate",
            Self::UseIdentityAsUsername => "use_identity_as_username",
            Self::UseSubjectAsUsername => "use_subject_as_username",
            Self::Ciphers => "ciphers",
            Self::CiphersTls13 => "ciphers_tls1.3",
            Self::TlsVersion => "tls_version",
        }
    }

    /// The key in Tern's TOML `tls` table.
    #[must_use]
    pub fn toml_name(self) -> &'static str {
        match self {
            Self::CiphersTls13 => "ciphers_tls13",
            other => other.mosquitto_name(),
        }
    }
}

/// A TLS setting or one of its files is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The setting at fault.
    pub key: TlsKey,
    /// The file at fault, if a file is.
    pub file: Option<PathBuf>,
    /// What is wrong.
    pub message: String,
}

impl TlsError {
    fn setting(key: TlsKey, message: impl Into<String>) -> Self {
        Self {
            key,
            file: None,
            message: message.into(),
        }
    }

    fn file(key: TlsKey, file: &Path, message: impl Into<String>) -> Self {
        Self {
            key,
            file: Some(file.to_owned()),
            message: message.into(),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "`{}`: {}", file.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TlsError {}

// ---------------------------------------------------------------------------------------------
// Files.

/// Reads a whole file; an empty file is an error too.
fn read(key: TlsKey, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TlsError::file(key, path, format!("cannot read the file: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(TlsError::file(key, path, "the file is empty"));
    }
    Ok(bytes)
}

/// The words for a PEM syntax error.
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(e) => format!("a PEM block is not valid base64: {e}"),
        other => other.to_string(),
    }
}

/// The certificates of a PEM file, each checked to be an X.509 certificate.
fn load_certs(key: TlsKey, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(key, path)?;
    let certs = parse_certs(&bytes).map_err(|m| TlsError::file(key, path, m))?;
    if certs.is_empty() {
        return Err(TlsError::file(
            key,
            path,
            "no certificate found (expected PEM `-----BEGIN CERTIFICATE-----` blocks)",
        ));
    }
    Ok(certs)
}

/// The certificates of PEM text; `Ok(empty)` if it holds none.
fn parse_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for (i, cert) in CertificateDer::pem_slice_iter(bytes).enumerate() {
        let cert = cert.map_err(|e| pem_error(&e))?;
        if let Err(e) = X509Certificate::from_der(&cert) {
            return Err(format!(
                "certificate {} is not a valid X.509 certificate: {e}",
                i + 1
            ));
        }
        certs.push(cert);
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key = TlsKey::Keyfile;
    let bytes = read(key, path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(k) => Ok(k),
        Err(pem::Error::NoItemsFound) => {
            let text = String::from_utf8_lossy(&bytes);
            let message = if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type") {
                "the private key is encrypted; Tern needs it unencrypted (protect the file with \
                 its permissions instead)"
            } else {
                "no private key found (expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC \
                 PRIVATE KEY` block)"
            };
            Err(TlsError::file(key, path, message))
        }
        Err(e) => Err(TlsError::file(key, path, pem_error(&e))),
    }
}

/// The CA certificates of `cafile` and of every file of `capath`.
fn load_roots(config: &TlsConfig) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let mut add = |key: TlsKey, path: &Path, certs: Vec<CertificateDer<'static>>| {
        for (i, cert) in certs.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                TlsError::file(
                    key,
                    path,
                    format!("certificate {} cannot be a trust anchor: {e}", i + 1),
                )
            })?;
        }
        Ok::<(), TlsError>(())
    };
    if let Some(cafile) = &config.cafile {
        add(TlsKey::Cafile, cafile, load_certs(TlsKey::Cafile, cafile)?)?;
    }
    if let Some(capath) = &config.capath {
        let key = TlsKey::Capath;
        let entries = std::fs::read_dir(capath)
            .map_err(|e| TlsError::file(key, capath, format!("cannot read the directory: {e}")))?;
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| {
                TlsError::file(key, capath, format!("cannot read the directory: {e}"))
            })?;
            let path = entry.path();
            if path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut found = 0;
        for file in files {
            let bytes = std::fs::read(&file)
                .map_err(|e| TlsError::file(key, &file, format!("cannot read the file: {e}")))?;
            // Files without certificates (CRLs, notes) are skipped, as OpenSSL's lookup does.
            let certs = parse_certs(&bytes).map_err(|m| TlsError::file(key, &file, m))?;
            found += certs.len();
            add(key, &file, certs)?;
        }
        if found == 0 {
            return Err(TlsError::file(
                key,
                capath,
                "no CA certificate found in the directory (expected files with PEM \
                 certificates)",
            ));
        }
    }
    Ok(roots)
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let key = TlsKey::Crlfile;
    let bytes = read(key, path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(key, path, pem_error(&e)))?;
    if crls.is_empty() {
        return Err(TlsError::file(
            key,
            path,
            "no revocation list found (expected PEM `-----BEGIN X509 CRL-----` blocks)",
        ));
    }
    Ok(crls)
}

// ---------------------------------------------------------------------------------------------
// Cipher suites.

/// One cipher suite: its OpenSSL name, the rustls suite, and the OpenSSL cipher-string
/// classes it belongs to.
struct Suite {
    name: &'static str,
    suite: SupportedCipherSuite,
    classes: &'static [&'static str],
}

/// Classes every TLS 1.2 suite of Tern belongs to: all are ephemeral ECDH with an AEAD.
const ECDHE_AEAD: [&str; 10] = [
    "ALL", "DEFAULT", "HIGH", "ECDHE", "EECDH", "kECDHE", "kEECDH", "AEAD", "TLSv1.2", "FIPS",
];

/// The TLS 1.2 suites Tern has, in its order of preference.
fn tls12_suites() -> [Suite; 6] {
    const ECDSA_256: &[&str] = &["aECDSA", "ECDSA", "AES", "AESGCM", "AES256", "SHA384"];
    const ECDSA_128: &[&str] = &["aECDSA", "ECDSA", "AES", "AESGCM", "AES128", "SHA256"];
    const ECDSA_CHACHA: &[&str] = &["aECDSA", "ECDSA", "CHACHA20", "SHA256"];
    const RSA_256: &[&str] = &["aRSA", "RSA", "AES", "AESGCM", "AES256", "SHA384"];
    const RSA_128: &[&str] = &["aRSA", "RSA", "AES", "AESGCM", "AES128", "SHA256"];
    const RSA_CHACHA: &[&str] = &["aRSA", "RSA", "CHACHA20", "SHA256"];
    [
        Suite {
            name: "ECDHE-ECDSA-AES256-GCM-SHA384",
            suite: cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            classes: ECDSA_256,
        },
        Suite {
            name: "ECDHE-ECDSA-AES128-GCM-SHA256",
            suite: cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            classes: ECDSA_128,
        },
        Suite {
            name: "ECDHE-ECDSA-CHACHA20-POLY1305",
            suite: cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            classes: ECDSA_CHACHA,
        },
        Suite {
            name: "ECDHE-RSA-AES256-GCM-SHA384",
            suite: cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            classes: RSA_256,
        },
        Suite {
            name: "ECDHE-RSA-AES128-GCM-SHA256",
            suite: cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            classes: RSA_128,
        },
        Suite {
            name: "ECDHE-RSA-CHACHA20-POLY1305",
            suite: cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            classes: RSA_CHACHA,
        },
    ]
}

/// The TLS 1.3 suites, by their RFC 8446 names (which OpenSSL uses too).
fn tls13_suites() -> [(&'static str, SupportedCipherSuite); 3] {
    [
        (
            "TLS_AES_256_GCM_SHA384",
            cipher_suite::TLS13_AES_256_GCM_SHA384,
        ),
        (
            "TLS_AES_128_GCM_SHA256",
            cipher_suite::TLS13_AES_128_GCM_SHA256,
        ),
        (
            "TLS_CHACHA20_POLY1305_SHA256",
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ),
    ]
}

/// OpenSSL cipher-string classes that none of Tern's suites belongs to: naming them selects
/// nothing and excluding them removes nothing, as in OpenSSL when no such suite is available.
const EMPTY_CLASSES: &[&str] = &[
    "aNULL",
    "eNULL",
    "NULL",
    "COMPLEMENTOFALL",
    "COMPLEMENTOFDEFAULT",
    "LOW",
    "MEDIUM",
    "EXPORT",
    "EXP",
    "EXPORT40",
    "EXPORT56",
    "SSLv2",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "RC4",
    "RC2",
    "MD5",
    "SHA1",
    "SHA",
    "DES",
    "3DES",
    "IDEA",
    "SEED",
    "CAMELLIA",
    "CAMELLIA128",
    "CAMELLIA256",
    "ARIA",
    "ARIA128",
    "ARIA256",
    "PSK",
    "aPSK",
    "kPSK",
    "kECDHEPSK",
    "kDHEPSK",
    "kRSAPSK",
    "SRP",
    "kSRP",
    "aSRP",
    "DSS",
    "aDSS",
    "kRSA",
    "DH",
    "DHE",
    "EDH",
    "kDHE",
    "kEDH",
    "kDHr",
    "kDHd",
    "kDH",
    "ADH",
    "AECDH",
    "aECDH",
    "kECDHr",
    "kECDHe",
    "kECDH",
    "CBC",
    "AESCCM",
    "AESCCM8",
    "AES128CCM",
    "AES256CCM",
    "GOST",
    "aGOST",
    "kGOST",
    "GOST94",
    "GOST89MAC",
    "eGOST",
    "SUITEB128",
    "SUITEB128ONLY",
    "SUITEB192",
    "CHACHA20-POLY1305-OLD",
];

/// Selects TLS 1.2 suites with OpenSSL's cipher-string syntax: `:`-, `,`- or space-separated
/// items, each a suite name, a class (`HIGH`, `ECDHE`, `aRSA`, `AESGCM`...) or classes joined
/// by `+` (all of them); `!X` removes for good, `-X` removes, `+X` moves to the end; `@...`
/// (`@STRENGTH`, `@SECLEVEL=n`) is accepted and ignored. A word Tern does not know is an
/// error naming it.
fn select_tls12(text: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    let suites = tls12_suites();
    let mut selected: Vec<usize> = Vec::new();
    let mut banned = [false; 6];
    for item in text
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if item.starts_with('@') {
            continue;
        }
        let (op, words) = match item.as_bytes()[0] {
            b'!' | b'-' | b'+' => (item.as_bytes()[0], &item[1..]),
            _ => (b' ', item),
        };
        let mut matched = [true; 6];
        for word in words.split('+') {
            if let Some(i) = suites.iter().position(|s| s.name == word) {
                for (j, m) in matched.iter_mut().enumerate() {
                    *m &= i == j;
                }
            } else if ECDHE_AEAD.contains(&word) {
                // Every suite belongs to these.
            } else if suites.iter().any(|s| s.classes.contains(&word)) {
                for (m, s) in matched.iter_mut().zip(&suites) {
                    *m &= s.classes.contains(&word);
                }
            } else if EMPTY_CLASSES.contains(&word) {
                matched = [false; 6];
            } else {
                return Err(unknown_cipher(word, &suites));
            }
        }
        let hits = (0..6).filter(|i| matched[*i]);
        match op {
            b'!' => hits.for_each(|i| {
                banned[i] = true;
                selected.retain(|s| *s != i);
            }),
            b'-' => {
                let hits: Vec<usize> = hits.collect();
                selected.retain(|s| !hits.contains(s));
            }
            b'+' => {
                let hits: Vec<usize> = hits.collect();
                let (moved, kept): (Vec<usize>, Vec<usize>) =
                    selected.iter().partition(|s| hits.contains(s));
                selected = kept;
                selected.extend(moved);
            }
            _ => {
                for i in hits {
                    if !banned[i] && !selected.contains(&i) {
                        selected.push(i);
                    }
                }
            }
        }
    }
    Ok(selected.into_iter().map(|i| suites[i].suite).collect())
}

fn unknown_cipher(word: &str, suites: &[Suite]) -> String {
    let names: Vec<&str> = suites.iter().map(|s| s.name).collect();
    format!(
        "unknown or unsupported cipher `{word}`; Tern's TLS 1.2 suites are {}",
        names.join(", ")
    )
}

/// Selects TLS 1.3 suites: `:`-separated names, in order of preference.
fn select_tls13(text: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    let suites = tls13_suites();
    let mut selected = Vec::new();
    for name in text.split(':').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((_, suite)) = suites.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = suites.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown or unsupported TLS 1.3 cipher suite `{name}`; Tern's are {}",
                names.join(", ")
            ));
        };
        if !selected.contains(suite) {
            selected.push(*suite);
        }
    }
    Ok(selected)
}

/// The protocol versions of `tls_version tlsv1.3`.
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The crypto provider with the selected suites, and the protocol versions.
fn provider(
    config: &TlsConfig,
) -> Result<(CryptoProvider, &'static [&'static SupportedProtocolVersion]), TlsError> {
    let tls13 = match &config.ciphers_tls13 {
        None => tls13_suites().iter().map(|(_, s)| *s).collect(),
        Some(text) => {
            let selected =
                select_tls13(text).map_err(|m| TlsError::setting(TlsKey::CiphersTls13, m))?;
            if selected.is_empty() {
                return Err(TlsError::setting(
                    TlsKey::CiphersTls13,
                    "selects no cipher suite",
                ));
            }
            selected
        }
    };
    let mut suites: Vec<SupportedCipherSuite> = tls13;
    let versions: &'static [&'static SupportedProtocolVersion] = match config.min_version {
        TlsVersion::Tls13 => TLS13_ONLY,
        TlsVersion::Tls12 => {
            let tls12 = match &config.ciphers {
                None => tls12_suites().iter().map(|s| s.suite).collect(),
                Some(text) => {
                    let selected =
                        select_tls12(text).map_err(|m| TlsError::setting(TlsKey::Ciphers, m))?;
                    if selected.is_empty() {
                        return Err(TlsError::setting(
                            TlsKey::Ciphers,
                            "selects no cipher suite Tern has (see `ciphers` in the \
                             documentation for the TLS 1.2 suites)",
                        ));
                    }
                    selected
                }
            };
            suites.extend(tls12);
            rustls::ALL_VERSIONS
        }
    };
    let provider = CryptoProvider {
        cipher_suites: suites,
        ..ring_provider::default_provider()
    };
    Ok((provider, versions))
}

// ---------------------------------------------------------------------------------------------
// The server configuration.

/// Reads the files of `config` and builds the rustls server configuration.
pub fn build_server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    build(config).map(|(server, _)| server)
}

/// [`build_server_config`], with a description of the server certificate for logs.
fn build(config: &TlsConfig) -> Result<(Arc<ServerConfig>, String), TlsError> {
    config.check_settings()?;
    let (provider, versions) = provider(config)?;
    let provider = Arc::new(provider);
    let certs = load_certs(TlsKey::Certfile, &config.certfile)?;
    let summary = describe_certificate(&certs);
    let key = load_key(&config.keyfile)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::setting(TlsKey::TlsVersion, e.to_string()))?;
    let builder = if config.cafile.is_some() || config.capath.is_some() {
        let roots = load_roots(config)?;
        let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if let Some(crlfile) = &config.crlfile {
            // As OpenSSL's X509_V_FLAG_CRL_CHECK (Mosquitto): the client certificate's own
            // revocation is checked, and a certificate whose issuer has no CRL is refused.
            verifier = verifier
                .with_crls(load_crls(crlfile)?)
                .only_check_end_entity_revocation();
        }
        if !config.certificate_required() {
            verifier = verifier.allow_unauthenticated();
        }
        let verifier = verifier.build().map_err(|e| {
            use rustls::server::VerifierBuilderError as E;
            match (&e, &config.crlfile) {
                (E::InvalidCrl(crl), Some(crlfile)) => TlsError::file(
                    TlsKey::Crlfile,
                    crlfile,
                    format!("invalid revocation list: {crl:?}"),
                ),
                _ => TlsError::setting(TlsKey::Cafile, e.to_string()),
            }
        })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let server = builder
        .with_single_cert(certs, key)
        .map_err(|e| key_error(config, &e))?;
    Ok((Arc::new(server), summary))
}

/// The words for a certificate and key that rustls refused together.
fn key_error(config: &TlsConfig, e: &rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::file(
            TlsKey::Keyfile,
            &config.keyfile,
            format!(
                "this private key does not belong to the certificate of `{}`",
                config.certfile.display()
            ),
        ),
        rustls::Error::InvalidCertificate(_) => TlsError::file(
            TlsKey::Certfile,
            &config.certfile,
            format!("invalid certificate: {e}"),
        ),
        other => TlsError::file(
            TlsKey::Keyfile,
            &config.keyfile,
            format!("unusable private key: {other}"),
        ),
    }
}

/// A short description of a server certificate chain for logs: the subject, serial and end
/// of validity of its first certificate, and whether it is outside its validity period.
fn describe_certificate(certs: &[CertificateDer<'_>]) -> String {
    let Some(Ok((_, cert))) = certs.first().map(|c| X509Certificate::from_der(c)) else {
        return "an unreadable certificate".to_owned();
    };
    let validity = cert.validity();
    let state = if validity.is_valid() {
        ""
    } else {
        " (NOT VALID NOW: clients will refuse it)"
    };
    format!(
        "`{}`, serial {}, valid until {}{state}",
        subject_rfc2253(cert.subject()),
        cert.raw_serial_as_string(),
        validity.not_after
    )
}

// ---------------------------------------------------------------------------------------------
// The acceptor.

/// The TLS side of one listener: handshakes connections with the current configuration, which
/// [`TlsAcceptor::reload`] replaces atomically.
pub struct TlsAcceptor {
    settings: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    /// What the current configuration serves, for logs.
    summary: RwLock<String>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A connection through its TLS handshake.
pub(crate) struct Accepted<S> {
    /// The encrypted stream.
    pub(crate) stream: TlsStream<S>,
    /// The user name taken from the client certificate, if the listener takes one.
    pub(crate) certificate_username: Option<ByteString>,
}

impl TlsAcceptor {
    /// Reads the files and builds the configuration; fails if any file is unusable.
    pub fn new(settings: TlsConfig) -> Result<Self, TlsError> {
        let (current, summary) = build(&settings)?;
        Ok(Self {
            settings,
            current: RwLock::new(current),
            summary: RwLock::new(summary),
        })
    }

    /// The settings this acceptor was made from.
    #[must_use]
    pub fn settings(&self) -> &TlsConfig {
        &self.settings
    }

    /// How long a handshake may take, if the listener sets it.
    #[must_use]
    pub fn handshake_timeout(&self) -> Option<Duration> {
        self.settings.handshake_timeout
    }

    /// Reads the files again and, if they make a working configuration, uses it for every new
    /// handshake; established connections are not affected. On error the previous
    /// configuration stays in use. Returns a description of the certificate now served.
    pub fn reload(&self) -> Result<String, TlsError> {
        let (fresh, summary) = build(&self.settings)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        *self
            .summary
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = summary.clone();
        Ok(summary)
    }

    /// A description of the certificate served: subject, serial, end of validity.
    #[must_use]
    pub fn certificate_summary(&self) -> String {
        self.summary
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs the server side of the handshake (without a deadline: the caller sets one) and
    /// takes the user name from the client certificate if the listener asks for it.
    pub(crate) async fn accept<S>(&self, io: S) -> Result<Accepted<S>, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
        let stream = acceptor.accept(io).await.map_err(|e| e.to_string())?;
        let certificate_username = match self.settings.identity {
            CertificateIdentity::None => None,
            identity => {
                let (_, conn) = stream.get_ref();
                let cert = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .ok_or("the client presented no certificate")?;
                Some(ByteString::from(certificate_username(cert, identity)?))
            }
        };
        Ok(Accepted {
            stream,
            certificate_username,
        })
    }
}

/// The user name a (verified) client certificate gives: its first Common Name, or its whole
/// subject in RFC 2253 form.
pub fn certificate_username(
    cert: &CertificateDer<'_>,
    identity: CertificateIdentity,
) -> Result<String, String> {
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| format!("the client certificate cannot be read: {e}"))?;
    let subject = parsed.subject();
    match identity {
        CertificateIdentity::CommonName => {
            let cn = subject
                .iter_common_name()
                .next()
                .ok_or("the client certificate has no Common Name (CN)")?;
            let text = attribute_text(cn.attr_value().tag().0, cn.attr_value().data)
                .ok_or("the client certificate's Common Name is not a text string")?;
            if text.is_empty() || text.contains('\0') {
                return Err("the client certificate's Common Name is empty or contains NUL".into());
            }
            Ok(text)
        }
        CertificateIdentity::Subject | CertificateIdentity::None => Ok(subject_rfc2253(subject)),
    }
}

/// The text of a directory string, converted to UTF-8; `None` for other types or ill-formed
/// contents.
fn attribute_text(tag: u32, data: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, NumericString, PrintableString, IA5String, VisibleString.
        12 | 18 | 19 | 22 | 26 => String::from_utf8(data.to_vec()).ok(),
        // TeletexString: read as Latin-1, as OpenSSL does.
        20 => Some(data.iter().map(|b| char::from(*b)).collect()),
        // BMPString: UCS-2 big-endian.
        30 => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UCS-4 big-endian.
        28 => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// OpenSSL's short names of the attribute types it knows, by OID.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.13", "description"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.41", "name"),
    ("2.5.4.42", "GN"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.65", "pseudonym"),
    ("2.5.4.97", "organizationIdentifier"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
];

/// A distinguished name as OpenSSL prints it with `XN_FLAG_RFC2253` (what Mosquitto's
/// `use_subject_as_username` uses): the last RDN first, `,` between RDNs and `+` within one,
/// short names for known attribute types, RFC 2253 escapes, bytes outside ASCII as `\XX`, and
/// unknown types or non-string values as `OID=#` and their DER in hex.
#[must_use]
pub fn subject_rfc2253(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            let short = SHORT_NAMES.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n);
            let value = atv.attr_value();
            let text = attribute_text(value.tag().0, value.data);
            match (short, text) {
                (Some(short), Some(text)) => {
                    out.push_str(short);
                    out.push('=');
                    escape_rfc2253(&text, &mut out);
                }
                (short, _) => {
                    out.push_str(short.unwrap_or(&oid));
                    out.push_str("=#");
                    der_hex(value.tag().0, value.data, &mut out);
                }
            }
        }
    }
    out
}

/// RFC 2253 escaping as OpenSSL does it: `,+"\<>;` with a backslash, a leading `#` or space
/// and a trailing space with a backslash, control characters and every byte of a non-ASCII
/// character as `\XX`.
fn escape_rfc2253(text: &str, out: &mut String) {
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        let needs_backslash = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if needs_backslash {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii_control() || !c.is_ascii() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

/// The DER encoding of a primitive value with a low tag number, in upper-case hex.
fn der_hex(tag: u32, data: &[u8], out: &mut String) {
    let mut der = Vec::with_capacity(data.len() + 6);
    der.push(u8::try_from(tag).unwrap_or(0x04) & 0x1F);
    let len = data.len();
    if len < 0x80 {
        der.push(u8::try_from(len).unwrap_or(0));
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        der.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
        der.extend(bytes);
    }
    der.extend_from_slice(data);
    for b in der {
        out.push_str(&format!("{b:02X}"));
    }
}

/// Logs what a TLS listener serves, at start-up and after a reload.
pub(crate) fn log_listener(addr: &dyn fmt::Display, acceptor: &TlsAcceptor) {
    let s = &acceptor.settings;
    let clients = match (
        s.cafile.is_some() || s.capath.is_some(),
        s.certificate_required(),
    ) {
        (false, _) => "no client certificates",
        (true, false) => "client certificates verified when presented",
        (true, true) => "client certificate required",
    };
    tracing::info!(
        "TLS on {addr}: TLS {} and up, {clients}; certificate {}",
        match s.min_version {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        },
        acceptor.certificate_summary()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names12(text: &str) -> Result<Vec<&'static str>, String> {
        let suites = tls12_suites();
        select_tls12(text).map(|selected| {
            selected
                .iter()
                .map(|s| {
                    suites
                        .iter()
                        .find(|x| x.suite == *s)
                        .map_or("?", |x| x.name)
                })
                .collect()
        })
    }

    #[test]
    fn openssl_cipher_strings() {
        assert_eq!(
            names12("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"),
            Ok(vec![
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES256-GCM-SHA384"
            ])
        );
        assert_eq!(names12("HIGH:!aNULL:!MD5").map(|v| v.len()), Ok(6));
        assert_eq!(
            names12("DEFAULT:!aNULL:!eNULL:!LOW:!EXPORT:!SSLv2:@STRENGTH").map(|v| v.len()),
            Ok(6)
        );
        assert_eq!(
            names12("ECDHE+AESGCM:!aECDSA"),
            Ok(vec![
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES128-GCM-SHA256"
            ])
        );
        assert_eq!(
            names12("aRSA+CHACHA20:aRSA:+CHACHA20"),
            Ok(vec![
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-RSA-CHACHA20-POLY1305"
            ])
        );
        // `!` is for good, `-` can be added back.
        assert_eq!(
            names12("!AES256:aECDSA"),
            Ok(vec![
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-CHACHA20-POLY1305"
            ])
        );
        assert_eq!(names12("aECDSA:-AES:AES128").map(|v| v.len()), Ok(3));
        assert_eq!(names12("RC4:3DES"), Ok(vec![]));
        assert_eq!(
            names12("HIGH:AES256-SHA"),
            Err(unknown_cipher("AES256-SHA", &tls12_suites()))
        );
        assert!(names12("ECDHE+BOGUS").is_err_and(|e| e.contains("`BOGUS`")));
    }

    #[test]
    fn tls13_cipher_lists() {
        assert_eq!(
            select_tls13("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"),
            Ok(vec![
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                cipher_suite::TLS13_AES_128_GCM_SHA256
            ])
        );
        assert!(
            select_tls13("TLS_AES_128_CCM_SHA256")
                .is_err_and(|e| e.contains("`TLS_AES_128_CCM_SHA256`"))
        );
    }

    #[test]
    fn rfc2253_escapes() {
        let esc = |s: &str| {
            let mut out = String::new();
            escape_rfc2253(s, &mut out);
            out
        };
        assert_eq!(esc("plain name"), "plain name");
        assert_eq!(esc("a,b+c\"d\\e<f>g;h"), "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h");
        assert_eq!(esc("#lead"), "\\#lead");
        assert_eq!(esc("mid#"), "mid#");
        assert_eq!(esc(" both "), "\\ both\\ ");
        assert_eq!(esc("é\n"), "\\C3\\A9\\0A");
        assert_eq!(esc("a=b/c"), "a=b/c");
    }

    #[test]
    fn der_of_unknown_values() {
        let mut out = String::new();
        der_hex(4, &[0xAB, 0xCD], &mut out);
        assert_eq!(out, "0402ABCD");
        let mut out = String::new();
        der_hex(12, &[b'x'; 200], &mut out);
        assert!(out.starts_with("0C81C878"));
    }

    #[test]
    fn settings_that_need_a_ca() {
        let mut c = TlsConfig::new("c.pem", "k.pem");
        c.require_certificate = true;
        assert_eq!(
            c.check_settings().map_err(|e| e.key),
            Err(TlsKey::RequireCertificate)
        );
        let mut c = TlsConfig::new("c.pem", "k.pem");
        c.identity = CertificateIdentity::Subject;
        assert_eq!(
            c.check_settings().map_err(|e| e.key),
            Err(TlsKey::UseSubjectAsUsername)
        );
        c.capath = Some(PathBuf::from("/etc/ssl/certs"));
        assert_eq!(c.check_settings(), Ok(()));
        assert!(c.certificate_required());
    }
}
