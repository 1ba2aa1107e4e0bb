//! `tern bench`: a load generator that counts exactly.
//!
//! Scenarios (see [`Scenario`]): `conn` opens and holds connections; `subscribe` measures
//! subscription set-up and tear-down; `pub` and `sub` are one side each; `fanin`, `fanout`,
//! `p2p`, `churn` (p2p while other clients subscribe and unsubscribe), `shared` and `wildcard`
//! run both sides in this process,
//! so that every message can be accounted for: each payload starts with the publisher's index,
//! a sequence number and the send time on the run's monotonic clock, and every subscriber
//! knows from the topic rules which messages it should receive. The report gives sent,
//! acknowledged, received, expected, lost, duplicates, out of order, errors by kind, latency
//! percentiles (HDR histogram), connection figures and the load generator's own CPU time, as
//! a table or, with `--json`, as one JSON object whose fields are documented in [`report`].
//!
//! Every client can connect over TLS (`--cafile`/`--capath`, `--cert`/`--key`, `--insecure`,
//! `--tls-version`: the flags of `tern pub`, with session resumption off so that each
//! connection makes a full handshake) and log in (`-u`, `-P`; `%i` in the user name is the
//! client's index in its role, modulo `--users`).
//!
//! Every run is bounded: a count and a time limit for publishing, a bounded drain, and time
//! limits on every connection and subscription. Exit status: 0 when the run completed, 1 when
//! nothing could connect (or subscribe) or when `--fail-on-loss` finds loss, 2 on bad flags.
//!
//! Module map: [`args`] (flags and their validation), `scenarios` (clients and phases),
//! `counting` (sequence sets, expected deliveries, errors), `latency` (histograms),
//! `progress` (the live line), [`report`] (table and JSON), `payload` (clock and header),
//! `subscribe` (the `subscribe` scenario and the churners of `churn`, with their own JSON).

use std::process::ExitCode;

pub mod args;
mod counting;
mod latency;
mod payload;
mod progress;
pub mod report;
mod scenarios;
mod subscribe;

pub use args::{BenchArgs, Scenario};

use args::Plan;
use report::{CpuTime, Report};

/// Runs `tern bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let plan = match Plan::from_args(args) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    if plan.scenario == Scenario::Subscribe {
        return subscribe::run(&plan);
    }
    let cpu_before = CpuTime::now();
    let runtime = runtime(&plan)?;
    let outcome = runtime.block_on(scenarios::run(plan.clone()))?;
    drop(runtime);
    let cpu = CpuTime::now().since(cpu_before);
    let report = Report::new(&plan, &outcome, cpu);
    if plan.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if plan.fail_on_loss && !report.passed {
        eprintln!(
            "tern bench: failed: {} lost, {} duplicates, {} unexpected (QoS {})",
            report.lost, report.duplicates, report.unexpected, report.qos
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The load generator's runtime: `--threads` workers, or one per core.
fn runtime(plan: &Plan) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = plan.threads {
        builder.worker_threads(threads);
    }
    builder
        .enable_all()
        .thread_name("tern-bench")
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}
