//! TLS for client connections: rustls with the ring provider.
//!
//! [`TlsFiles`] builds a configuration from PEM files as `mosquitto_pub`'s flags do (`--cafile`,
//! `--capath`, `--cert`, `--key`, `--insecure`, `--tls-version`); callers that need more build
//! their own [`rustls::ClientConfig`] and wrap it in [`TlsOptions::new`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    SupportedProtocolVersion,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::ClientError;

/// TLS for a connection: the rustls configuration, and the name the server's certificate must
/// be valid for (by default the host connected to).
#[derive(Clone)]
pub struct TlsOptions {
    /// The client configuration (trusted CAs, client certificate, versions).
    pub config: Arc<ClientConfig>,
    /// The name sent as SNI and checked against the certificate; `None` = the host of
    /// [`crate::ConnectOptions`].
    pub server_name: Option<String>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsOptions {
    /// TLS with a configuration of the caller's making.
    #[must_use]
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self {
            config,
            server_name: None,
        }
    }
}

/// The lowest TLS version a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinTlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// TLS from PEM files, with `mosquitto_pub`'s meanings.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA certificates the server's certificate is verified against.
    pub cafile: Option<PathBuf>,
    /// A directory of CA certificate files (every file holding PEM certificates).
    pub capath: Option<PathBuf>,
    /// The client's certificate chain, for brokers that ask for one.
    pub certfile: Option<PathBuf>,
    /// The client's private key (PKCS#8, RSA or SEC1 EC).
    pub keyfile: Option<PathBuf>,
    /// Do not check that the server's certificate is valid for the host name (its chain is
    /// still verified against the CAs), as `mosquitto_pub --insecure`.
    pub insecure: bool,
    /// The lowest version offered.
    pub min_version: MinTlsVersion,
}

impl TlsFiles {
    /// Reads the files and builds the TLS options. Errors name the file.
    pub fn load(&self) -> Result<TlsOptions, ClientError> {
        let mut roots = RootCertStore::empty();
        if let Some(cafile) = &self.cafile {
            for cert in read_certs(cafile)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_error(cafile, &format!("unusable CA certificate: {e}")))?;
            }
        }
        if let Some(capath) = &self.capath {
            let entries = std::fs::read_dir(capath).map_err(|e| tls_error(capath, &e))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for file in files {
                let bytes = std::fs::read(&file).map_err(|e| tls_error(&file, &e))?;
                for cert in CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok) {
                    // Files of other kinds in the directory are skipped, as OpenSSL does.
                    let _ = roots.add(cert);
                }
            }
        }
        if self.cafile.is_none() && self.capath.is_none() {
            return Err(tls_setup(
                "TLS needs CA certificates (a CA file or directory) to verify the broker"
                    .to_owned(),
            ));
        }
        if roots.is_empty() {
            let path = self
                .cafile
                .as_deref()
                .or(self.capath.as_deref())
                .unwrap_or(Path::new(""));
            return Err(tls_error(path, "no CA certificate found"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&SupportedProtocolVersion] = match self.min_version {
            MinTlsVersion::Tls12 => rustls::ALL_VERSIONS,
            MinTlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| tls_setup(e.to_string()))?;
        let roots = Arc::new(roots);
        let builder = if self.insecure {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| tls_setup(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerName(inner)))
        } else {
            builder.with_root_certificates(roots)
        };
        let config = match (&self.certfile, &self.keyfile) {
            (Some(certfile), Some(keyfile)) => {
                let certs = read_certs(certfile)?;
                let bytes = std::fs::read(keyfile).map_err(|e| tls_error(keyfile, &e))?;
                let key = PrivateKeyDer::from_pem_slice(&bytes)
                    .map_err(|_| tls_error(keyfile, "no unencrypted PEM private key found"))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    tls_error(
                        keyfile,
                        &format!("unusable with `{}`: {e}", certfile.display()),
                    )
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(tls_setup(
                    "a client certificate needs both a certificate file and a key file".to_owned(),
                ));
            }
        };
        Ok(TlsOptions::new(Arc::new(config)))
    }
}

/// A TLS set-up error (a file, a name), reported as an I/O error of kind `InvalidInput`.
fn tls_setup(message: String) -> ClientError {
    ClientError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        message,
    ))
}

fn tls_error(path: &Path, e: &(impl fmt::Display + ?Sized)) -> ClientError {
    tls_setup(format!("{}: {e}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let bytes = std::fs::read(path).map_err(|e| tls_error(path, &e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, &e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Verifies the server's certificate chain but accepts it for any name (`--insecure`).
#[derive(Debug)]
struct AnyServerName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked last, once the chain is verified: a name error means the
        // certificate is otherwise valid.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The connection's byte stream: plain TCP, or TLS over TCP.
pub(crate) enum Stream {
    Tcp(TcpStream),
    /// Plain TCP with the kernel's receive times ([`crate::ConnectOptions::receive_timestamps`]).
    #[cfg(target_os = "linux")]
    Stamped(Box<crate::stamped::StampedTcp>),
    Tls(Box<TlsStream<TcpStream>>),
    /// A stream of the caller's making ([`crate::Client::connect_stream`]).
    Other(Box<dyn AnyStream>),
}

/// Any byte stream a client can run over.
pub(crate) trait AnyStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> AnyStream for T {}

impl Stream {
    /// Runs the TLS handshake over `tcp`.
    pub(crate) async fn tls(
        tcp: TcpStream,
        tls: &TlsOptions,
        host: &str,
    ) -> Result<Self, ClientError> {
        let name = tls.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| tls_setup(format!("`{name}` is not a valid server name")))?;
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let stream = connector.connect(name, tcp).await?;
        Ok(Self::Tls(Box::new(stream)))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(target_os = "linux")]
            Self::Stamped(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Other(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(target_os = "linux")]
            Self::Stamped(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Other(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(target_os = "linux")]
            Self::Stamped(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Other(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(target_os = "linux")]
            Self::Stamped(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Other(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
