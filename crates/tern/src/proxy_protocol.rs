//! The PROXY protocol, versions 1 and 2 (HAProxy's `proxy-protocol.txt`): a load balancer or
//! proxy in front of Tern starts each connection with a header that carries the client's
//! address, so that logs, limits per address and authentication see the client rather than the
//! proxy.
//!
//! A listener with the PROXY protocol on reads the header before anything else (before the TLS
//! handshake of a TLS listener, before the HTTP upgrade of a WebSocket listener), and closes a
//! connection whose header is missing, malformed or of a version it does not accept, without
//! any MQTT answer. The header is read exactly: never a byte past its end, which belongs to the
//! next layer (a TLS ClientHello, an HTTP request, an MQTT CONNECT). Its size is bounded: 107
//! bytes for version 1 (the protocol's own limit), 16 bytes plus at most
//! [`V2_MAX_BLOCK`] bytes of addresses and TLVs for version 2.
//!
//! What a header gives is one address: the client's (the source of `TCP4`/`TCP6` in version 1,
//! of `TCP over IPv4`/`IPv6` in version 2). A header that carries no usable address (version 1
//! `UNKNOWN`; version 2 `LOCAL`, as proxies send for their own health checks, or the `UNSPEC`
//! and `UNIX` families) is accepted and leaves the connection's own peer address in place.
//! Version 2 TLVs are checked for shape and skipped, except the SSL TLV, whose "client used
//! TLS" flag is what `require_tls` checks. Datagram families are refused: MQTT needs a stream.
//!
//! The parser is Tern's own, not a crate: reading exactly one header from a stream is most of
//! the work (a parser of whole buffers would still need it), and the format fits in a page.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest version 1 header, `\r\n` included (the protocol's limit).
pub const V1_MAX_LEN: usize = 107;
/// The most bytes of addresses and TLVs a version 2 header may carry after its 16-byte fixed
/// part. The protocol allows 65 535; the addresses take at most 216 (`UNIX`), and this leaves
/// room for the TLVs proxies send (authority, unique id, SSL details, cloud endpoint ids).
pub const V2_MAX_BLOCK: usize = 1024;

/// The shortest version 1 header, `PROXY UNKNOWN\r\n`; a version 2 header is longer (16).
const V1_MIN_LEN: usize = 15;
/// What every version 1 header starts with.
const V1_PREFIX: &[u8] = b"PROXY ";
/// What every version 2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a version 2 header: signature, version and command, family, length.
const V2_FIXED_LEN: usize = 16;

/// Version 2 commands (low nibble of byte 13).
const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;
/// Version 2 address families and transports (byte 14).
const FAM_UNSPEC: u8 = 0x00;
const FAM_TCP4: u8 = 0x11;
const FAM_UDP4: u8 = 0x12;
const FAM_TCP6: u8 = 0x21;
const FAM_UDP6: u8 = 0x22;
const FAM_UNIX_STREAM: u8 = 0x31;
const FAM_UNIX_DGRAM: u8 = 0x32;
/// The address block lengths of the families that carry one.
const ADDR_LEN_TCP4: usize = 12;
const ADDR_LEN_TCP6: usize = 36;
const ADDR_LEN_UNIX: usize = 216;
/// The SSL TLV, and its "the client connected over TLS" flag.
const TLV_SSL: u8 = 0x20;
const SSL_CLIENT_SSL: u8 = 0x01;

/// The header versions a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersions {
    /// Version 1 (text) only: Mosquitto's `enable_proxy_protocol 1`.
    V1,
    /// Version 2 (binary) only: Mosquitto's `enable_proxy_protocol 2`.
    V2,
    /// Either; the first byte tells them apart. TOML's `proxy_protocol = true`.
    Both,
}

impl ProxyVersions {
    fn accepts(self, version: u8) -> bool {
        matches!(
            (self, version),
            (Self::V1 | Self::Both, 1) | (Self::V2 | Self::Both, 2)
        )
    }
}

impl fmt::Display for ProxyVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::Both => "v1 and v2",
        })
    }
}

/// A listener's PROXY protocol settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// The versions accepted.
    pub versions: ProxyVersions,
    /// Refuse a connection unless its (version 2) header says the client connected to the
    /// proxy over TLS (Mosquitto's `proxy_protocol_v2_require_tls`). A version 1 header cannot
    /// say so, and is refused then.
    pub require_tls: bool,
}

/// What a valid header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// The client's address; `None` when the header carries none (version 1 `UNKNOWN`, version
    /// 2 `LOCAL`, `UNSPEC` or `UNIX`): the connection's own peer address stands.
    pub source: Option<SocketAddr>,
    /// Whether a version 2 SSL TLV says the client connected to the proxy over TLS.
    pub tls: bool,
}

/// Why a connection's header was not accepted.
#[derive(Debug)]
pub enum HeaderError {
    /// The connection ended before the header was complete.
    Closed,
    /// Reading failed.
    Io(io::Error),
    /// The bytes are not a valid header.
    Invalid(String),
    /// A header of a version the listener does not accept.
    Version(u8),
    /// `require_tls`, and the header does not say the client used TLS.
    NotTls,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the connection closed before a complete PROXY header"),
            Self::Io(e) => write!(f, "reading the PROXY header failed: {e}"),
            Self::Invalid(why) => write!(f, "invalid PROXY header: {why}"),
            Self::Version(v) => write!(f, "PROXY protocol v{v} is not accepted on this listener"),
            Self::NotTls => f.write_str(
                "the PROXY header does not say the client used TLS, which this listener requires",
            ),
        }
    }
}

impl std::error::Error for HeaderError {}

fn invalid(why: impl Into<String>) -> HeaderError {
    HeaderError::Invalid(why.into())
}

/// Reads one PROXY header from `stream`, exactly: the bytes after it stay unread. The caller
/// bounds the time it may take.
pub async fn read_header<S>(
    stream: &mut S,
    config: ProxyProtocol,
) -> Result<ProxyHeader, HeaderError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = [0u8; V1_MAX_LEN];
    let mut n = read_some(stream, &mut buf[..1]).await?;
    let version = match buf[0] {
        b'P' => 1,
        b'\r' => 2,
        _ => return Err(invalid("no PROXY header")),
    };
    if !config.versions.accepts(version) {
        return Err(HeaderError::Version(version));
    }
    // Both versions are at least this long: these bytes are the header's.
    while n < V1_MIN_LEN {
        n += read_some(stream, &mut buf[n..V1_MIN_LEN]).await?;
        check_start(&buf[..n], version)?;
    }
    let header = if version == 1 {
        read_v1_rest(stream, &mut buf, n).await?
    } else {
        while n < V2_FIXED_LEN {
            n += read_some(stream, &mut buf[n..V2_FIXED_LEN]).await?;
        }
        let mut fixed = [0u8; V2_FIXED_LEN];
        fixed.copy_from_slice(&buf[..V2_FIXED_LEN]);
        let len = v2_block_len(&fixed)?;
        let mut block = vec![0u8; len];
        stream.read_exact(&mut block).await.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                HeaderError::Closed
            } else {
                HeaderError::Io(e)
            }
        })?;
        parse_v2(&fixed, &block)?
    };
    if config.require_tls && !header.tls {
        return Err(HeaderError::NotTls);
    }
    Ok(header)
}

/// One read into `buf` (not empty); the connection's end is an error.
async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
) -> Result<usize, HeaderError> {
    match stream.read(buf).await {
        Ok(0) => Err(HeaderError::Closed),
        Ok(n) => Ok(n),
        Err(e) => Err(HeaderError::Io(e)),
    }
}

/// Fails as soon as the first bytes cannot start a header of `version`, rather than waiting
/// for the rest of a header that will never be valid.
fn check_start(bytes: &[u8], version: u8) -> Result<(), HeaderError> {
    let expected: &[u8] = if version == 1 {
        V1_PREFIX
    } else {
        &V2_SIGNATURE
    };
    let common = bytes.len().min(expected.len());
    if bytes[..common] == expected[..common] {
        Ok(())
    } else {
        Err(invalid("no PROXY header"))
    }
}

/// Reads the rest of a version 1 header, `n` bytes of which are in `buf`, up to its `\r\n`.
/// Reads at most two bytes at a time (one after a `\r`): the line ends with `\r\n`, so this
/// never reads past it.
async fn read_v1_rest<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8; V1_MAX_LEN],
    mut n: usize,
) -> Result<ProxyHeader, HeaderError> {
    loop {
        if let Some(at) = buf[..n].iter().position(|&b| b == b'\r' || b == b'\n') {
            // The first CR or LF must be the end of the line.
            if buf[at] == b'\n' || (at + 1 < n && buf[at + 1] != b'\n') || at + 2 < n {
                return Err(invalid("a v1 header must end at its first CRLF"));
            }
            if at + 2 == n {
                break;
            }
        }
        if n == V1_MAX_LEN {
            return Err(invalid(format!(
                "a v1 header is at most {V1_MAX_LEN} bytes"
            )));
        }
        let want = if buf[n - 1] == b'\r' { 1 } else { 2 };
        let end = (n + want).min(V1_MAX_LEN);
        n += read_some(stream, &mut buf[n..end]).await?;
    }
    let source = parse_v1(&buf[..n])?;
    Ok(ProxyHeader {
        version: 1,
        source,
        tls: false,
    })
}

/// Parses a whole version 1 header, `\r\n` included: the client's address, or `None` for
/// `UNKNOWN`.
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    if line.len() > V1_MAX_LEN {
        return Err(invalid(format!(
            "a v1 header is at most {V1_MAX_LEN} bytes"
        )));
    }
    let text = line
        .strip_suffix(b"\r\n")
        .ok_or_else(|| invalid("a v1 header ends with CRLF"))?;
    if !text.iter().all(|&b| (b' '..=b'~').contains(&b)) {
        return Err(invalid("a v1 header is printable ASCII"));
    }
    let text = std::str::from_utf8(text).map_err(|_| invalid("a v1 header is ASCII"))?;
    let rest = text
        .strip_prefix("PROXY ")
        .ok_or_else(|| invalid("a v1 header starts with `PROXY `"))?;
    let mut fields = rest.split(' ');
    let v6 = match fields.next() {
        // The receiver ignores whatever follows UNKNOWN.
        Some("UNKNOWN") => return Ok(None),
        Some("TCP4") => false,
        Some("TCP6") => true,
        Some(other) => {
            return Err(invalid(format!(
                "unknown protocol `{other}` (expected TCP4, TCP6 or UNKNOWN)"
            )));
        }
        None => return Err(invalid("the protocol is missing")),
    };
    let fields: Vec<&str> = fields.collect();
    let [source, destination, source_port, destination_port] = fields[..] else {
        return Err(invalid(
            "expected the source and destination addresses and ports, separated by single spaces",
        ));
    };
    let address = |text: &str| -> Result<IpAddr, HeaderError> {
        let ip = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map_err(|_| {
            invalid(format!(
                "`{text}` is not an {} address",
                if v6 { "IPv6" } else { "IPv4" }
            ))
        })
    };
    let source = address(source)?;
    address(destination)?;
    let source_port = port(source_port)?;
    port(destination_port)?;
    Ok(Some(SocketAddr::new(source, source_port)))
}

/// A version 1 port: a decimal number 0–65535, without sign or leading zero.
fn port(text: &str) -> Result<u16, HeaderError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    match text.parse::<u16>() {
        Ok(p) if digits && !leading_zero => Ok(p),
        _ => Err(invalid(format!("`{text}` is not a port"))),
    }
}

/// Checks the fixed part of a version 2 header (signature, version, command, family) and
/// returns the length of the block that follows it.
pub fn v2_block_len(fixed: &[u8; V2_FIXED_LEN]) -> Result<usize, HeaderError> {
    if fixed[..12] != V2_SIGNATURE {
        return Err(invalid("no PROXY header"));
    }
    if fixed[12] >> 4 != 2 {
        return Err(invalid(format!(
            "version {} in a v2 signature (expected 2)",
            fixed[12] >> 4
        )));
    }
    let command = fixed[12] & 0x0F;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(invalid(format!("unknown command {command:#x}")));
    }
    let family = fixed[13];
    if command == CMD_PROXY {
        match family {
            FAM_UNSPEC | FAM_TCP4 | FAM_TCP6 | FAM_UNIX_STREAM => {}
            FAM_UDP4 | FAM_UDP6 | FAM_UNIX_DGRAM => {
                return Err(invalid("a datagram connection: MQTT needs a stream"));
            }
            other => {
                return Err(invalid(format!(
                    "unknown address family and transport {other:#04x}"
                )));
            }
        }
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > V2_MAX_BLOCK {
        return Err(invalid(format!(
            "{len} bytes of addresses and TLVs (Tern accepts at most {V2_MAX_BLOCK})"
        )));
    }
    Ok(len)
}

/// Parses a version 2 header: its fixed part (already checked by [`v2_block_len`]) and the
/// block that follows it.
pub fn parse_v2(fixed: &[u8; V2_FIXED_LEN], block: &[u8]) -> Result<ProxyHeader, HeaderError> {
    let unknown = ProxyHeader {
        version: 2,
        source: None,
        tls: false,
    };
    // LOCAL: the proxy's own connection (a health check); the block is ignored, as is an
    // UNSPEC family's.
    if fixed[12] & 0x0F == CMD_LOCAL || fixed[13] == FAM_UNSPEC {
        return Ok(unknown);
    }
    let (source, addresses_len) = match fixed[13] {
        FAM_TCP4 => {
            let a = block
                .get(..ADDR_LEN_TCP4)
                .ok_or_else(|| invalid("TCP over IPv4 needs 12 bytes of addresses"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            (Some(SocketAddr::new(IpAddr::V4(ip), port)), ADDR_LEN_TCP4)
        }
        FAM_TCP6 => {
            let a = block
                .get(..ADDR_LEN_TCP6)
                .ok_or_else(|| invalid("TCP over IPv6 needs 36 bytes of addresses"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            (
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port)),
                ADDR_LEN_TCP6,
            )
        }
        FAM_UNIX_STREAM => {
            if block.len() < ADDR_LEN_UNIX {
                return Err(invalid("a Unix stream needs 216 bytes of addresses"));
            }
            (None, ADDR_LEN_UNIX)
        }
        other => {
            return Err(invalid(format!(
                "unknown address family and transport {other:#04x}"
            )));
        }
    };
    Ok(ProxyHeader {
        version: 2,
        source,
        tls: client_used_tls(&block[addresses_len..])?,
    })
}

/// Walks the TLVs after the addresses, checking their lengths; true if an SSL TLV says the
/// client connected over TLS.
fn client_used_tls(mut tlvs: &[u8]) -> Result<bool, HeaderError> {
    let mut tls = false;
    while !tlvs.is_empty() {
        let &[kind, hi, lo, ..] = tlvs else {
            return Err(invalid("a truncated TLV"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let value = tlvs
            .get(3..3 + len)
            .ok_or_else(|| invalid("a TLV longer than the header"))?;
        if kind == TLV_SSL {
            // client (1 byte), verify (4 bytes), then sub-TLVs.
            if value.len() < 5 {
                return Err(invalid("an SSL TLV shorter than 5 bytes"));
            }
            tls |= value[0] & SSL_CLIENT_SSL != 0;
        }
        tlvs = &tlvs[3 + len..];
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: ProxyProtocol = ProxyProtocol {
        versions: ProxyVersions::Both,
        require_tls: false,
    };

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().expect("socket address"))
    }

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(block.len()).expect("short").to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn tcp4_block() -> Vec<u8> {
        vec![203, 0, 113, 7, 10, 0, 0, 1, 0x30, 0x39, 0x07, 0x5B]
    }

    /// Reads a header from `bytes` followed by `after`, and checks that `after` is left unread.
    async fn read(bytes: &[u8], config: ProxyProtocol) -> Result<ProxyHeader, HeaderError> {
        let mut input = bytes.to_vec();
        input.extend_from_slice(b"\x10MQTT");
        let mut stream: &[u8] = &input;
        let result = read_header(&mut stream, config).await;
        if result.is_ok() {
            assert_eq!(
                stream, b"\x10MQTT",
                "the bytes after the header stay unread"
            );
        }
        result
    }

    #[test]
    fn v1_addresses() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 1883\r\n").unwrap(),
            addr("203.0.113.7:12345")
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 1883\r\n").unwrap(),
            addr("[2001:db8::7]:65535")
        );
        assert_eq!(
            parse_v1(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 1\r\n").unwrap(),
            addr("1.2.3.4:0")
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert_eq!(
            parse_v1(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap(),
            None
        );
        // The longest TCP6 line is 104 bytes; an UNKNOWN line may take up to 107.
        let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                        ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), 104);
        assert_eq!(
            parse_v1(longest).unwrap(),
            addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")
        );
        let mut unknown = b"PROXY UNKNOWN ".to_vec();
        unknown.resize(V1_MAX_LEN - 2, b'x');
        unknown.extend_from_slice(b"\r\n");
        assert_eq!(parse_v1(&unknown).unwrap(), None);
        unknown.insert(20, b'x');
        assert!(matches!(parse_v1(&unknown), Err(HeaderError::Invalid(_))));
    }

    #[test]
    fn v1_refusals() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 1883\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 12345\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 1883 x\r\n",
            b"PROXY TCP4 203.0.113.7  10.0.0.1 12345 1883\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 12345 1883\r\n",
            b"PROXY TCP6 203.0.113.7 2001:db8::1 12345 1883\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 1883\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 012 1883\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 +12 1883\r\n",
            b"PROXY TCP4 203.0.113.007 10.0.0.1 12 1883\r\n",
            b"PROXY UDP4 203.0.113.7 10.0.0.1 12345 1883\r\n",
            b"PROXY tcp4 203.0.113.7 10.0.0.1 12345 1883\r\n",
            b"PROXY\r\n",
            b"proxy TCP4 203.0.113.7 10.0.0.1 12345 1883\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 1\t2 1883\r\n",
        ];
        for line in bad {
            assert!(
                matches!(parse_v1(line), Err(HeaderError::Invalid(_))),
                "{:?} should be refused",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn v2_addresses() {
        let fixed = |h: &[u8]| -> [u8; 16] { h[..16].try_into().expect("16 bytes") };
        let h = v2(CMD_PROXY, FAM_TCP4, &tcp4_block());
        assert_eq!(v2_block_len(&fixed(&h)).unwrap(), 12);
        assert_eq!(
            parse_v2(&fixed(&h), &h[16..]).unwrap().source,
            addr("203.0.113.7:12345")
        );
        let mut block = vec![0x20, 0x01, 0x0d, 0xb8];
        block.extend_from_slice(&[0; 11]);
        block.push(7);
        block.extend_from_slice(&[0; 16]);
        block.extend_from_slice(&[0xFF, 0xFF, 0x07, 0x5B]);
        let h = v2(CMD_PROXY, FAM_TCP6, &block);
        assert_eq!(
            parse_v2(&fixed(&h), &h[16..]).unwrap().source,
            addr("[2001:db8::7]:65535")
        );
        // LOCAL, UNSPEC and UNIX carry no client address.
        for h in [
            v2(CMD_LOCAL, FAM_UNSPEC, &[]),
            v2(CMD_LOCAL, FAM_TCP4, &tcp4_block()),
            v2(CMD_PROXY, FAM_UNSPEC, &[1, 2, 3]),
            v2(CMD_PROXY, FAM_UNIX_STREAM, &[0; 216]),
        ] {
            assert_eq!(v2_block_len(&fixed(&h)).unwrap(), h.len() - 16);
            assert_eq!(parse_v2(&fixed(&h), &h[16..]).unwrap().source, None);
        }
    }

    #[test]
    fn v2_tlvs() {
        let fixed = |h: &[u8]| -> [u8; 16] { h[..16].try_into().expect("16 bytes") };
        let parse = |tlvs: &[u8]| {
            let mut block = tcp4_block();
            block.extend_from_slice(tlvs);
            let h = v2(CMD_PROXY, FAM_TCP4, &block);
            parse_v2(&fixed(&h), &h[16..])
        };
        // An authority TLV, then an SSL TLV (client SSL, verified) with a version sub-TLV.
        let mut tlvs = vec![0x02, 0x00, 0x04];
        tlvs.extend_from_slice(b"host");
        tlvs.extend_from_slice(&[0x20, 0x00, 0x0B, 0x01, 0, 0, 0, 0, 0x21, 0x00, 0x03]);
        tlvs.extend_from_slice(b"1.3");
        let header = parse(&tlvs).unwrap();
        assert!(header.tls);
        assert_eq!(header.source, addr("203.0.113.7:12345"));
        // An SSL TLV without the client-SSL flag; no SSL TLV at all.
        assert!(!parse(&[0x20, 0x00, 0x05, 0x00, 0, 0, 0, 0]).unwrap().tls);
        assert!(!parse(&[0x04, 0x00, 0x02, 0, 0]).unwrap().tls);
        assert!(!parse(&[]).unwrap().tls);
        // Malformed TLVs.
        for bad in [
            &[0x04][..],
            &[0x04, 0x00],
            &[0x04, 0x00, 0x03, 0, 0],
            &[0x20, 0x00, 0x01, 0x01],
        ] {
            assert!(
                matches!(parse(bad), Err(HeaderError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn v2_refusals() {
        let fixed = |h: &[u8]| -> [u8; 16] { h[..16].try_into().expect("16 bytes") };
        let mut wrong_version = v2(CMD_PROXY, FAM_TCP4, &tcp4_block());
        wrong_version[12] = 0x11;
        let mut wrong_signature = v2(CMD_PROXY, FAM_TCP4, &tcp4_block());
        wrong_signature[5] = b'X';
        for h in [
            wrong_version,
            wrong_signature,
            v2(0x2, FAM_TCP4, &tcp4_block()),
            v2(CMD_PROXY, FAM_UDP4, &tcp4_block()),
            v2(CMD_PROXY, FAM_UNIX_DGRAM, &[0; 216]),
            v2(CMD_PROXY, 0x41, &[]),
            v2(CMD_PROXY, 0x13, &[]),
            v2(CMD_PROXY, FAM_TCP4, &[0; V2_MAX_BLOCK + 1]),
        ] {
            assert!(
                matches!(v2_block_len(&fixed(&h)), Err(HeaderError::Invalid(_))),
                "{h:02x?}"
            );
        }
        // Address blocks too short for their family.
        for h in [
            v2(CMD_PROXY, FAM_TCP4, &[0; 11]),
            v2(CMD_PROXY, FAM_TCP6, &[0; 35]),
            v2(CMD_PROXY, FAM_UNIX_STREAM, &[0; 215]),
        ] {
            assert!(v2_block_len(&fixed(&h)).is_ok());
            assert!(matches!(
                parse_v2(&fixed(&h), &h[16..]),
                Err(HeaderError::Invalid(_))
            ));
        }
    }

    #[tokio::test]
    async fn reading_stops_at_the_end_of_the_header() {
        let h = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 1883\r\n", BOTH)
            .await
            .unwrap();
        assert_eq!((h.version, h.source), (1, addr("203.0.113.7:12345")));
        let h = read(b"PROXY UNKNOWN\r\n", BOTH).await.unwrap();
        assert_eq!((h.version, h.source), (1, None));
        let h = read(&v2(CMD_PROXY, FAM_TCP4, &tcp4_block()), BOTH)
            .await
            .unwrap();
        assert_eq!((h.version, h.source), (2, addr("203.0.113.7:12345")));
        let h = read(&v2(CMD_LOCAL, FAM_UNSPEC, &[]), BOTH).await.unwrap();
        assert_eq!((h.version, h.source), (2, None));
        // The longest line, and a v2 header with the most TLV bytes accepted.
        let mut longest = b"PROXY UNKNOWN ".to_vec();
        longest.resize(V1_MAX_LEN - 2, b'x');
        longest.extend_from_slice(b"\r\n");
        assert_eq!(read(&longest, BOTH).await.unwrap().source, None);
        let mut block = tcp4_block();
        block.extend_from_slice(&[0x04, 0x03, 0xF1]);
        block.resize(V2_MAX_BLOCK, 0);
        let h = read(&v2(CMD_PROXY, FAM_TCP4, &block), BOTH).await.unwrap();
        assert_eq!(h.source, addr("203.0.113.7:12345"));
    }

    #[tokio::test]
    async fn reading_refuses_bad_headers() {
        let v1_only = ProxyProtocol {
            versions: ProxyVersions::V1,
            require_tls: false,
        };
        let v2_only = ProxyProtocol {
            versions: ProxyVersions::V2,
            require_tls: false,
        };
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 1883\r\n";
        let v2_header = v2(CMD_PROXY, FAM_TCP4, &tcp4_block());
        assert!(matches!(
            read(v1, v2_only).await,
            Err(HeaderError::Version(1))
        ));
        assert!(matches!(
            read(&v2_header, v1_only).await,
            Err(HeaderError::Version(2))
        ));
        // An MQTT CONNECT where the header should be.
        assert!(matches!(
            read(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c", BOTH).await,
            Err(HeaderError::Invalid(_))
        ));
        // A line too long: no CRLF within 107 bytes.
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.extend_from_slice(&[b'x'; 100]);
        long.extend_from_slice(b"\r\n");
        assert!(matches!(
            read(&long, BOTH).await,
            Err(HeaderError::Invalid(_))
        ));
        // A bare LF, a CR not followed by LF.
        assert!(matches!(
            read(b"PROXY UNKNOWN x\n", BOTH).await,
            Err(HeaderError::Invalid(_))
        ));
        assert!(matches!(
            read(b"PROXY UNKNOWN\rxx\r\n", BOTH).await,
            Err(HeaderError::Invalid(_))
        ));
        // Truncated headers: the connection ends first.
        let mut stream: &[u8] = b"PROXY TCP4 203.0.113.7";
        assert!(matches!(
            read_header(&mut stream, BOTH).await,
            Err(HeaderError::Closed)
        ));
        let mut stream: &[u8] = &v2_header[..20];
        assert!(matches!(
            read_header(&mut stream, BOTH).await,
            Err(HeaderError::Closed)
        ));
        let mut stream: &[u8] = b"";
        assert!(matches!(
            read_header(&mut stream, BOTH).await,
            Err(HeaderError::Closed)
        ));
    }

    #[tokio::test]
    async fn require_tls_needs_the_ssl_tlv() {
        let config = ProxyProtocol {
            versions: ProxyVersions::Both,
            require_tls: true,
        };
        let mut block = tcp4_block();
        block.extend_from_slice(&[0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0]);
        let h = read(&v2(CMD_PROXY, FAM_TCP4, &block), config)
            .await
            .unwrap();
        assert!(h.tls);
        assert!(matches!(
            read(&v2(CMD_PROXY, FAM_TCP4, &tcp4_block()), config).await,
            Err(HeaderError::NotTls)
        ));
        assert!(matches!(
            read(b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 1883\r\n", config).await,
            Err(HeaderError::NotTls)
        ));
    }
}
