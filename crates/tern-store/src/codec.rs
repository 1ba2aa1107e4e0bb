//! The byte layout of stored values, and the wall-clock conversion of instants.
//!
//! Every stored value is "sealed": a CRC-32 over the row's key and body, then the body. The
//! engine's own checks find damaged pages; the seal finds a flipped byte inside a value (a
//! payload, a topic), which SQLite's `quick_check` cannot see.
//!
//! Integers are little-endian, lengths are `u32`, optional fields have a presence byte.
//! The layout is versioned by [`crate::FORMAT_VERSION`]; any change to it must bump it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tern_codec::{ByteString, PublishProperties, QoS, RetainHandling, SubscriptionOptions};
use tern_core::{DeliveryState, Message, SessionRecord, WillRecord};

/// A value that does not decode: the store is damaged.
#[derive(Debug)]
pub(crate) struct Damaged(pub(crate) &'static str);

type R<T> = Result<T, Damaged>;

/// Builds one value.
#[derive(Default)]
pub(crate) struct Enc {
    buf: Vec<u8>,
}

impl Enc {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        // Values are bounded by the MQTT packet size (< 256 MiB), so the length fits.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(v);
        self
    }
    pub(crate) fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
                self
            }
        }
    }
    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads one value.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    /// The buffer `buf` lies in, if owned: strings and byte fields become slices of it instead
    /// of copies (one allocation per loaded message).
    whole: Option<&'a Bytes>,
}

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, whole: None }
    }

    /// Reads `buf`, which lies inside `whole`.
    pub(crate) fn within(buf: &'a [u8], whole: &'a Bytes) -> Self {
        Self {
            buf,
            whole: Some(whole),
        }
    }

    fn owned(&self, b: &[u8]) -> Bytes {
        match self.whole {
            Some(w) => w.slice_ref(b),
            None => Bytes::copy_from_slice(b),
        }
    }

    fn shared_bytes(&mut self) -> R<Bytes> {
        let b = self.bytes()?;
        Ok(self.owned(b))
    }
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Damaged("a value is shorter than its layout"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    pub(crate) fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub(crate) fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    pub(crate) fn i64(&mut self) -> R<i64> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    pub(crate) fn bytes(&mut self) -> R<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(crate) fn string(&mut self) -> R<ByteString> {
        let b = self.shared_bytes()?;
        ByteString::try_from(b).map_err(|_| Damaged("a stored string is not UTF-8"))
    }
    fn bool(&mut self) -> R<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Damaged("a stored flag is neither 0 nor 1")),
        }
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<Option<T>> {
        if self.bool()? {
            Ok(Some(f(self)?))
        } else {
            Ok(None)
        }
    }
    fn qos(&mut self) -> R<QoS> {
        QoS::from_u8(self.u8()?).ok_or(Damaged("a stored QoS is not 0, 1 or 2"))
    }
    pub(crate) fn end(&self) -> R<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Damaged("a value is longer than its layout"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Seals

/// The key of a row, as covered by its seal.
pub(crate) fn key_crc(parts: &[&[u8]]) -> crc32fast::Hasher {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h
}

/// `crc(key, body) ‖ body`.
pub(crate) fn seal(key: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut h = key_crc(key);
    h.update(body);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The body of a sealed value, after checking its seal.
pub(crate) fn unseal<'a>(key: &[&[u8]], data: &'a [u8]) -> R<&'a [u8]> {
    if data.len() < 4 {
        return Err(Damaged("a value is shorter than its checksum"));
    }
    let (crc, body) = data.split_at(4);
    let mut h = key_crc(key);
    h.update(body);
    if h.finalize().to_le_bytes() != crc {
        return Err(Damaged("a value does not match its checksum"));
    }
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// Time

/// Wall-clock microseconds since the Unix epoch for `at` (read against `now`/`wall_now`).
pub(crate) fn to_wall(at: Instant, now: Instant, wall_now: SystemTime) -> i64 {
    let wall = if at >= now {
        wall_now.checked_add(at - now)
    } else {
        wall_now.checked_sub(now - at)
    }
    .unwrap_or(wall_now);
    match wall.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The instant for wall-clock microseconds `micros` (read against `now`/`wall_now`).
///
/// A time too far in the past for the platform's `Instant` (one before the monotonic clock's
/// origin, which some platforms cannot go below) becomes the earliest instant that can be
/// represented, found by halving the distance: it is still in the past, so an expiry that was
/// due is still due. A time too far ahead becomes 100 years from now.
pub(crate) fn from_wall(micros: i64, now: Instant, wall_now: SystemTime) -> Instant {
    let wall = if micros >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_micros(micros.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_micros(micros.unsigned_abs()))
    };
    let Some(wall) = wall else { return now };
    match wall.duration_since(wall_now) {
        // In the future.
        Ok(ahead) => now
            .checked_add(ahead)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
            .unwrap_or(now),
        // In the past.
        Err(e) => {
            let mut back = e.duration();
            loop {
                if let Some(at) = now.checked_sub(back) {
                    return at;
                }
                back /= 2;
                if back.is_zero() {
                    return now;
                }
            }
        }
    }
}

/// The clocks read once per batch (writes) or per load (reads).
#[derive(Clone, Copy)]
pub(crate) struct Clocks {
    pub(crate) now: Instant,
    pub(crate) wall: SystemTime,
}

impl Clocks {
    pub(crate) fn read() -> Self {
        Self {
            now: Instant::now(),
            wall: SystemTime::now(),
        }
    }
    fn put(self, e: &mut Enc, at: Instant) {
        e.i64(to_wall(at, self.now, self.wall));
    }
    fn get(self, d: &mut Dec<'_>) -> R<Instant> {
        Ok(from_wall(d.i64()?, self.now, self.wall))
    }
}

// ---------------------------------------------------------------------------------------------
// Values

fn put_properties(e: &mut Enc, p: &PublishProperties) {
    e.opt(p.payload_format_indicator, |e, v| {
        e.u8(u8::from(v));
    });
    e.opt(p.message_expiry_interval, |e, v| {
        e.u32(v);
    });
    e.opt(p.topic_alias, |e, v| {
        e.u16(v);
    });
    e.opt(p.response_topic.as_ref(), |e, v| {
        e.str(v);
    });
    e.opt(p.correlation_data.as_ref(), |e, v| {
        e.bytes(v);
    });
    e.u32(p.user_properties.len() as u32);
    for (k, v) in &p.user_properties {
        e.str(k).str(v);
    }
    e.u32(p.subscription_identifiers.len() as u32);
    for id in &p.subscription_identifiers {
        e.u32(*id);
    }
    e.opt(p.content_type.as_ref(), |e, v| {
        e.str(v);
    });
}

fn get_properties(d: &mut Dec<'_>) -> R<PublishProperties> {
    let mut p = PublishProperties {
        payload_format_indicator: d.opt(Dec::bool)?,
        message_expiry_interval: d.opt(Dec::u32)?,
        topic_alias: d.opt(Dec::u16)?,
        response_topic: d.opt(Dec::string)?,
        correlation_data: d.opt(Dec::shared_bytes)?,
        ..PublishProperties::default()
    };
    let n = d.u32()?;
    for _ in 0..n {
        let k = d.string()?;
        let v = d.string()?;
        p.user_properties.push((k, v));
    }
    let n = d.u32()?;
    for _ in 0..n {
        p.subscription_identifiers.push(d.u32()?);
    }
    p.content_type = d.opt(Dec::string)?;
    Ok(p)
}

/// A message body.
pub(crate) fn encode_message(m: &Message, c: Clocks) -> Vec<u8> {
    let mut e = Enc::default();
    e.str(&m.topic)
        .bytes(&m.payload)
        .u8(m.qos as u8)
        .u8(u8::from(m.retain));
    put_properties(&mut e, &m.properties);
    e.opt(m.expires_at, |e, at| c.put(e, at));
    e.opt(m.publisher.as_ref(), |e, v| {
        e.str(v);
    });
    e.into_vec()
}

/// Decodes `body`, which lies inside `whole`: the message's fields share `whole`.
pub(crate) fn decode_message(body: &[u8], whole: &Bytes, c: Clocks) -> R<Message> {
    let mut d = Dec::within(body, whole);
    let topic = d.string()?;
    let payload = d.shared_bytes()?;
    let qos = d.qos()?;
    let retain = d.bool()?;
    let properties = get_properties(&mut d)?;
    let expires_at = d.opt(|d| c.get(d))?;
    let publisher = d.opt(Dec::string)?;
    d.end()?;
    Ok(Message {
        topic,
        payload,
        qos,
        retain,
        properties,
        expires_at,
        publisher,
    })
}

/// A session body (the client id is the key).
pub(crate) fn encode_session(s: &SessionRecord, c: Clocks) -> Vec<u8> {
    let mut e = Enc::default();
    e.u32(s.expiry_interval);
    e.opt(s.username.as_ref(), |e, v| {
        e.str(v);
    });
    e.opt(s.disconnected_at, |e, at| c.put(e, at));
    e.opt(s.will.as_ref(), |e, w| {
        e.str(&w.topic)
            .bytes(&w.payload)
            .u8(w.qos as u8)
            .u8(u8::from(w.retain));
        put_properties(e, &w.properties);
        e.u32(w.delay_interval);
    });
    e.into_vec()
}

pub(crate) fn decode_session(client_id: ByteString, body: &[u8], c: Clocks) -> R<SessionRecord> {
    let mut d = Dec::new(body);
    let expiry_interval = d.u32()?;
    let username = d.opt(Dec::string)?;
    let disconnected_at = d.opt(|d| c.get(d))?;
    let will = d.opt(|d| {
        Ok(WillRecord {
            topic: d.string()?,
            payload: d.shared_bytes()?,
            qos: d.qos()?,
            retain: d.bool()?,
            properties: get_properties(d)?,
            delay_interval: d.u32()?,
        })
    })?;
    d.end()?;
    Ok(SessionRecord {
        client_id,
        expiry_interval,
        username,
        disconnected_at,
        will,
    })
}

/// A subscription body (client id and filter are the key).
pub(crate) fn encode_subscription(o: &SubscriptionOptions, id: Option<u32>) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(o.qos as u8)
        .u8(u8::from(o.no_local))
        .u8(u8::from(o.retain_as_published))
        .u8(o.retain_handling as u8);
    e.opt(id, |e, v| {
        e.u32(v);
    });
    e.into_vec()
}

pub(crate) fn decode_subscription(body: &[u8]) -> R<(SubscriptionOptions, Option<u32>)> {
    let mut d = Dec::new(body);
    let qos = d.qos()?;
    let no_local = d.bool()?;
    let retain_as_published = d.bool()?;
    let retain_handling = match d.u8()? {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(Damaged("a stored Retain Handling is not 0, 1 or 2")),
    };
    let id = d.opt(Dec::u32)?;
    d.end()?;
    Ok((
        SubscriptionOptions {
            qos,
            no_local,
            retain_as_published,
            retain_handling,
        },
        id,
    ))
}

/// The fields of a delivery besides its key and message.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryFields {
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) subscription_identifiers: Box<[u32]>,
    pub(crate) shared: Option<ByteString>,
    pub(crate) state: DeliveryState,
}

/// A delivery body: message id, then the fields (client id and seq are the key).
pub(crate) fn encode_delivery(r: &tern_core::DeliveryRecord, message_id: u64) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(message_id).u8(r.qos as u8).u8(u8::from(r.retain));
    e.u32(r.subscription_identifiers.len() as u32);
    for id in &r.subscription_identifiers {
        e.u32(*id);
    }
    e.opt(r.shared.as_ref(), |e, v| {
        e.str(v);
    });
    match r.state {
        DeliveryState::Queued => e.u8(0).u16(0),
        DeliveryState::Sent(p) => e.u8(1).u16(p),
        DeliveryState::Released(p) => e.u8(2).u16(p),
    };
    e.into_vec()
}

pub(crate) fn decode_delivery(body: &[u8]) -> R<(u64, DeliveryFields)> {
    let mut d = Dec::new(body);
    let message_id = d.u64()?;
    let qos = d.qos()?;
    let retain = d.bool()?;
    let n = d.u32()?;
    let mut ids = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        ids.push(d.u32()?);
    }
    let shared = d.opt(Dec::string)?;
    let tag = d.u8()?;
    let pid = d.u16()?;
    let state = match tag {
        0 => DeliveryState::Queued,
        1 => DeliveryState::Sent(pid),
        2 => DeliveryState::Released(pid),
        _ => return Err(Damaged("a stored delivery state is unknown")),
    };
    d.end()?;
    Ok((
        message_id,
        DeliveryFields {
            qos,
            retain,
            subscription_identifiers: ids.into_boxed_slice(),
            shared,
            state,
        },
    ))
}

/// A retained entry body: the message id (the topic is the key).
pub(crate) fn encode_id(id: u64) -> Vec<u8> {
    id.to_le_bytes().to_vec()
}

pub(crate) fn decode_id(body: &[u8]) -> R<u64> {
    let mut d = Dec::new(body);
    let id = d.u64()?;
    d.end()?;
    Ok(id)
}

/// A hasher for keys that are already well distributed integers (ids, addresses): Fibonacci
/// hashing, folded so that the low bits used for bucket indices depend on every input bit.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
    fn write_usize(&mut self, n: usize) {
        self.0 ^= n as u64;
    }
}

/// A map keyed by ids or addresses.
pub(crate) type IdMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Keeps `Arc<Message>` helpers close to the layout.
pub(crate) fn message_ptr(m: &Arc<Message>) -> usize {
    Arc::as_ptr(m) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_round_trip() {
        let c = Clocks::read();
        for delta in [0i64, 1, -1, 3_600_000_000, -3_600_000_000] {
            let at = if delta >= 0 {
                c.now + Duration::from_micros(delta as u64)
            } else {
                c.now - Duration::from_micros((-delta) as u64)
            };
            let w = to_wall(at, c.now, c.wall);
            let back = from_wall(w, c.now, c.wall);
            let diff = if back > at { back - at } else { at - back };
            assert!(diff <= Duration::from_micros(1), "{delta}: {diff:?}");
        }
    }

    #[test]
    fn ancient_times_stay_in_the_past() {
        let c = Clocks::read();
        let at = from_wall(i64::MIN + 1, c.now, c.wall);
        assert!(at <= c.now);
        let at = from_wall(i64::MAX, c.now, c.wall);
        assert!(at > c.now);
    }

    #[test]
    fn seal_detects_flips() {
        let v = seal(&[b"a", b"b"], b"hello");
        assert_eq!(unseal(&[b"a", b"b"], &v).ok(), Some(&b"hello"[..]));
        assert!(unseal(&[b"a", b"c"], &v).is_err());
        let mut w = v.clone();
        w[6] ^= 1;
        assert!(unseal(&[b"a", b"b"], &w).is_err());
    }
}
