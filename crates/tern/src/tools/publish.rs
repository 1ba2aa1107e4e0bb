//! `tern pub`: publishes one message (`-m`, `-f`, `-s`, `-n`, repeated with `--repeat`) or one
//! per line of standard input (`-l`), then disconnects.
//!
//! QoS 1 and 2 messages are pipelined up to `-M` in flight; the exit status is 1 if the broker
//! refused any of them (an MQTT 5 PUBACK/PUBREC error, printed in words).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{ArgGroup, Args};
use tern_client::Event;
use tern_client::tern_codec::{ByteString, PublishProperties, QoS, is_valid_topic_name};

use super::common::{
    self, ConnArgs, EXIT_ERROR, Failure, Session, StopSignals, block_on, parse_qos,
};
use super::properties::{self, PUB_COMMANDS};

/// Flags of `tern pub` (Mosquitto's `mosquitto_pub`).
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    args_override_self = true,
    group(ArgGroup::new("source").required(true).multiple(false)),
    after_help = "Exit status: 0 when every message was sent (and acknowledged at QoS 1/2); \
        the CONNACK code when the broker refuses the connection (MQTT 3.x return code, \
        MQTT 5 reason code, e.g. 135 for Not authorized); 1 on any other failure; 2 on bad flags."
)]
pub struct PubArgs {
    /// Topic to publish to.
    #[arg(short = 't', long = "topic", value_name = "TOPIC", required = true)]
    topic: String,

    /// The message.
    #[arg(
        short = 'm',
        long = "message",
        value_name = "MESSAGE",
        group = "source"
    )]
    message: Option<String>,

    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file", value_name = "FILE", group = "source")]
    file: Option<PathBuf>,

    /// Send each line of standard input as a message (empty lines are zero-length messages).
    #[arg(short = 'l', long = "stdin-line", group = "source")]
    stdin_line: bool,

    /// Send the whole of standard input as one message.
    #[arg(short = 's', long = "stdin-file", group = "source")]
    stdin_file: bool,

    /// Send a zero-length message (with -r: clears the retained message).
    #[arg(short = 'n', long = "null-message", group = "source")]
    null_message: bool,

    /// QoS of the messages.
    #[arg(
        short = 'q',
        long = "qos",
        value_name = "QOS",
        default_value = "0",
        value_parser = parse_qos
    )]
    qos: QoS,

    /// Retain the messages.
    #[arg(short = 'r', long = "retain")]
    retain: bool,

    /// Publish the message N times (not with -l).
    #[arg(long = "repeat", value_name = "N", default_value_t = 1, conflicts_with = "stdin_line",
          value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,

    /// Seconds to wait between repeated messages (fractions allowed).
    #[arg(
        long = "repeat-delay",
        value_name = "SECONDS",
        default_value_t = 0.0,
        requires = "repeat"
    )]
    repeat_delay: f64,

    /// Most QoS 1/2 messages in flight at once.
    #[arg(short = 'M', long = "max-inflight", value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u16).range(1..))]
    max_inflight: u16,

    #[command(flatten)]
    conn: ConnArgs,
}

/// Runs `tern pub`.
pub fn run(args: PubArgs) -> anyhow::Result<ExitCode> {
    let quiet = args.conn.quiet;
    Ok(common::finish(block_on(publish(args)), quiet))
}

/// Where the messages come from, read as far as possible before connecting.
enum Source {
    /// One payload, sent `repeat` times.
    Once(Bytes),
    /// One message per line of standard input.
    Lines,
}

async fn publish(args: PubArgs) -> Result<(), Failure> {
    let props = properties::parse(&args.conn.properties, PUB_COMMANDS)
        .map_err(|e| Failure::usage("pub", e))?;
    if !is_valid_topic_name(&args.topic) {
        return Err(Failure::usage(
            "pub",
            format!(
                "invalid publish topic '{}': it must not contain '+' or '#'",
                args.topic
            ),
        ));
    }
    if !args.repeat_delay.is_finite() || args.repeat_delay < 0.0 {
        return Err(Failure::usage(
            "pub",
            "--repeat-delay must be a number of seconds",
        ));
    }
    let source = if let Some(m) = &args.message {
        Source::Once(Bytes::from(m.clone()))
    } else if let Some(path) = &args.file {
        let data = std::fs::read(path).map_err(|e| {
            Failure::new(
                EXIT_ERROR,
                format!("Error: cannot read {}: {e}", path.display()),
            )
        })?;
        Source::Once(Bytes::from(data))
    } else if args.stdin_file {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data).map_err(|e| {
            Failure::new(
                EXIT_ERROR,
                format!("Error: cannot read standard input: {e}"),
            )
        })?;
        Source::Once(Bytes::from(data))
    } else if args.stdin_line {
        Source::Lines
    } else {
        Source::Once(Bytes::new())
    };
    let (options, client_id) = args.conn.options("pub", &props)?;
    let mut stop = StopSignals::install()?;
    let session = tokio::select! {
        session = args.conn.connect(&options, client_id, &props) => session?,
        () = stop.recv() => return Ok(()),
    };
    let mut publisher = Publisher {
        session,
        topic: ByteString::from(args.topic.as_str()),
        qos: args.qos,
        retain: args.retain,
        properties: if args.conn.version.is_v5() {
            props.publish
        } else {
            PublishProperties::default()
        },
        alias_sent: false,
        pending: HashMap::new(),
        failed: 0,
    };
    publisher
        .session
        .client
        .limit_inflight(usize::from(args.max_inflight));

    let sent = tokio::select! {
        result = publisher.send_all(source, args.repeat, args.repeat_delay) => Some(result),
        () = stop.recv() => None,
    };
    let interrupted = |pending: usize| {
        Failure::new(
            EXIT_ERROR,
            format!("Interrupted with {pending} messages not acknowledged"),
        )
    };
    let result = match sent {
        Some(Ok(())) => tokio::select! {
            result = publisher.wait_acknowledged() => result,
            () = stop.recv() => Err(interrupted(publisher.pending.len())),
        },
        Some(Err(e)) => Err(e),
        None if publisher.pending.is_empty() => Ok(()),
        None => Err(interrupted(publisher.pending.len())),
    };
    let failed = publisher.failed;
    publisher.session.disconnect().await;
    result?;
    if failed > 0 {
        // Each refusal has been printed already.
        return Err(Failure::new(EXIT_ERROR, ""));
    }
    Ok(())
}

/// The lines of standard input (without their `\n`), read by a thread of their own so that
/// a pending read never holds up the end of the program.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            let item = match std::io::BufRead::read_until(&mut input, b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    Ok(line)
                }
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    rx
}

struct Publisher {
    session: Session,
    topic: ByteString,
    qos: QoS,
    retain: bool,
    properties: PublishProperties,
    /// Whether the topic alias of `-D publish topic-alias` is established, so that the
    /// following messages can leave the topic empty.
    alias_sent: bool,
    /// QoS of each message in flight, by packet identifier.
    pending: HashMap<u16, QoS>,
    /// Messages the broker refused.
    failed: usize,
}

impl Publisher {
    async fn send_all(&mut self, source: Source, repeat: u32, delay: f64) -> Result<(), Failure> {
        match source {
            Source::Once(payload) => {
                for i in 0..repeat {
                    if i > 0 && delay > 0.0 {
                        self.idle(Duration::from_secs_f64(delay)).await?;
                    }
                    self.send(payload.clone()).await?;
                }
            }
            Source::Lines => {
                let mut lines = stdin_lines();
                loop {
                    // While waiting for input, keep the connection alive and collect the
                    // acknowledgements.
                    let line = tokio::select! {
                        line = lines.recv() => line,
                        event = self.session.client.next_event() => {
                            let event = event.map_err(|e| Failure::lost(&e))?;
                            self.handle(event);
                            continue;
                        }
                    };
                    match line {
                        None => break,
                        Some(Ok(line)) => self.send(Bytes::from(line)).await?,
                        Some(Err(e)) => {
                            return Err(Failure::new(
                                EXIT_ERROR,
                                format!("Error: cannot read standard input: {e}"),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn send(&mut self, payload: Bytes) -> Result<(), Failure> {
        let mut topic = self.topic.clone();
        if self.properties.topic_alias.is_some() {
            if self.alias_sent {
                topic = ByteString::new();
            }
            self.alias_sent = true;
        }
        let publish = tern_client::tern_codec::Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic,
            packet_id: None,
            properties: self.properties.clone(),
            payload,
        };
        let mut shown = publish.clone();
        shown.topic = self.topic.clone();
        let id = self
            .session
            .client
            .send_publish(publish)
            .await
            .map_err(|e| Failure::lost(&e))?;
        self.session
            .debug_publish("sending", &shown, id.map(|id| id.get()));
        if let Some(id) = id {
            self.pending.insert(id.get(), self.qos);
        }
        while let Some(event) = self.session.client.take_event() {
            self.handle(event);
        }
        Ok(())
    }

    /// Waits `duration` while answering the broker.
    async fn idle(&mut self, duration: Duration) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Ok(()),
                event = self.session.client.next_event() => {
                    self.handle(event.map_err(|e| Failure::lost(&e))?);
                }
            }
        }
    }

    async fn wait_acknowledged(&mut self) -> Result<(), Failure> {
        while !self.pending.is_empty() {
            let event = self
                .session
                .client
                .next_event()
                .await
                .map_err(|e| Failure::lost(&e))?;
            self.handle(event);
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) {
        let Event::Acked { packet_id, reason } = event else {
            return;
        };
        let Some(qos) = self.pending.remove(&packet_id.get()) else {
            return;
        };
        if self.session.debug {
            let packet = match (qos, reason.is_error()) {
                (QoS::ExactlyOnce, false) => "PUBCOMP",
                (QoS::ExactlyOnce, true) => "PUBREC",
                _ => "PUBACK",
            };
            eprintln!(
                "Client {} received {packet} (Mid: {packet_id}, RC:{})",
                self.session.client_id, reason.0
            );
        }
        if reason.is_error() {
            self.failed += 1;
            if !self.session.quiet {
                eprintln!("Publish {packet_id} on '{}' refused: {reason}", self.topic);
            }
        }
    }
}
