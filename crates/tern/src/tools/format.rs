//! How `tern sub` prints a message: plain, `-v`, or an `-F` format with Mosquitto's codes.
//!
//! `-F` codes (an optional `-` for left alignment, `0` for zero padding, a width and a
//! `.precision` that truncates may come between `%` and the letter, as in `%-10t` or `%.5p`):
//!
//! | code | value |
//! |---|---|
//! | `%%` | a percent sign |
//! | `%t` | topic |
//! | `%p` | payload, raw bytes |
//! | `%x` / `%X` | payload in lower / upper case hexadecimal |
//! | `%l` | payload length in bytes |
//! | `%q` | QoS |
//! | `%r` | retain flag, 0 or 1 |
//! | `%m` | packet identifier (0 at QoS 0) |
//! | `%j` | JSON: time, topic, qos, retain, payload length, mid, MQTT 5 properties, payload |
//! | `%I` | the time, ISO 8601 (UTC) |
//! | `%U` | the time, Unix seconds with nanoseconds |
//! | `%A` | MQTT 5 topic alias |
//! | `%C` | MQTT 5 content type |
//! | `%D` | MQTT 5 correlation data |
//! | `%E` | MQTT 5 message expiry interval |
//! | `%F` | MQTT 5 payload format indicator |
//! | `%P` | MQTT 5 user properties, `name:value` separated by spaces |
//! | `%R` | MQTT 5 response topic |
//! | `%S` | MQTT 5 subscription identifiers, comma separated |
//!
//! The MQTT 5 codes print nothing when the property is absent.
//!
//! `@` codes give parts of the current UTC time: `@Y` `@m` `@d` `@H` `@M` `@S`, `@s` (Unix
//! seconds), `@N` (nanoseconds), `@@` (an at sign). Backslash escapes: `\\` `\0` `\a` `\e` `\n`
//! `\r` `\t` `\v`. Anything else is printed as it is.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_client::tern_codec::Publish;

/// The output for one message without `-F` (Mosquitto's behaviour, empty payloads included:
/// `-v` prints `TOPIC (null)`, and without `-v` nothing at all is printed).
pub(super) fn plain(p: &Publish, verbose: bool, eol: bool, out: &mut Vec<u8>) {
    if verbose {
        out.extend_from_slice(p.topic.as_bytes());
        if p.payload.is_empty() {
            if !eol {
                out.clear();
                return;
            }
            out.extend_from_slice(b" (null)");
        } else {
            out.push(b' ');
            out.extend_from_slice(&p.payload);
        }
    } else if p.payload.is_empty() {
        return;
    } else {
        out.extend_from_slice(&p.payload);
    }
    if eol {
        out.push(b'\n');
    }
}

/// The output for one message with an `-F` format (a newline follows unless `-N`).
pub(super) fn render(format: &str, p: &Publish, now: SystemTime, eol: bool, out: &mut Vec<u8>) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let mut spec = Spec::default();
                let mut raw = String::from('%');
                while let Some(&f) = chars.peek() {
                    match f {
                        '-' => spec.left = true,
                        '0' if spec.width.is_none() => spec.zero = true,
                        _ => break,
                    }
                    raw.push(f);
                    chars.next();
                }
                spec.width = digits(&mut chars, &mut raw);
                if chars.peek() == Some(&'.') {
                    raw.push('.');
                    chars.next();
                    spec.precision = Some(digits(&mut chars, &mut raw).unwrap_or(0));
                }
                let Some(code) = chars.next() else {
                    out.extend_from_slice(raw.as_bytes());
                    break;
                };
                match field(code, p, since_epoch) {
                    Some(Field::Text(bytes)) => spec.write(&bytes, false, out),
                    Some(Field::Number(n)) => spec.write(n.to_string().as_bytes(), true, out),
                    None => {
                        raw.push(code);
                        out.extend_from_slice(raw.as_bytes());
                    }
                }
            }
            '@' => match chars.next() {
                Some(code) => match time_part(code, since_epoch) {
                    Some(text) => out.extend_from_slice(text.as_bytes()),
                    None => {
                        out.push(b'@');
                        push_char(out, code);
                    }
                },
                None => out.push(b'@'),
            },
            '\\' => match chars.next() {
                Some(code) => match escape(code) {
                    Some(byte) => out.push(byte),
                    None => {
                        out.push(b'\\');
                        push_char(out, code);
                    }
                },
                None => out.push(b'\\'),
            },
            other => push_char(out, other),
        }
    }
    if eol {
        out.push(b'\n');
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

fn digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, raw: &mut String) -> Option<usize> {
    let mut value: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        raw.push(chars.next().unwrap_or('0'));
        value = Some(
            value
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(d as usize),
        );
    }
    value
}

/// Width, alignment and precision of one `%` code.
#[derive(Default)]
struct Spec {
    left: bool,
    zero: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

impl Spec {
    fn write(&self, value: &[u8], numeric: bool, out: &mut Vec<u8>) {
        let value = match self.precision {
            Some(max) if !numeric && value.len() > max => &value[..max],
            _ => value,
        };
        let pad = self.width.unwrap_or(0).saturating_sub(value.len());
        if self.left {
            out.extend_from_slice(value);
            out.extend(std::iter::repeat_n(b' ', pad));
        } else {
            let fill = if self.zero && numeric { b'0' } else { b' ' };
            out.extend(std::iter::repeat_n(fill, pad));
            out.extend_from_slice(value);
        }
    }
}

enum Field {
    Text(Vec<u8>),
    Number(u64),
}

fn field(code: char, p: &Publish, now: Duration) -> Option<Field> {
    let props = &p.properties;
    let text = |s: Option<&str>| Field::Text(s.unwrap_or_default().as_bytes().to_vec());
    let number = |n: Option<u32>| match n {
        Some(n) => Field::Number(u64::from(n)),
        None => Field::Text(Vec::new()),
    };
    Some(match code {
        '%' => Field::Text(b"%".to_vec()),
        't' => text(Some(&p.topic)),
        'p' => Field::Text(p.payload.to_vec()),
        'x' => Field::Text(hex(&p.payload, false).into_bytes()),
        'X' => Field::Text(hex(&p.payload, true).into_bytes()),
        'l' => Field::Number(p.payload.len() as u64),
        'q' => Field::Number(p.qos as u64),
        'r' => Field::Number(u64::from(p.retain)),
        'm' => Field::Number(u64::from(p.packet_id.map_or(0, |id| id.get()))),
        'j' => Field::Text(json(p, now).into_bytes()),
        'I' => Field::Text(iso8601(now, false).into_bytes()),
        'U' => Field::Text(format!("{}.{:09}", now.as_secs(), now.subsec_nanos()).into_bytes()),
        'A' => number(props.topic_alias.map(u32::from)),
        'C' => text(props.content_type.as_deref()),
        'D' => Field::Text(
            props
                .correlation_data
                .as_ref()
                .map(|d| d.to_vec())
                .unwrap_or_default(),
        ),
        'E' => number(props.message_expiry_interval),
        'F' => number(props.payload_format_indicator.map(u32::from)),
        'P' => Field::Text(
            props
                .user_properties
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes(),
        ),
        'R' => text(props.response_topic.as_deref()),
        'S' => Field::Text(
            props
                .subscription_identifiers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
                .into_bytes(),
        ),
        _ => return None,
    })
}

fn escape(code: char) -> Option<u8> {
    Some(match code {
        '\\' => b'\\',
        '0' => 0,
        'a' => 0x07,
        'e' => 0x1B,
        'n' => b'\n',
        'r' => b'\r',
        't' => b'\t',
        'v' => 0x0B,
        _ => return None,
    })
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// The UTC calendar date and time of a Unix time: (year, month, day, hour, minute, second).
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `2024-05-01T12:34:56+0000`, or with microseconds as Mosquitto's `%j` writes it:
/// `2024-05-01T12:34:56.123456Z+0000`.
fn iso8601(now: Duration, micros: bool) -> String {
    let (y, mo, d, h, mi, s) = civil(now.as_secs());
    if micros {
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z+0000",
            now.subsec_micros()
        )
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+0000")
    }
}

fn time_part(code: char, now: Duration) -> Option<String> {
    let (y, mo, d, h, mi, s) = civil(now.as_secs());
    Some(match code {
        'Y' => format!("{y:04}"),
        'm' => format!("{mo:02}"),
        'd' => format!("{d:02}"),
        'H' => format!("{h:02}"),
        'M' => format!("{mi:02}"),
        'S' => format!("{s:02}"),
        's' => now.as_secs().to_string(),
        'N' => format!("{:09}", now.subsec_nanos()),
        '@' => "@".to_owned(),
        _ => return None,
    })
}

/// A JSON string literal.
fn json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `%j`: one JSON object per message, with the fields of Mosquitto's (payload as a string;
/// bytes that are not UTF-8 become U+FFFD).
fn json(p: &Publish, now: Duration) -> String {
    let mut out = String::from("{\"tst\":");
    json_string(&iso8601(now, true), &mut out);
    out.push_str(",\"topic\":");
    json_string(&p.topic, &mut out);
    out.push_str(&format!(
        ",\"qos\":{},\"retain\":{},\"payloadlen\":{}",
        p.qos as u8,
        u8::from(p.retain),
        p.payload.len()
    ));
    if let Some(id) = p.packet_id {
        out.push_str(&format!(",\"mid\":{id}"));
    }
    let props = &p.properties;
    if !props.is_empty() {
        let mut fields: Vec<String> = Vec::new();
        if !props.user_properties.is_empty() {
            let mut s = String::from("\"user-properties\":{");
            for (i, (k, v)) in props.user_properties.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                json_string(k, &mut s);
                s.push(':');
                json_string(v, &mut s);
            }
            s.push('}');
            fields.push(s);
        }
        let mut string_field = |name: &str, value: &str| {
            let mut s = format!("\"{name}\":");
            json_string(value, &mut s);
            fields.push(s);
        };
        if let Some(v) = &props.content_type {
            string_field("content-type", v);
        }
        if let Some(v) = &props.correlation_data {
            string_field("correlation-data", &String::from_utf8_lossy(v));
        }
        if let Some(v) = &props.response_topic {
            string_field("response-topic", v);
        }
        if let Some(v) = props.payload_format_indicator {
            fields.push(format!("\"payload-format-indicator\":{}", u8::from(v)));
        }
        if let Some(v) = props.message_expiry_interval {
            fields.push(format!("\"message-expiry-interval\":{v}"));
        }
        if let Some(v) = props.topic_alias {
            fields.push(format!("\"topic-alias\":{v}"));
        }
        if !props.subscription_identifiers.is_empty() {
            let ids: Vec<String> = props
                .subscription_identifiers
                .iter()
                .map(ToString::to_string)
                .collect();
            fields.push(format!("\"subscription-identifiers\":[{}]", ids.join(",")));
        }
        out.push_str(",\"properties\":{");
        out.push_str(&fields.join(","));
        out.push('}');
    }
    out.push_str(",\"payload\":");
    json_string(&String::from_utf8_lossy(&p.payload), &mut out);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tern_client::tern_codec::{ByteString, PacketId, PublishProperties, QoS};

    fn message() -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: ByteString::from("a/b"),
            packet_id: PacketId::new(7),
            properties: PublishProperties {
                content_type: Some(ByteString::from("text/plain")),
                user_properties: vec![
                    (ByteString::from("k"), ByteString::from("v")),
                    (ByteString::from("k"), ByteString::from("w")),
                ],
                ..Default::default()
            },
            payload: Bytes::from_static(b"hi\"\x01"),
        }
    }

    fn rendered(format: &str) -> String {
        let mut out = Vec::new();
        let now = UNIX_EPOCH + Duration::new(1_714_566_896, 123_456_789);
        render(format, &message(), now, false, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn codes_and_escapes() {
        assert_eq!(
            rendered("%t|%q|%r|%m|%l|%x|%X|%C|%P|%E|%%|\\t|@Y-@m-@dT@H:@M:@S|%I|%U"),
            "a/b|1|1|7|4|68692201|68692201|text/plain|k:v k:w||%|\t|2024-05-01T12:34:56\
             |2024-05-01T12:34:56+0000|1714566896.123456789"
        );
    }

    #[test]
    fn width_precision_and_unknown_codes() {
        assert_eq!(
            rendered("[%5t|%-5t|%05l|%.1t|%3m]"),
            "[  a/b|a/b  |00004|a|  7]"
        );
        assert_eq!(rendered("%y @z \\q %"), "%y @z \\q %");
    }

    #[test]
    fn json_object() {
        assert_eq!(
            rendered("%j"),
            "{\"tst\":\"2024-05-01T12:34:56.123456Z+0000\",\"topic\":\"a/b\",\"qos\":1,\
             \"retain\":1,\"payloadlen\":4,\"mid\":7,\"properties\":{\"user-properties\":\
             {\"k\":\"v\",\"k\":\"w\"},\"content-type\":\"text/plain\"},\
             \"payload\":\"hi\\\"\\u0001\"}"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(4_102_444_799), (2099, 12, 31, 23, 59, 59));
    }
}
