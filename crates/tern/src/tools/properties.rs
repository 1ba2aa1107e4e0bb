//! `-D COMMAND IDENTIFIER VALUE`: MQTT 5 properties named as Mosquitto's clients name them.
//!
//! - `connect`: session-expiry-interval, receive-maximum, maximum-packet-size,
//!   topic-alias-maximum, request-problem-information, request-response-information,
//!   user-property;
//! - `publish`: payload-format-indicator, message-expiry-interval, content-type,
//!   response-topic, correlation-data, topic-alias, user-property;
//! - `will`: will-delay-interval, payload-format-indicator, message-expiry-interval,
//!   content-type, response-topic, correlation-data, user-property;
//! - `subscribe`: subscription-identifier, user-property;
//! - `disconnect`: session-expiry-interval, reason-string, user-property.
//!
//! `user-property` takes two values, NAME and VALUE, and may repeat (the order is kept); every
//! other property may be given once.

use bytes::Bytes;
use tern_client::tern_codec::{
    ByteString, DisconnectProperties, PublishProperties, SubscribeProperties, UserProperties,
    WillProperties, is_valid_topic_name,
};

/// The CONNECT properties `-D connect` can set.
#[derive(Debug, Default, Clone)]
pub(super) struct ConnectProps {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_problem_information: Option<bool>,
    pub request_response_information: Option<bool>,
    pub user_properties: UserProperties,
}

/// Every property given with `-D`, by packet.
#[derive(Debug, Default, Clone)]
pub(super) struct Properties {
    pub connect: ConnectProps,
    pub publish: PublishProperties,
    pub will: WillProperties,
    pub subscribe: SubscribeProperties,
    pub disconnect: DisconnectProperties,
    count: usize,
}

impl Properties {
    /// Whether no `-D` was given.
    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The packets a tool sends, which are the commands its `-D` accepts.
pub(super) const PUB_COMMANDS: &[&str] = &["connect", "publish", "will", "disconnect"];
/// See [`PUB_COMMANDS`].
pub(super) const SUB_COMMANDS: &[&str] = &["connect", "subscribe", "will", "disconnect"];

/// Parses the words of every `-D` (clap gives them as one list: COMMAND IDENTIFIER VALUE, or
/// COMMAND user-property NAME VALUE, one after the other) for a tool that accepts `commands`.
pub(super) fn parse(raw: &[String], commands: &[&str]) -> Result<Properties, String> {
    let mut props = Properties::default();
    let mut words = raw.iter().map(String::as_str);
    while let Some(command) = words.next() {
        let command = match command {
            "pub" => "publish",
            "sub" => "subscribe",
            other => other,
        };
        if !commands.contains(&command) {
            return Err(format!(
                "invalid command '{command}' in -D: expected one of {}",
                commands.join(", ")
            ));
        }
        let identifier = words.next().unwrap_or_default();
        let Some(value) = words.next() else {
            return Err(format!("-D {command} {identifier} needs a value"));
        };
        if identifier == "user-property" {
            let Some(second) = words.next() else {
                return Err("-D ... user-property needs a NAME and a VALUE".to_owned());
            };
            let pair = (ByteString::from(value), ByteString::from(second));
            match command {
                "connect" => props.connect.user_properties.push(pair),
                "publish" => props.publish.user_properties.push(pair),
                "will" => props.will.message.user_properties.push(pair),
                "subscribe" => props.subscribe.user_properties.push(pair),
                _ => props.disconnect.user_properties.push(pair),
            }
            props.count += 1;
            continue;
        }
        set(&mut props, command, identifier, value)?;
        props.count += 1;
    }
    Ok(props)
}

/// Sets one single-valued property, refusing a second occurrence.
fn set(props: &mut Properties, command: &str, identifier: &str, value: &str) -> Result<(), String> {
    fn put<T>(slot: &mut Option<T>, value: T, identifier: &str) -> Result<(), String> {
        if slot.is_some() {
            return Err(format!("duplicate property {identifier} in -D"));
        }
        *slot = Some(value);
        Ok(())
    }
    let number = |max: u64| -> Result<u64, String> {
        value
            .parse::<u64>()
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| format!("invalid value '{value}' for {identifier}: expected 0 to {max}"))
    };
    let flag = || -> Result<bool, String> {
        match value {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(format!(
                "invalid value '{value}' for {identifier}: expected 0 or 1"
            )),
        }
    };
    let u32_value = || number(u64::from(u32::MAX)).map(|v| v as u32);
    let u16_value = || number(u64::from(u16::MAX)).map(|v| v as u16);
    let text = || ByteString::from(value);
    let topic = || {
        if is_valid_topic_name(value) {
            Ok(ByteString::from(value))
        } else {
            Err(format!(
                "invalid {identifier} '{value}': a topic name without '+' or '#'"
            ))
        }
    };
    let not_allowed = || format!("{identifier} property not allowed for {command} in -D");
    match command {
        "connect" => {
            let c = &mut props.connect;
            match identifier {
                "session-expiry-interval" => {
                    put(&mut c.session_expiry_interval, u32_value()?, identifier)
                }
                "receive-maximum" => {
                    let v = u16_value()?;
                    if v == 0 {
                        return Err("receive-maximum must not be 0".to_owned());
                    }
                    put(&mut c.receive_maximum, v, identifier)
                }
                "maximum-packet-size" => {
                    let v = u32_value()?;
                    if v == 0 {
                        return Err("maximum-packet-size must not be 0".to_owned());
                    }
                    put(&mut c.maximum_packet_size, v, identifier)
                }
                "topic-alias-maximum" => put(&mut c.topic_alias_maximum, u16_value()?, identifier),
                "request-problem-information" => {
                    put(&mut c.request_problem_information, flag()?, identifier)
                }
                "request-response-information" => {
                    put(&mut c.request_response_information, flag()?, identifier)
                }
                _ => Err(unknown_or(identifier, not_allowed())),
            }
        }
        "publish" | "will" => {
            if command == "will" && identifier == "will-delay-interval" {
                return put(
                    &mut props.will.will_delay_interval,
                    u32_value()?,
                    identifier,
                );
            }
            let p = if command == "publish" {
                &mut props.publish
            } else {
                &mut props.will.message
            };
            match identifier {
                "payload-format-indicator" => {
                    put(&mut p.payload_format_indicator, flag()?, identifier)
                }
                "message-expiry-interval" => {
                    put(&mut p.message_expiry_interval, u32_value()?, identifier)
                }
                "content-type" => put(&mut p.content_type, text(), identifier),
                "response-topic" => put(&mut p.response_topic, topic()?, identifier),
                "correlation-data" => put(
                    &mut p.correlation_data,
                    Bytes::copy_from_slice(value.as_bytes()),
                    identifier,
                ),
                "topic-alias" if command == "publish" => {
                    let v = u16_value()?;
                    if v == 0 {
                        return Err("topic-alias must not be 0".to_owned());
                    }
                    put(&mut p.topic_alias, v, identifier)
                }
                _ => Err(unknown_or(identifier, not_allowed())),
            }
        }
        "subscribe" => match identifier {
            "subscription-identifier" => {
                let v = number(268_435_455)? as u32;
                if v == 0 {
                    return Err("subscription-identifier must be 1 to 268435455".to_owned());
                }
                put(&mut props.subscribe.subscription_identifier, v, identifier)
            }
            _ => Err(unknown_or(identifier, not_allowed())),
        },
        _ => {
            let d = &mut props.disconnect;
            match identifier {
                "session-expiry-interval" => {
                    put(&mut d.session_expiry_interval, u32_value()?, identifier)
                }
                "reason-string" => put(&mut d.reason_string, text(), identifier),
                _ => Err(unknown_or(identifier, not_allowed())),
            }
        }
    }
}

/// "invalid property name" for a name no command knows, else the given message.
fn unknown_or(identifier: &str, message: String) -> String {
    const KNOWN: &[&str] = &[
        "session-expiry-interval",
        "receive-maximum",
        "maximum-packet-size",
        "topic-alias-maximum",
        "request-problem-information",
        "request-response-information",
        "user-property",
        "payload-format-indicator",
        "message-expiry-interval",
        "content-type",
        "response-topic",
        "correlation-data",
        "topic-alias",
        "will-delay-interval",
        "subscription-identifier",
        "reason-string",
    ];
    if KNOWN.contains(&identifier) {
        message
    } else {
        format!("invalid property name '{identifier}' in -D")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&[&str]]) -> Vec<String> {
        list.iter()
            .flat_map(|w| w.iter().map(|s| (*s).to_owned()))
            .collect()
    }

    #[test]
    fn publish_properties_and_user_properties_in_order() {
        let p = parse(
            &words(&[
                &["publish", "user-property", "b", "1"],
                &["pub", "content-type", "text/plain"],
                &["publish", "user-property", "a", "2"],
                &["publish", "message-expiry-interval", "30"],
            ]),
            PUB_COMMANDS,
        )
        .unwrap();
        assert_eq!(p.publish.content_type.as_deref(), Some("text/plain"));
        assert_eq!(p.publish.message_expiry_interval, Some(30));
        let names: Vec<_> = p
            .publish
            .user_properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(names, ["b=1", "a=2"]);
    }

    #[test]
    fn refusals_name_the_problem() {
        let err = |list: &[&[&str]]| parse(&words(list), PUB_COMMANDS).unwrap_err();
        assert_eq!(
            err(&[&["publish", "foo", "1"]]),
            "invalid property name 'foo' in -D"
        );
        assert_eq!(
            err(&[&["connect", "topic-alias", "1"]]),
            "topic-alias property not allowed for connect in -D"
        );
        assert_eq!(
            err(&[&["subscribe", "user-property", "a", "b"]]),
            "invalid command 'subscribe' in -D: expected one of connect, publish, will, disconnect"
        );
        assert_eq!(
            err(&[
                &["publish", "content-type", "a"],
                &["publish", "content-type", "b"]
            ]),
            "duplicate property content-type in -D"
        );
        assert_eq!(
            err(&[&["publish", "response-topic", "a/#"]]),
            "invalid response-topic 'a/#': a topic name without '+' or '#'"
        );
        assert_eq!(
            err(&[&["publish", "payload-format-indicator", "2"]]),
            "invalid value '2' for payload-format-indicator: expected 0 or 1"
        );
    }
}
