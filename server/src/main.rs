//! `drover`: the publisher CLI. Thin: parse flags, call the library, map errors to exit
//! codes (0 success, 1 failure, 2 usage). `drover status` refines them: 1 means the fleet
//! needs attention, 3 that no fleet view could be made (see docs/fleet-status.md).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use drover::fleet_status;
use drover::publish::{PublishOptions, DEFAULT_EXPIRES_IN};
use drover_agent::config::{parse_duration, parse_label};
use drover_agent::format::rfc3339;
use drover_agent::select::Cluster;
use time::OffsetDateTime;

/// `drover status`: the view was made, but a cluster is stale, a bundle is in Error or a
/// report is unusable.
const EXIT_STATUS_ATTENTION: u8 = 1;
/// `drover status`: no view could be made (source unreadable, or no reports in it).
const EXIT_STATUS_NO_VIEW: u8 = 3;
/// Stale clusters, bundle errors and problems shown in the table (JSON lists all).
const STATUS_LIST_LIMIT: usize = 20;

#[derive(Parser)]
#[command(name = "drover", version, about = "Publish, verify and serve signed drover stores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a minisign key pair: DIR/drover.key (secret, unencrypted) and DIR/drover.pub.
    Keygen {
        /// Directory for the key files.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Build SRC/bundles/<name>/ into signed, content-addressed STORE files.
    Publish {
        /// Directory holding bundles/<name>/.
        src: PathBuf,
        /// Store directory to write (created if missing).
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        /// Secret key (drover keygen, or minisign -G -W).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Channel name written into the index.
        #[arg(long, default_value = "stable")]
        channel: String,
        /// How long agents accept this index (e.g. 30d, 12h). Re-publish before it runs out.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Check a store's signature, expiry and every referenced blob.
    Verify {
        /// Store directory, or http(s):// / file:// URL.
        store: String,
        /// Trusted public key; repeat for several.
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
    },
    /// Serve a store directory over HTTP (ETag, 304 on If-None-Match).
    Serve {
        /// Store directory.
        store: PathBuf,
        /// Address to listen on; port 0 picks a free port (the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Show which bundle and digest a cluster would get, and why.
    Targets {
        /// Store directory, or http(s):// / file:// URL.
        store: String,
        /// Trusted public key; repeat for several.
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
        /// The cluster's name.
        #[arg(long)]
        cluster_name: String,
        /// A cluster label KEY=VALUE; repeat for several.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Fleet view from the agents' status reports: clusters per bundle, digest and state,
    /// stale clusters, bundle errors. Exit 0: all well; 1: something needs attention; 3: no
    /// view (source unreadable or empty).
    Status {
        /// Report directory, or http(s):// URL of a directory listing (nginx autoindex).
        source: String,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// A cluster is stale when its last check-in is older than this (e.g. 15m, 2h, 1d).
        /// Default per report: its heartbeat (reportIntervalSeconds, else 10m) + 3 × its
        /// intervalSeconds, at least 5m; 13m for agents with default settings.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        stale_after: Option<Duration>,
        /// Measure staleness against this RFC 3339 time instead of the clock (tests).
        #[arg(long, hide = true, value_parser = parse_time)]
        now: Option<OffsetDateTime>,
    },
}

/// Output formats of `drover status`.
#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// Aligned columns for people.
    Table,
    /// The whole aggregation, for scripts.
    Json,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drover: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let now = time::OffsetDateTime::now_utc();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    };
    match cli.command {
        Command::Keygen { out } => {
            let (sk, pk) = drover::keygen::keygen(&out)?;
            println!("secret key: {} (keep it off the clusters)", sk.display());
            println!("public key: {} (give it to every agent with --key)", pk.display());
        }
        Command::Publish {
            src,
            store,
            key,
            channel,
            expires_in,
        } => {
            let opts = PublishOptions {
                src,
                store: store.clone(),
                key,
                channel: channel.clone(),
                expires_in: expires_in.unwrap_or(DEFAULT_EXPIRES_IN),
            };
            let s = drover::publish::publish(&opts, now)?;
            println!(
                "published channel {channel} version {} to {} ({} bundles; {} new blobs, {} unchanged; expires {})",
                s.version,
                store.display(),
                s.bundles,
                s.blobs_written.len(),
                s.blobs_reused,
                rfc3339(s.expires)
            );
        }
        Command::Verify { store, keys } => {
            let (verified, blobs) = runtime()?.block_on(drover::store::verify_store(&store, &keys, now))?;
            let index = verified.index();
            println!(
                "ok: channel {} version {} expires {}; signature valid; {} bundles, {} blobs verified",
                index.channel,
                index.version,
                rfc3339(index.expires),
                index.bundles.len(),
                blobs
            );
        }
        Command::Serve { store, listen } => {
            let rt = runtime()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                let addr = listener.local_addr()?;
                anyhow::ensure!(
                    store.join(drover_agent::format::INDEX_FILE).is_file(),
                    "{}: no index.json here; run drover publish first",
                    store.display()
                );
                println!("serving {} on http://{addr}/", store.display());
                drover::serve::serve(store, listener).await?;
                Ok(())
            })?;
        }
        Command::Targets {
            store,
            keys,
            cluster_name,
            labels,
        } => {
            let source = drover::store::open(&store)?;
            let verified = runtime()?.block_on(drover::store::load_index(&source, &keys, now))?;
            let cluster = Cluster {
                name: cluster_name,
                labels: labels.into_iter().collect(),
            };
            println!(
                "cluster {} with labels {:?}, channel {} version {}:",
                cluster.name,
                cluster.labels,
                verified.index().channel,
                verified.index().version
            );
            for line in drover::store::explain_targets(&verified, &cluster) {
                println!("  {line}");
            }
        }
        Command::Status {
            source,
            output,
            stale_after,
            now: at,
        } => {
            let read = runtime().and_then(|rt| Ok(rt.block_on(fleet_status::read_reports(&source))?));
            let reports = match read {
                Ok(reports) => reports,
                Err(e) => {
                    eprintln!("drover: {e:#}");
                    return Ok(ExitCode::from(EXIT_STATUS_NO_VIEW));
                }
            };
            let opts = fleet_status::Options {
                now: at.unwrap_or(now),
                stale_after,
            };
            let fleet = fleet_status::aggregate(reports, &opts);
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            match output {
                Output::Table => stdout.write_all(fleet.render_table(STATUS_LIST_LIMIT).as_bytes())?,
                Output::Json => {
                    serde_json::to_writer_pretty(&mut stdout, &fleet)?;
                    stdout.write_all(b"\n")?;
                }
            }
            stdout.flush()?;
            eprint!("{}", fleet.render_problems(STATUS_LIST_LIMIT));
            if fleet.needs_attention() {
                return Ok(ExitCode::from(EXIT_STATUS_ATTENTION));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
