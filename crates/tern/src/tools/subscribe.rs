//! `tern sub`: subscribes and prints every message until `-C` messages, `-W` seconds, a
//! signal (SIGINT/SIGTERM: DISCONNECT, exit 0) or the end of the connection.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use tern_client::Event;
use tern_client::tern_codec::{Publish, QoS, SubscriptionOptions, is_valid_topic_filter};

use super::common::{
    self, ConnArgs, EXIT_ERROR, EXIT_TIMEOUT, Failure, Session, StopSignals, block_on, parse_qos,
};
use super::format;
use super::properties::{self, SUB_COMMANDS};

/// Flags of `tern sub` (Mosquitto's `mosquitto_sub`).
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    args_override_self = true,
    after_help = "Output: the payload of each message (-v: `TOPIC PAYLOAD`; an empty payload \
        prints `TOPIC (null)` with -v and nothing without), or -F FORMAT with Mosquitto's codes: \
        %t topic, %p payload, %x/%X payload in hex, %l length, %q QoS, %r retain, %m packet id, \
        %j JSON, %I ISO 8601 time, %U Unix time, %A %C %D %E %F %P %R %S MQTT 5 properties \
        (topic alias, content type, correlation data, expiry, format indicator, user properties, \
        response topic, subscription ids), @Y @m @d @H @M @S @s @N time parts (UTC), \\n \\t \
        escapes, and widths such as %-10t or %.5p.\n\n\
        Exit status: 0 after -C messages, -E, --retained-only's end or SIGINT/SIGTERM; 27 when \
        -W expires; the CONNACK code when the broker refuses the connection (MQTT 3.x return \
        code, MQTT 5 reason code, e.g. 135 for Not authorized); 1 when the connection is lost \
        or every subscription is refused; 2 on bad flags."
)]
pub struct SubArgs {
    /// Topic filter to subscribe to (repeatable).
    #[arg(short = 't', long = "topic", value_name = "FILTER", required = true)]
    topics: Vec<String>,

    /// Do not print messages whose topic matches this filter (repeatable).
    #[arg(short = 'T', long = "filter-out", value_name = "FILTER")]
    filter_out: Vec<String>,

    /// Unsubscribe from this filter after subscribing (repeatable): ends subscriptions of a
    /// persistent session.
    #[arg(short = 'U', long = "unsubscribe", value_name = "FILTER")]
    unsubscribe: Vec<String>,

    /// Maximum QoS of the subscriptions.
    #[arg(
        short = 'q',
        long = "qos",
        value_name = "QOS",
        default_value = "0",
        value_parser = parse_qos
    )]
    qos: QoS,

    /// Print the topic before the payload.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,

    /// Do not print a newline after each message.
    #[arg(short = 'N')]
    no_eol: bool,

    /// Output format (see below).
    #[arg(short = 'F', value_name = "FORMAT")]
    format: Option<String>,

    /// Exit after printing this many messages.
    #[arg(short = 'C', value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// Exit with status 27 if not finished this many seconds after connecting.
    #[arg(short = 'W', value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,

    /// Do not print stale messages (those with the retain flag set).
    #[arg(short = 'R', conflicts_with = "retained_only")]
    no_stale: bool,

    /// Print only retained messages; exit at the first message that is not retained.
    #[arg(long = "retained-only")]
    retained_only: bool,

    /// Exit once the subscriptions are acknowledged.
    #[arg(short = 'E')]
    exit_after_subscribe: bool,

    /// MQTT 5: ask the broker to keep the publisher's retain flag on forwarded messages.
    #[arg(long = "retain-as-published")]
    retain_as_published: bool,

    #[command(flatten)]
    conn: ConnArgs,
}

/// Runs `tern sub`.
pub fn run(args: SubArgs) -> anyhow::Result<ExitCode> {
    let quiet = args.conn.quiet;
    Ok(common::finish(block_on(subscribe(args)), quiet))
}

async fn subscribe(args: SubArgs) -> Result<(), Failure> {
    let props = properties::parse(&args.conn.properties, SUB_COMMANDS)
        .map_err(|e| Failure::usage("sub", e))?;
    for filter in args
        .topics
        .iter()
        .chain(&args.filter_out)
        .chain(&args.unsubscribe)
    {
        if !is_valid_topic_filter(filter) {
            return Err(Failure::usage(
                "sub",
                format!(
                    "invalid subscription topic '{filter}': are all '+' and '#' wildcards correct?"
                ),
            ));
        }
    }
    let (options, client_id) = args.conn.options("sub", &props)?;
    let mut stop = StopSignals::install()?;
    let mut session = tokio::select! {
        session = args.conn.connect(&options, client_id, &props) => session?,
        () = stop.recv() => return Ok(()),
    };
    let deadline = args
        .timeout
        .map(|secs| tokio::time::Instant::now() + Duration::from_secs(secs));

    let outcome = tokio::select! {
        outcome = receive(&args, &props, &mut session) => outcome,
        () = stop.recv() => Ok(()),
        () = sleep_until(deadline) => Err(Failure::new(EXIT_TIMEOUT, "Timed out")),
    };
    session.disconnect().await;
    outcome
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Subscribes, then prints messages until the count is reached; `Ok` means "exit 0".
async fn receive(
    args: &SubArgs,
    props: &properties::Properties,
    session: &mut Session,
) -> Result<(), Failure> {
    let v5 = args.conn.version.is_v5();
    let sub_options = SubscriptionOptions {
        qos: args.qos,
        retain_as_published: args.retain_as_published && v5,
        ..SubscriptionOptions::default()
    };
    let filters: Vec<(&str, SubscriptionOptions)> = args
        .topics
        .iter()
        .map(|t| (t.as_str(), sub_options))
        .collect();
    if session.debug {
        for (filter, _) in &filters {
            eprintln!(
                "Client {} sending SUBSCRIBE (Topic: {filter}, QoS: {})",
                session.client_id, args.qos as u8
            );
        }
    }
    let sub_props = if v5 {
        props.subscribe.clone()
    } else {
        Default::default()
    };
    let suback = session
        .client
        .subscribe_with(&filters, sub_props)
        .await
        .map_err(|e| Failure::lost(&e))?;
    if session.debug {
        eprintln!("Client {} received SUBACK", session.client_id);
        let granted: Vec<String> = suback.reasons.iter().map(|r| r.0.to_string()).collect();
        eprintln!(
            "Subscribed (mid: {}): {}",
            suback.packet_id,
            granted.join(", ")
        );
    }
    for ((filter, _), reason) in filters.iter().zip(&suback.reasons) {
        if reason.is_error() && !session.quiet {
            eprintln!(
                "Subscription to '{filter}' refused: {}",
                if v5 {
                    reason.to_string()
                } else {
                    "Failure (0x80)".to_owned()
                }
            );
        }
    }
    if suback.reasons.iter().all(|r| r.is_error()) {
        return Err(Failure::new(
            EXIT_ERROR,
            "All subscription requests were denied.",
        ));
    }
    if !args.unsubscribe.is_empty() {
        let filters: Vec<&str> = args.unsubscribe.iter().map(String::as_str).collect();
        if session.debug {
            eprintln!(
                "Client {} sending UNSUBSCRIBE ({})",
                session.client_id,
                filters.join(", ")
            );
        }
        let reasons = session
            .client
            .unsubscribe(&filters)
            .await
            .map_err(|e| Failure::lost(&e))?;
        if session.debug {
            eprintln!("Client {} received UNSUBACK", session.client_id);
        }
        for (filter, reason) in filters.iter().zip(&reasons) {
            if reason.is_error() && !session.quiet {
                eprintln!("Unsubscribe from '{filter}' refused: {reason}");
            }
        }
    }
    if args.exit_after_subscribe {
        return Ok(());
    }

    let mut printed = 0u64;
    let mut out = Vec::new();
    loop {
        let event = session
            .client
            .next_event()
            .await
            .map_err(|e| Failure::lost(&e))?;
        let Event::Message(message) = event else {
            continue;
        };
        let id = message.packet_id.map(|id| id.get());
        session.debug_publish("received", &message, id);
        if args.retained_only && !message.retain {
            return Ok(());
        }
        if args.no_stale && message.retain {
            continue;
        }
        if args
            .filter_out
            .iter()
            .any(|f| topic_matches(f, &message.topic))
        {
            continue;
        }
        out.clear();
        print(args, &message, &mut out);
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout.write_all(&out).and_then(|()| stdout.flush()) {
            // A closed pipe (`tern sub ... | head -1`) ends the program quietly.
            let message = if e.kind() == std::io::ErrorKind::BrokenPipe {
                String::new()
            } else {
                format!("Error: cannot write the output: {e}")
            };
            return Err(Failure::new(EXIT_ERROR, message));
        }
        printed += 1;
        if args.count == Some(printed) {
            return Ok(());
        }
    }
}

fn print(args: &SubArgs, message: &Publish, out: &mut Vec<u8>) {
    match &args.format {
        Some(f) => format::render(f, message, SystemTime::now(), !args.no_eol, out),
        None => format::plain(message, args.verbose, !args.no_eol, out),
    }
}

/// Whether `topic` matches `filter` (wildcards `+` and `#`; topics starting with `$` are not
/// matched by a wildcard in the first level).
fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut levels = topic.split('/');
    for part in filter.split('/') {
        match part {
            "#" => return true,
            "+" => {
                if levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn filters_match_as_the_specification_says() {
        assert!(topic_matches("a/b", "a/b"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(topic_matches("a/+", "a/b"));
        assert!(topic_matches("a/+", "a/"));
        assert!(!topic_matches("a/+", "a"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "a/b"));
        assert!(!topic_matches("#", "$SYS/x"));
        assert!(!topic_matches("+/x", "$SYS/x"));
        assert!(topic_matches("$SYS/#", "$SYS/x"));
        assert!(topic_matches("+/+", "/b"));
    }
}
