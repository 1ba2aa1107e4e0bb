//! What the store reported durable survives a kill -9 of the process writing it.
//!
//! The test runs itself as a child process (the `crash_child` test, enabled by an environment
//! variable) that writes retained messages and deliveries and prints each group's last number
//! once durable; the parent kills it with SIGKILL at a varying moment, reopens the store, and
//! checks everything reported durable is there, three times on the same store.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tern_core::{DeliveryState, Durability, Store, StoreOp};
use util::*;

const CHILD_ENV: &str = "TERN_STORE_CRASH_CHILD";

#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var("TERN_STORE_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let (store, _) = open(std::path::Path::new(&dir));
    let mut i = start;
    let mut l = store.submit(session("c"));
    loop {
        for _ in 0..50 {
            i += 1;
            let m = message(&format!("t/{i}"), &format!("payload {i}"));
            store.submit(StoreOp::PutRetained(m.clone()));
            l = store.submit(delivery("c", i, &m, DeliveryState::Queued));
        }
        assert_eq!(settle(&store, l), Durability::Durable);
        println!("durable {i}");
    }
}

#[test]
fn what_was_reported_durable_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut durable = 0u64;
    for round in 0..3u64 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("TERN_STORE_CRASH_START", durable.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        let target = 20 + round * 17;
        let mut seen = 0;
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("durable ") {
                durable = n.parse().unwrap();
                seen += 1;
                if seen == target {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the child made no progress");
        }
        // SIGKILL while it is writing.
        child.kill().unwrap();
        child.wait().unwrap();

        let (store, snap) = open(dir.path());
        for i in 1..=durable {
            let topic = format!("t/{i}");
            let m = snap
                .retained
                .iter()
                .find(|m| m.topic == bs(&topic))
                .unwrap_or_else(|| panic!("round {round}: retained {i} of {durable} lost"));
            assert_eq!(&m.payload[..], format!("payload {i}").as_bytes());
        }
        let c = &snap.sessions[0];
        assert!(
            c.deliveries.len() as u64 >= durable,
            "round {round}: deliveries lost"
        );
        assert!(
            c.deliveries.windows(2).all(|w| w[0].seq + 1 == w[1].seq),
            "a gap in the deliveries"
        );
        // Whatever got in beyond what was reported is whole, and the next round continues after it.
        durable = c.deliveries.last().map_or(0, |d| d.seq);
        assert!(snap.retained.len() as u64 >= durable);
        store.close().unwrap();
    }
}
