//! TLS listeners against real peers: mosquitto_pub/mosquitto_sub with `--cafile`, `--cert` and
//! `--key`, `openssl s_client`, rustls clients, `tern pub`/`tern sub`. Certificates (CAs,
//! servers, clients, CRLs) are made at test time with rcgen, and with the openssl command for
//! the RSA and SEC1 key formats.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TIMEOUT, TempDir, TempFile, Tern, start_config_only};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedCipherSuite, SupportedProtocolVersion};
use tern::tls::{CertificateIdentity, certificate_username};
use tern_client::tern_codec::{ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions};
use tern_client::{Client, ConnectOptions, Event, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Certificates.

/// A test CA and the files it issues, in one temporary directory.
struct Pki {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    ca: PathBuf,
}

/// A certificate and its key, as files.
struct Issued {
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = TempDir::new();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(&[(DnType::CommonName, name)]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.path.join(format!("{name}.crt"));
        std::fs::write(&ca, cert.pem()).unwrap();
        Self {
            dir,
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path.join(name)
    }

    /// A certificate for `names` (DNS names or IP addresses) with this subject and serial.
    fn issue(
        &self,
        stem: &str,
        subject: DistinguishedName,
        names: &[&str],
        serial: u64,
        usage: ExtendedKeyUsagePurpose,
    ) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name = subject;
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert: self.path(&format!("{stem}.crt")),
            key: self.path(&format!("{stem}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }

    /// A server certificate for localhost and 127.0.0.1.
    fn server(&self, stem: &str, cn: &str, serial: u64) -> Issued {
        let subject = dn(&[(DnType::CommonName, cn)]);
        let names = ["localhost", "127.0.0.1"];
        self.issue(
            stem,
            subject,
            &names,
            serial,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with this Common Name.
    fn client(&self, stem: &str, cn: &str, serial: u64) -> Issued {
        let subject = dn(&[(DnType::CommonName, cn)]);
        self.issue(
            stem,
            subject,
            &[],
            serial,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// A CRL of this CA revoking `serials`.
    fn crl(&self, stem: &str, serials: &[u64]) -> PathBuf {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2021, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).unwrap();
        let path = self.path(&format!("{stem}.pem"));
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }
}

fn dn(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (ty, value) in parts {
        name.push(ty.clone(), DnValue::Utf8String((*value).to_owned()));
    }
    name
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// Brokers and peers.

/// A broker with one TLS listener on 127.0.0.1 (`tls` is the body of its `[listeners.tls]`
/// table) and `extra` at the top of the file.
fn tls_broker(tls: &str, extra: &str) -> Tern {
    let config = format!(
        "allow_anonymous = true\n{extra}\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [listeners.tls]\n{tls}\n"
    );
    start_config_only(&config, "toml")
}

/// The lines of a TOML `tls` table that serve `server` and let in only the clients with a
/// certificate that `ca` issued.
fn mtls_lines(server: &Issued, ca: &Path) -> String {
    format!(
        "{}cafile = \"{}\"\nrequire_certificate = true\n",
        cert_lines(server),
        p(ca)
    )
}

/// `certfile`/`keyfile` lines for a TOML `tls` table.
fn cert_lines(server: &Issued) -> String {
    format!(
        "certfile = \"{}\"\nkeyfile = \"{}\"\n",
        p(&server.cert),
        p(&server.key)
    )
}

/// Runs a command with a deadline; its output.
fn run(command: &mut Command, limit: Duration) -> Output {
    common::run_bounded(command, None, limit)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `mosquitto_pub` / `mosquitto_sub` with TLS flags to `addr`.
fn mosquitto(tool: &str, addr: SocketAddr, tls: &[impl AsRef<OsStr>], args: &[&str]) -> Output {
    let port = addr.port().to_string();
    run(
        Command::new(tool)
            .args(["-h", "localhost", "-p", &port])
            .args(tls)
            .args(args),
        Duration::from_secs(15),
    )
}

/// `mosquitto_pub` retains `message` on `topic` (QoS 1), then `mosquitto_sub` with `sub_args`
/// (a subscription that stops after one message) reads it back, both with the flags `tls`; both
/// must succeed. Returns what `mosquitto_sub` printed.
fn pub_then_sub(
    addr: SocketAddr,
    tls: &[impl AsRef<OsStr>],
    (topic, message): (&str, &str),
    sub_args: &[&str],
) -> String {
    let publish = ["-t", topic, "-m", message, "-r", "-q", "1"];
    let out = mosquitto("mosquitto_pub", addr, tls, &publish);
    assert!(out.status.success(), "mosquitto_pub: {}", text(&out.stderr));
    let out = mosquitto("mosquitto_sub", addr, tls, sub_args);
    assert!(out.status.success(), "mosquitto_sub: {}", text(&out.stderr));
    text(&out.stdout)
}

/// The `mosquitto_pub`/`mosquitto_sub` flags of a client that trusts `ca` and shows the
/// certificate `client`.
fn cert_flags(ca: &Path, client: &Issued) -> [String; 6] {
    [
        "--cafile".to_owned(),
        p(ca),
        "--cert".to_owned(),
        p(&client.cert),
        "--key".to_owned(),
        p(&client.key),
    ]
}

/// A rustls client configuration trusting `ca`, with a client certificate if given.
fn client_config(
    ca: &Path,
    client: Option<&Issued>,
    versions: &[&'static SupportedProtocolVersion],
    suites: Option<Vec<SupportedCipherSuite>>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites = suites;
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(c) => {
            let certs = CertificateDer::pem_file_iter(&c.cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(&c.key).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A TLS handshake with the broker; the TLS stream, or the error.
async fn handshake(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .expect("handshake within the timeout")
}

/// The Common Name of the certificate the broker serves.
async fn served_cn(addr: SocketAddr, ca: &Path) -> String {
    let config = client_config(ca, None, rustls::ALL_VERSIONS, None);
    let stream = handshake(addr, config).await.expect("handshake");
    let cert = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    certificate_username(&cert, CertificateIdentity::CommonName).unwrap()
}

/// Connects an MQTT 3.1.1 client over TLS.
async fn mqtt_tls(
    addr: SocketAddr,
    id: &str,
    files: TlsFiles,
) -> Result<Client, tern_client::ClientError> {
    let mut options = ConnectOptions::new("localhost", addr.port(), id, ProtocolVersion::V311);
    options.connect_timeout = TIMEOUT;
    options.tls = Some(files.load()?);
    Client::connect(&options).await
}

fn ca_files(ca: &Path, client: Option<&Issued>) -> TlsFiles {
    TlsFiles {
        cafile: Some(ca.to_owned()),
        certfile: client.map(|c| c.cert.clone()),
        keyfile: client.map(|c| c.key.clone()),
        ..TlsFiles::default()
    }
}

/// The next application message, within the timeout.
async fn next_message(client: &mut Client) -> Publish {
    loop {
        match tokio::time::timeout(TIMEOUT, client.next_event()).await {
            Ok(Ok(Event::Message(p))) => return p,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("client error: {e}"),
            Err(_) => panic!("no message within {TIMEOUT:?}"),
        }
    }
}

fn qos1() -> SubscriptionOptions {
    SubscriptionOptions::with_qos(QoS::AtLeastOnce)
}

/// `tern serve --config` on a file that must be refused (a failed exit, no listener): its
/// stderr and the file.
fn serve_refused(contents: &str, extension: &str) -> (String, TempFile) {
    common::serve_config_fails(contents, extension, &["--in-memory"])
}

/// Polls `f` until it returns true, within the timeout.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn mosquitto_clients_publish_and_receive_over_tls() {
    let pki = Pki::new("ca-basic");
    let server = pki.server("server", "broker", 10);
    let tern = tls_broker(&cert_lines(&server), "");
    let got = pub_then_sub(
        tern.addr,
        &["--cafile", &p(&pki.ca)],
        ("tls/retained", "over tls"),
        &["-t", "tls/#", "-C", "1", "-W", "10", "-v"],
    );
    assert_eq!(got, "tls/retained over tls\n");
}

#[tokio::test]
async fn mutual_tls_with_mosquitto_clients() {
    let pki = Pki::new("ca-mtls");
    let server = pki.server("server", "broker", 10);
    let client = pki.client("client", "device-1", 20);
    let tls = mtls_lines(&server, &pki.ca);
    let tern = tls_broker(&tls, "");
    let flags = cert_flags(&pki.ca, &client);
    let got = pub_then_sub(
        tern.addr,
        &flags,
        ("m/1", "mutual"),
        &["-t", "m/#", "-C", "1", "-W", "10"],
    );
    assert_eq!(got, "mutual\n");

    // Without a client certificate the handshake fails: mosquitto_pub and a rustls client.
    let out = mosquitto(
        "mosquitto_pub",
        tern.addr,
        &["--cafile", &p(&pki.ca)],
        &["-t", "m/2", "-m", "x"],
    );
    assert!(!out.status.success(), "published without a certificate");
    let refused = mqtt_tls(tern.addr, "no-cert", ca_files(&pki.ca, None)).await;
    assert!(refused.is_err(), "connected without a client certificate");
    let config = client_config(&pki.ca, None, rustls::ALL_VERSIONS, None);
    let mut stream = handshake(tern.addr, config).await.ok();
    if let Some(s) = &mut stream {
        // TLS 1.3: the client finishes first and learns of the refusal on its first read.
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(TIMEOUT, s.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(read, Err(_) | Ok(0)),
            "the broker kept a connection without a client certificate"
        );
    }
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let pki = Pki::new("ca-trusted");
    let other = Pki::new("ca-other");
    let server = pki.server("server", "broker", 10);
    let stranger = other.client("stranger", "stranger", 30);
    let good = pki.client("good", "good", 31);
    let tls = mtls_lines(&server, &pki.ca);
    let tern = tls_broker(&tls, "");
    let refused = mqtt_tls(tern.addr, "stranger", ca_files(&pki.ca, Some(&stranger))).await;
    assert!(
        refused.is_err(),
        "a certificate of an unknown CA was accepted"
    );
    let out = mosquitto(
        "mosquitto_pub",
        tern.addr,
        &cert_flags(&pki.ca, &stranger),
        &["-t", "x", "-m", "x"],
    );
    assert!(
        !out.status.success(),
        "mosquitto_pub with a foreign certificate"
    );
    let client = mqtt_tls(tern.addr, "good", ca_files(&pki.ca, Some(&good))).await;
    client.expect("a certificate of the configured CA is accepted");
}

#[tokio::test]
async fn plain_tcp_client_on_a_tls_port_is_refused() {
    let pki = Pki::new("ca-plain");
    let server = pki.server("server", "broker", 10);
    let tern = tls_broker(&cert_lines(&server), "");
    let mut tcp = TcpStream::connect(tern.addr).await.unwrap();
    let mut connect = bytes::BytesMut::new();
    common::connect(ProtocolVersion::V311, "plain", true)
        .encode(ProtocolVersion::V311, &mut connect)
        .unwrap();
    tcp.write_all(&connect).await.unwrap();
    // No CONNACK: the CONNECT is not a TLS record; the broker answers with at most a TLS
    // alert (content type 21) and closes.
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut answer))
        .await
        .expect("the broker closes the connection")
        .ok();
    assert!(
        answer.is_empty() || answer[0] == 21,
        "the broker answered a plain CONNECT with {answer:02x?}"
    );
    let plain = ConnectOptions::new(
        "127.0.0.1",
        tern.addr.port(),
        "plain-lib",
        ProtocolVersion::V5,
    );
    let result = Client::connect(&plain).await;
    assert!(
        result.is_err(),
        "a plain MQTT client got through a TLS port"
    );
}

#[tokio::test]
async fn tls12_and_tls13_both_work_and_tls13_minimum_refuses_tls12() {
    let pki = Pki::new("ca-versions");
    let server = pki.server("server", "broker", 10);
    let tern = tls_broker(&cert_lines(&server), "");
    for (version, name) in [
        (&rustls::version::TLS12, "TLSv1_2"),
        (&rustls::version::TLS13, "TLSv1_3"),
    ] {
        let config = client_config(&pki.ca, None, &[version], None);
        let stream = handshake(tern.addr, config).await.expect(name);
        let negotiated = stream.get_ref().1.protocol_version().unwrap();
        assert_eq!(format!("{negotiated:?}"), name);
    }
    // The same with openssl.
    let connect = tern.addr.to_string();
    for flag in ["-tls1_2", "-tls1_3"] {
        let out = run(
            Command::new("openssl").args([
                "s_client",
                "-connect",
                &connect,
                flag,
                "-CAfile",
                &p(&pki.ca),
                "-verify_return_error",
            ]),
            Duration::from_secs(15),
        );
        assert!(
            out.status.success(),
            "openssl {flag}: {}",
            text(&out.stderr)
        );
        let expected = if flag == "-tls1_2" {
            "TLSv1.2"
        } else {
            "TLSv1.3"
        };
        assert!(text(&out.stdout).contains(&format!("New, {expected}")));
    }
    drop(tern);

    let tls = format!("{}tls_version = \"tlsv1.3\"\n", cert_lines(&server));
    let tern = tls_broker(&tls, "");
    let connect = tern.addr.to_string();
    let out = run(
        Command::new("openssl").args([
            "s_client",
            "-connect",
            &connect,
            "-tls1_2",
            "-CAfile",
            &p(&pki.ca),
        ]),
        Duration::from_secs(15),
    );
    assert!(
        !out.status.success(),
        "a TLS 1.2 client got in: {}",
        text(&out.stdout)
    );
    let config = client_config(&pki.ca, None, &[&rustls::version::TLS12], None);
    assert!(handshake(tern.addr, config).await.is_err());
    let config = client_config(&pki.ca, None, &[&rustls::version::TLS13], None);
    handshake(tern.addr, config)
        .await
        .expect("TLS 1.3 still works");
}

#[tokio::test]
async fn ciphers_restrict_the_suites_offered() {
    use rustls::crypto::ring::cipher_suite as cs;
    let pki = Pki::new("ca-ciphers");
    // rcgen keys are ECDSA P-256: only the ECDSA suites apply.
    let server = pki.server("server", "broker", 10);
    let tls = format!(
        "{}ciphers = \"ECDHE-ECDSA-CHACHA20-POLY1305\"\nciphers_tls13 = \"TLS_AES_128_GCM_SHA256\"\n",
        cert_lines(&server)
    );
    let tern = tls_broker(&tls, "");
    let tls12 = [&rustls::version::TLS12];
    let config = client_config(&pki.ca, None, &tls12, None);
    let stream = handshake(tern.addr, config).await.expect("TLS 1.2");
    assert_eq!(
        stream.get_ref().1.negotiated_cipher_suite(),
        Some(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
    );
    let only_aes = vec![cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384];
    let config = client_config(&pki.ca, None, &tls12, Some(only_aes));
    assert!(handshake(tern.addr, config).await.is_err());
    let tls13 = [&rustls::version::TLS13];
    let config = client_config(&pki.ca, None, &tls13, None);
    let stream = handshake(tern.addr, config).await.expect("TLS 1.3");
    assert_eq!(
        stream.get_ref().1.negotiated_cipher_suite(),
        Some(cs::TLS13_AES_128_GCM_SHA256)
    );
    let config = client_config(
        &pki.ca,
        None,
        &tls13,
        Some(vec![cs::TLS13_AES_256_GCM_SHA384]),
    );
    assert!(handshake(tern.addr, config).await.is_err());
}

#[tokio::test]
async fn use_identity_as_username_makes_the_cn_the_user_name_for_acls() {
    let pki = Pki::new("ca-identity");
    let server = pki.server("server", "broker", 10);
    let alice = pki.client("alice", "alice", 40);
    let bob = pki.client("bob", "bob", 41);
    let acl = TempFile::new("acl", "user alice\ntopic readwrite secret/#\n");
    let tls = format!(
        "{}cafile = \"{}\"\nuse_identity_as_username = true\n",
        cert_lines(&server),
        p(&pki.ca)
    );
    let tern = tls_broker(&tls, &format!("acl_file = \"{}\"", p(&acl.path)));
    // Alice publishes a retained message (no user name in CONNECT: her certificate is it).
    let got = pub_then_sub(
        tern.addr,
        &cert_flags(&pki.ca, &alice),
        ("secret/plans", "for alice"),
        &["-t", "secret/#", "-C", "1", "-W", "10"],
    );
    assert_eq!(got, "for alice\n");

    // Bob claims to be alice in CONNECT: his certificate says bob, and bob may not read.
    let mut files = ca_files(&pki.ca, Some(&bob));
    files.insecure = false;
    let mut options =
        ConnectOptions::new("localhost", tern.addr.port(), "bob", ProtocolVersion::V311);
    options.username = Some("alice".to_owned());
    options.tls = Some(files.load().unwrap());
    let mut client = Client::connect(&options).await.expect("bob connects");
    let codes = client
        .subscribe(&[("secret/#", qos1())], None)
        .await
        .unwrap();
    assert_eq!(
        codes,
        vec![ReasonCode(0x80)],
        "bob subscribed to alice's topic"
    );
    let out = mosquitto(
        "mosquitto_sub",
        tern.addr,
        &cert_flags(&pki.ca, &bob),
        &["-u", "alice", "-t", "secret/#", "-C", "1", "-W", "2"],
    );
    assert_eq!(text(&out.stdout), "", "bob read alice's message");

    // Without a certificate there is no identity: the handshake fails.
    let refused = mqtt_tls(tern.addr, "anon", ca_files(&pki.ca, None)).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn use_subject_as_username_is_the_rfc2253_subject_as_openssl_prints_it() {
    let pki = Pki::new("ca-subject");
    let server = pki.server("server", "broker", 10);
    let subject = dn(&[
        (DnType::CountryName, "FR"),
        (DnType::OrganizationName, "Acme, Inc."),
        (DnType::OrganizationalUnitName, "R+D \"lab\""),
        (DnType::CommonName, "#dev é 1 "),
    ]);
    let device = pki.issue(
        "device",
        subject,
        &[],
        50,
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let out = run(
        Command::new("openssl").args([
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
            "-in",
            &p(&device.cert),
        ]),
        Duration::from_secs(10),
    );
    let printed = text(&out.stdout);
    let openssl = printed.trim_end().strip_prefix("subject=").unwrap();
    let der = CertificateDer::from_pem_file(&device.cert).unwrap();
    let ours = certificate_username(&der, CertificateIdentity::Subject).unwrap();
    assert_eq!(ours, openssl);
    assert_eq!(
        ours,
        "CN=\\#dev \\C3\\A9 1\\ ,OU=R\\+D \\\"lab\\\",O=Acme\\, Inc.,C=FR"
    );

    // End to end: an ACL section for that user name lets the device read.
    let acl = TempFile::new("acl", &format!("user {ours}\ntopic read dev/#\n"));
    let tls = format!(
        "{}cafile = \"{}\"\nuse_subject_as_username = true\n",
        cert_lines(&server),
        p(&pki.ca)
    );
    let tern = tls_broker(&tls, &format!("acl_file = \"{}\"", p(&acl.path)));
    let mut client = mqtt_tls(tern.addr, "device", ca_files(&pki.ca, Some(&device)))
        .await
        .unwrap();
    let codes = client.subscribe(&[("dev/#", qos1())], None).await.unwrap();
    assert_eq!(codes, vec![ReasonCode(0x01)]);
    let codes = client
        .subscribe(&[("other/#", qos1())], None)
        .await
        .unwrap();
    assert_eq!(codes, vec![ReasonCode(0x80)]);
}

/// Opens TCP, sends `bytes` (maybe none), and measures how long the broker keeps it open.
async fn closed_after(addr: SocketAddr, bytes: &[u8]) -> Duration {
    let start = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection still open after 20 s"),
        }
    }
}

#[tokio::test]
async fn handshake_deadline_closes_silent_and_stalled_connections() {
    let pki = Pki::new("ca-deadline");
    let server = pki.server("server", "broker", 10);
    let tls = format!("{}handshake_timeout = \"1s\"\n", cert_lines(&server));
    let tern = tls_broker(&tls, "");
    // Silent: nothing after the TCP handshake.
    let silent = closed_after(tern.addr, &[]).await;
    // Stalled: the header of a 512-byte handshake record, then nothing.
    let stalled = closed_after(tern.addr, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
    for elapsed in [silent, stalled] {
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(8),
            "closed after {elapsed:?}, expected about 1 s"
        );
    }
    // A client that completes the handshake is not affected by the deadline.
    let mut client = mqtt_tls(tern.addr, "in-time", ca_files(&pki.ca, None))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.subscribe(&[("t", qos1())], None).await.unwrap();
    drop(tern);

    // Without `handshake_timeout`, the broker's connect_timeout applies.
    let tern = tls_broker(&cert_lines(&server), "[mqtt]\nconnect_timeout = 1");
    let silent = closed_after(tern.addr, &[]).await;
    assert!(
        silent >= Duration::from_millis(900) && silent < Duration::from_secs(8),
        "closed after {silent:?}, expected about 1 s"
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let pki = Pki::new("ca-reload");
    let first = pki.server("server", "server-one", 60);
    let tern = tls_broker(&cert_lines(&first), "");
    assert_eq!(served_cn(tern.addr, &pki.ca).await, "server-one");
    let mut before = mqtt_tls(tern.addr, "before", ca_files(&pki.ca, None))
        .await
        .unwrap();
    before
        .subscribe(&[("reload/#", qos1())], None)
        .await
        .unwrap();

    // New files in place of the old ones, then SIGHUP.
    let second = pki.server("next", "server-two", 61);
    std::fs::rename(&second.cert, &first.cert).unwrap();
    std::fs::rename(&second.key, &first.key).unwrap();
    tern.sighup(1);
    eventually("the new certificate", async || {
        served_cn(tern.addr, &pki.ca).await == "server-two"
    })
    .await;
    assert!(
        tern.logs()
            .contains("now serving certificate `CN=server-two`")
    );

    // The connection opened before the reload still works, both ways.
    let mut after = mqtt_tls(tern.addr, "after", ca_files(&pki.ca, None))
        .await
        .unwrap();
    let publish = common::publish("reload/x", b"still here", QoS::AtLeastOnce, false, None);
    assert_eq!(after.publish(publish).await.unwrap(), ReasonCode::SUCCESS);
    let got = next_message(&mut before).await;
    assert_eq!(&got.payload[..], b"still here");
    let publish = common::publish("reload/y", b"from before", QoS::AtLeastOnce, false, None);
    assert_eq!(before.publish(publish).await.unwrap(), ReasonCode::SUCCESS);
}

#[tokio::test]
async fn failed_reload_keeps_the_previous_certificate() {
    let pki = Pki::new("ca-badreload");
    let server = pki.server("server", "server-kept", 70);
    let tern = tls_broker(&cert_lines(&server), "");
    let other = pki.server("other", "other", 71);
    // A certificate whose key is not the one in keyfile, then garbage.
    std::fs::copy(&other.cert, &server.cert).unwrap();
    tern.sighup(1);
    let message = format!("`{}`: this private key does not belong", p(&server.key));
    eventually("the reload error", async || tern.logs().contains(&message)).await;
    assert_eq!(served_cn(tern.addr, &pki.ca).await, "server-kept");
    std::fs::write(&server.cert, "garbage\n").unwrap();
    tern.sighup(2);
    let message = format!("`{}`: no certificate found", p(&server.cert));
    eventually("the reload error", async || tern.logs().contains(&message)).await;
    assert!(
        tern.logs()
            .contains("reload failed, keeping the previous certificates")
    );
    assert_eq!(served_cn(tern.addr, &pki.ca).await, "server-kept");
    mqtt_tls(tern.addr, "still", ca_files(&pki.ca, None))
        .await
        .expect("clients still connect with the previous certificate");
}

#[tokio::test]
async fn crl_refuses_revoked_client_certificates() {
    let pki = Pki::new("ca-crl");
    let server = pki.server("server", "broker", 10);
    let revoked = pki.client("revoked", "revoked", 80);
    let valid = pki.client("valid", "valid", 81);
    let crl = pki.crl("crl", &[80]);
    let tls = format!(
        "{}cafile = \"{}\"\ncrlfile = \"{}\"\nrequire_certificate = true\n",
        cert_lines(&server),
        p(&pki.ca),
        p(&crl)
    );
    let tern = tls_broker(&tls, "");
    let refused = mqtt_tls(tern.addr, "revoked", ca_files(&pki.ca, Some(&revoked))).await;
    assert!(refused.is_err(), "a revoked certificate was accepted");
    let out = mosquitto(
        "mosquitto_pub",
        tern.addr,
        &cert_flags(&pki.ca, &revoked),
        &["-t", "x", "-m", "x"],
    );
    assert!(
        !out.status.success(),
        "mosquitto_pub with a revoked certificate"
    );
    mqtt_tls(tern.addr, "valid", ca_files(&pki.ca, Some(&valid)))
        .await
        .expect("a certificate not in the CRL is accepted");
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let pki = Pki::new("ca-expired");
    let server = pki.server("server", "broker", 10);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = dn(&[(DnType::CommonName, "old")]);
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2021, 1, 1);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &pki.issuer).unwrap();
    let expired = Issued {
        cert: pki.path("old.crt"),
        key: pki.path("old.key"),
    };
    std::fs::write(&expired.cert, cert.pem()).unwrap();
    std::fs::write(&expired.key, key.serialize_pem()).unwrap();
    let tls = mtls_lines(&server, &pki.ca);
    let tern = tls_broker(&tls, "");
    let refused = mqtt_tls(tern.addr, "old", ca_files(&pki.ca, Some(&expired))).await;
    assert!(refused.is_err(), "an expired certificate was accepted");
}

#[tokio::test]
async fn rsa_pkcs1_and_sec1_ec_private_keys_are_read() {
    let dir = TempDir::new();
    let cases = [
        ("rsa", vec!["-newkey", "rsa:2048"], "rsa", "RSA PRIVATE KEY"),
        (
            "ec",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "ec",
            "EC PRIVATE KEY",
        ),
        ("pkcs8", vec!["-newkey", "rsa:2048"], "", "PRIVATE KEY"),
    ];
    for (stem, newkey, convert, marker) in cases {
        let cert = dir.path.join(format!("{stem}.crt"));
        let pkcs8 = dir.path.join(format!("{stem}.p8"));
        let out = run(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-nodes",
                    "-days",
                    "30",
                    "-subj",
                    "/CN=localhost",
                ])
                .args(&newkey)
                .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .args(["-keyout", &p(&pkcs8), "-out", &p(&cert)]),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "openssl req: {}", text(&out.stderr));
        let key = if convert.is_empty() {
            pkcs8
        } else {
            let key = dir.path.join(format!("{stem}.key"));
            let pkcs8_path = p(&pkcs8);
            let key_path = p(&key);
            let mut args = vec![convert, "-in", &pkcs8_path, "-out", &key_path];
            if convert == "rsa" {
                args.push("-traditional");
            }
            let out = run(Command::new("openssl").args(&args), Duration::from_secs(30));
            assert!(
                out.status.success(),
                "openssl {convert}: {}",
                text(&out.stderr)
            );
            key
        };
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(
            pem.contains(&format!("-----BEGIN {marker}-----")),
            "{stem}: {pem}"
        );
        let server = Issued { cert, key };
        let tern = tls_broker(&cert_lines(&server), "");
        let mut client = mqtt_tls(tern.addr, stem, ca_files(&server.cert, None))
            .await
            .unwrap_or_else(|e| panic!("{stem} key: {e}"));
        client.subscribe(&[("k", qos1())], None).await.unwrap();
    }
}

#[tokio::test]
async fn mosquitto_conf_tls_listener() {
    let pki = Pki::new("ca-conf");
    let server = pki.server("server", "broker", 10);
    let client = pki.client("client", "conf-user", 90);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "allow_anonymous true\nlistener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\n\
         cafile {}\nrequire_certificate true\nuse_identity_as_username true\n\
         tls_version tlsv1.2\nciphers HIGH:!aNULL:!MD5\nciphers_tls1.3 TLS_AES_256_GCM_SHA384\n\
         tls_handshake_timeout 5\n",
        p(&server.cert),
        p(&server.key),
        p(&pki.ca)
    );
    let tern = start_config_only(&conf, "conf");
    assert_eq!(tern.addr.port(), port);
    let got = pub_then_sub(
        tern.addr,
        &cert_flags(&pki.ca, &client),
        ("conf/t", "from conf"),
        &["-t", "conf/t", "-C", "1", "-W", "10"],
    );
    assert_eq!(got, "from conf\n");
    let logs = tern.logs();
    assert!(logs.contains("client certificate required"), "{logs}");
}

#[tokio::test]
async fn bad_tls_files_stop_the_start_naming_the_file_and_the_setting() {
    let pki = Pki::new("ca-bad");
    let server = pki.server("server", "broker", 10);
    let other = pki.server("other", "other", 11);
    let garbage = TempFile::new("pem", "this is not a certificate\n");
    let empty = TempFile::new("pem", "");
    let broken = TempFile::new(
        "pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let missing = pki.path("missing.pem");
    let toml = |tls: &str| {
        format!(
            "allow_anonymous = true\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
             [listeners.tls]\n{tls}"
        )
    };
    let cert = p(&server.cert);
    let key = p(&server.key);
    let cases: Vec<(String, &str, String)> = vec![
        (
            format!("certfile = \"{}\"\nkeyfile = \"{key}\"\n", p(&garbage.path)),
            ":7: `listeners[0].tls.certfile`",
            format!("`{}`: no certificate found", p(&garbage.path)),
        ),
        (
            format!("certfile = \"{}\"\nkeyfile = \"{key}\"\n", p(&empty.path)),
            ":7: `listeners[0].tls.certfile`",
            format!("`{}`: the file is empty", p(&empty.path)),
        ),
        (
            format!("certfile = \"{}\"\nkeyfile = \"{key}\"\n", p(&broken.path)),
            ":7: `listeners[0].tls.certfile`",
            format!(
                "`{}`: certificate 1 is not a valid X.509 certificate",
                p(&broken.path)
            ),
        ),
        (
            format!("certfile = \"{cert}\"\nkeyfile = \"{}\"\n", p(&missing)),
            ":8: `listeners[0].tls.keyfile`",
            format!("`{}`: cannot read the file", p(&missing)),
        ),
        (
            format!("certfile = \"{cert}\"\nkeyfile = \"{}\"\n", p(&other.key)),
            ":8: `listeners[0].tls.keyfile`",
            format!(
                "`{}`: this private key does not belong to the certificate",
                p(&other.key)
            ),
        ),
        (
            format!(
                "certfile = \"{cert}\"\nkeyfile = \"{key}\"\ncafile = \"{}\"\n",
                p(&garbage.path)
            ),
            ":9: `listeners[0].tls.cafile`",
            format!("`{}`: no certificate found", p(&garbage.path)),
        ),
        (
            format!("certfile = \"{cert}\"\n"),
            ":6: `listeners[0].tls.keyfile`",
            "a TLS listener needs both `certfile` and `keyfile`".to_owned(),
        ),
        (
            format!("certfile = \"{cert}\"\nkeyfile = \"{key}\"\nciphers = \"HIGH:RC4-MD5\"\n"),
            ":9: `listeners[0].tls.ciphers`",
            "unknown or unsupported cipher `RC4-MD5`".to_owned(),
        ),
        (
            format!("certfile = \"{cert}\"\nkeyfile = \"{key}\"\nrequire_certificate = true\n"),
            ":9: `listeners[0].tls.require_certificate`",
            "needs `cafile` or `capath`".to_owned(),
        ),
    ];
    for (tls, location, message) in cases {
        let (stderr, file) = serve_refused(&toml(&tls), "toml");
        let expected = format!("{}{location}: ", p(&file.path));
        assert!(
            stderr.contains(&expected),
            "expected {expected}\nin: {stderr}"
        );
        assert!(
            stderr.contains(&message),
            "expected {message}\nin: {stderr}"
        );
    }

    let conf_cases = [
        (
            format!(
                "listener 18883 127.0.0.1\ncertfile {}\nkeyfile {key}\n",
                p(&garbage.path)
            ),
            ":2: `certfile`",
            format!("`{}`: no certificate found", p(&garbage.path)),
        ),
        (
            format!("listener 18883 127.0.0.1\ncertfile {cert}\n"),
            ":2: `certfile`",
            "`keyfile` is missing".to_owned(),
        ),
        (
            format!("listener 18883 127.0.0.1\ncafile {}\n", p(&pki.ca)),
            ":2: `cafile`",
            "needs `certfile` and `keyfile` on the same listener".to_owned(),
        ),
        (
            format!(
                "listener 18883 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n\
                 ciphers_tls1.3 TLS_AES_128_CCM_SHA256\n"
            ),
            ":4: `ciphers_tls1.3`",
            "unknown or unsupported TLS 1.3 cipher suite `TLS_AES_128_CCM_SHA256`".to_owned(),
        ),
        (
            format!(
                "listener 18883 127.0.0.1\ncertfile {cert}\nkeyfile {key}\ntls_version tlsv2\n"
            ),
            ":4: `tls_version`",
            "expected tlsv1.2 or tlsv1.3, got `tlsv2`".to_owned(),
        ),
    ];
    for (conf, location, message) in conf_cases {
        let (stderr, file) = serve_refused(&conf, "conf");
        let expected = format!("{}{location}: ", p(&file.path));
        assert!(
            stderr.contains(&expected),
            "expected {expected}\nin: {stderr}"
        );
        assert!(
            stderr.contains(&message),
            "expected {message}\nin: {stderr}"
        );
    }
}

#[tokio::test]
async fn tern_pub_and_sub_tls_flags() {
    let pki = Pki::new("ca-tools");
    let server = pki.server("server", "broker", 10);
    let client = pki.client("client", "tool", 95);
    let tls = mtls_lines(&server, &pki.ca);
    let tern = tls_broker(&tls, "");
    let port = tern.addr.port().to_string();
    let tool = |args: &[&str]| {
        run(
            Command::new(env!("CARGO_BIN_EXE_tern")).args(args).args([
                "-h",
                "localhost",
                "-p",
                &port,
            ]),
            Duration::from_secs(15),
        )
    };
    let ca = p(&pki.ca);
    let mtls = cert_flags(&pki.ca, &client);
    let mut publish = vec![
        "pub",
        "-t",
        "tools/t",
        "-m",
        "via tern pub",
        "-r",
        "-q",
        "1",
    ];
    publish.extend(mtls.iter().map(String::as_str));
    let out = tool(&publish);
    assert!(out.status.success(), "tern pub: {}", text(&out.stderr));
    let mut subscribe = vec![
        "sub",
        "-t",
        "tools/#",
        "-C",
        "1",
        "-W",
        "10",
        "--tls-version",
        "tlsv1.3",
    ];
    subscribe.extend(mtls.iter().map(String::as_str));
    let out = tool(&subscribe);
    assert!(out.status.success(), "tern sub: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "via tern pub\n");
    // mosquitto_sub reads what tern pub wrote, and the other way round.
    let out = mosquitto(
        "mosquitto_sub",
        tern.addr,
        &mtls,
        &["-t", "tools/t", "-C", "1", "-W", "10"],
    );
    assert_eq!(text(&out.stdout), "via tern pub\n");

    // Without the client certificate: refused, exit status 1.
    let out = tool(&["pub", "-t", "x", "-m", "x", "--cafile", &ca]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // TLS flags without a CA: a usage error.
    let out = tool(&["pub", "-t", "x", "-m", "x", "--insecure"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--insecure needs TLS"),
        "{}",
        text(&out.stderr)
    );
    // A CA file that does not exist.
    let out = tool(&[
        "pub",
        "-t",
        "x",
        "-m",
        "x",
        "--cafile",
        "/nonexistent/ca.pem",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/ca.pem"));
}

#[tokio::test]
async fn insecure_skips_the_host_name_check_only() {
    let pki = Pki::new("ca-insecure");
    let other = Pki::new("ca-unknown");
    // A certificate valid for another name only.
    let server = pki.issue(
        "server",
        dn(&[(DnType::CommonName, "elsewhere")]),
        &["broker.example"],
        10,
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let tern = tls_broker(&cert_lines(&server), "");
    let port = tern.addr.port().to_string();
    let tool = |extra: &[&str]| {
        run(
            Command::new(env!("CARGO_BIN_EXE_tern"))
                .args(["pub", "-h", "127.0.0.1", "-p", &port, "-t", "i", "-m", "i"])
                .args(extra),
            Duration::from_secs(15),
        )
    };
    let ca = p(&pki.ca);
    let out = tool(&["--cafile", &ca]);
    assert_eq!(out.status.code(), Some(1), "the name was not checked");
    let out = tool(&["--cafile", &ca, "--insecure"]);
    assert!(out.status.success(), "--insecure: {}", text(&out.stderr));
    // The chain is still verified: a certificate from another CA fails even so.
    let out = tool(&["--cafile", &p(&other.ca), "--insecure"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "--insecure accepted an unknown CA"
    );
    // mosquitto_pub gives --insecure the same meaning.
    for (flags, ok) in [
        (vec!["--cafile", ca.as_str()], false),
        (vec!["--cafile", ca.as_str(), "--insecure"], true),
    ] {
        let out = run(
            Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-t", "i", "-m", "i"])
                .args(&flags),
            Duration::from_secs(15),
        );
        assert_eq!(out.status.success(), ok, "mosquitto_pub {flags:?}");
    }
}

#[tokio::test]
async fn capath_directory_of_ca_certificates() {
    let pki = Pki::new("ca-dir");
    let server = pki.server("server", "broker", 10);
    let client = pki.client("client", "dir-user", 96);
    let capath = TempDir::new();
    std::fs::copy(&pki.ca, capath.path.join("ca.pem")).unwrap();
    std::fs::write(capath.path.join("README"), "notes, not a certificate\n").unwrap();
    let tls = format!(
        "{}capath = \"{}\"\nrequire_certificate = true\n",
        cert_lines(&server),
        p(&capath.path)
    );
    let tern = tls_broker(&tls, "");
    let mut client = mqtt_tls(tern.addr, "dir", ca_files(&pki.ca, Some(&client)))
        .await
        .unwrap();
    client.subscribe(&[("d", qos1())], None).await.unwrap();
    let refused = mqtt_tls(tern.addr, "none", ca_files(&pki.ca, None)).await;
    assert!(refused.is_err());
}
