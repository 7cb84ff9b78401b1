//! `drover-agent`: thin binary over the agent library. Parses flags into a validated
//! configuration, runs one cycle (`--once`) or a loop, and maps the outcome to exit codes.

use std::process::ExitCode;

use clap::Parser;
use drover_agent::config::{AgentConfig, Flags};
use drover_agent::run::{run_cycle, CycleReport};

/// Exit code: every targeted bundle is in place.
const EXIT_OK: u8 = 0;
/// Exit code: at least one bundle failed (others were applied).
const EXIT_BUNDLE_FAILED: u8 = 1;
/// Exit code: bad flags or configuration.
const EXIT_CONFIG: u8 = 2;
/// Exit code: no usable index; nothing was changed.
const EXIT_INDEX_FAILED: u8 = 3;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG").unwrap_or_else(|_| "warn".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cfg = match AgentConfig::from_flags(Flags::parse()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("drover-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drover-agent: cannot start runtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    ExitCode::from(runtime.block_on(run(cfg)))
}

async fn run(cfg: AgentConfig) -> u8 {
    if cfg.once {
        return cycle(&cfg).await;
    }
    loop {
        cycle(&cfg).await;
        tokio::select! {
            _ = tokio::time::sleep(cfg.interval) => {}
            _ = shutdown() => return EXIT_OK,
        }
    }
}

async fn cycle(cfg: &AgentConfig) -> u8 {
    match run_cycle(cfg, time::OffsetDateTime::now_utc()).await {
        Ok(report) => {
            print_report(&report);
            if report.is_success() {
                EXIT_OK
            } else {
                EXIT_BUNDLE_FAILED
            }
        }
        Err(e) => {
            eprintln!("drover-agent: index not applied, nothing changed: {e}");
            EXIT_INDEX_FAILED
        }
    }
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn print_report(report: &CycleReport) {
    println!(
        "channel {} version {} from {}",
        report.channel, report.version, report.origin
    );
    for problem in &report.source_problems {
        println!("  source problem: {problem}");
    }
    for (name, b) in &report.bundles {
        println!(
            "  {:<24} {:<18} {}",
            name.as_str(),
            format!("{:?}", b.status),
            b.message
        );
    }
}
