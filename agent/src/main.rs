//! `drover-agent`: thin binary over the agent library. Parses flags into a validated
//! configuration, runs one cycle (`--once`) or the daemon loop, and maps the outcome to
//! exit codes.

use std::process::ExitCode;

use clap::Parser;
use drover_agent::config::{AgentConfig, Flags};
use drover_agent::daemon::{self, Agent, Outcome};

/// Exit code: every targeted bundle is in place (or the daemon stopped on SIGTERM).
const EXIT_OK: u8 = 0;
/// Exit code: at least one bundle failed (others were applied).
const EXIT_BUNDLE_FAILED: u8 = 1;
/// Exit code: bad flags or configuration.
const EXIT_CONFIG: u8 = 2;
/// Exit code: no usable index, nothing was changed; or the state directory could not be
/// written (then manifests of this cycle may be in place, the next cycle records them).
const EXIT_INDEX_FAILED: u8 = 3;

/// How long exiting waits for blocking work still running (a `file://` read timed out on a
/// hung mount never ends).
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    let cfg = match AgentConfig::from_flags(Flags::parse()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("drover-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // --once prints its own report on stdout; logs then only carry warnings and errors.
    init_logs(cfg.log_json, if cfg.once { "warn" } else { "drover_agent=info,warn" });
    // One worker thread serves the local listener; cycles run on the main thread, so a
    // long render never delays a health probe.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drover-agent: cannot start runtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let code = runtime.block_on(run(cfg));
    // A read stuck in a hung file system holds a blocking thread for ever; exit anyway.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    ExitCode::from(code)
}

fn init_logs(json: bool, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG").unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

async fn run(cfg: AgentConfig) -> u8 {
    let (once, json) = (cfg.once, cfg.log_json);
    let listen = cfg.listen;
    let (mut agent, sync_requests) = match Agent::new(cfg) {
        Ok(a) => a,
        Err(e) => {
            say(json, &e.to_string());
            return EXIT_CONFIG;
        }
    };
    if once {
        let outcome = agent.cycle().await;
        return exit_code(&outcome, json);
    }
    if let Some(addr) = listen {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                say(
                    json,
                    &format!("cannot listen on {addr}: {e} (set --listen ADDR:PORT or --listen off)"),
                );
                return EXIT_CONFIG;
            }
        };
        match listener.local_addr() {
            Ok(bound) => {
                eprintln!("drover-agent: listening on http://{bound}/ (metrics, healthz, readyz, status, POST sync)")
            }
            Err(e) => eprintln!("drover-agent: listening on {addr} ({e})"),
        }
        tokio::spawn(drover_agent::listener::serve(listener, agent.shared()));
    }
    match daemon::run(agent, sync_requests).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            say(json, &e.to_string());
            EXIT_CONFIG
        }
    }
}

/// A message about why the agent stops: a `drover-agent: …` line on stderr, or with
/// `--log-format json` an error event, so every stderr line stays JSON.
fn say(json: bool, message: &str) {
    if json {
        tracing::error!("{message}");
    } else {
        eprintln!("drover-agent: {message}");
    }
}

fn exit_code(outcome: &Outcome, json: bool) -> u8 {
    match outcome {
        Outcome::Done(report) => {
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
            if report.is_success() {
                EXIT_OK
            } else {
                EXIT_BUNDLE_FAILED
            }
        }
        Outcome::IndexFailed(e @ drover_agent::Error::StateNotSaved { .. }) => {
            say(json, &e.to_string());
            EXIT_INDEX_FAILED
        }
        Outcome::IndexFailed(e) => {
            say(json, &format!("index not applied, nothing changed: {e}"));
            EXIT_INDEX_FAILED
        }
    }
}
