//! `kube-api-double`: the Kubernetes API test double as a process. Prints
//! `listening on http://ADDR` as its first line on stdout, then serves until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use drover_kube_double::{router, App, Config};

/// A Kubernetes API test double that kubectl and kube-rs accept (plain HTTP, no auth).
#[derive(Debug, Parser)]
#[command(name = "kube-api-double", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
    /// Report Deployments, StatefulSets, DaemonSets, ReplicaSets and Jobs ready or
    /// complete as soon as they are written.
    #[arg(long)]
    auto_ready: bool,
    /// Milliseconds a new CustomResourceDefinition waits before Established=True.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    crd_establish_delay: u64,
    /// With --auto-ready: milliseconds after a workload is written before its ready status
    /// is written, as a separate status write (0: in the same write).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    ready_delay: u64,
    /// Every MS milliseconds another controller writes an annotation on every object in an
    /// ApplySet, moving its resourceVersion (0: never).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    foreign_writer_interval: u64,
    /// Largest request body in bytes, answered 413 past it, as the real apiserver does at
    /// 3145728 (3 MiB). Default: 16 MiB.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    max_request_bytes: usize,
    /// Log every request (method, path, query, status) to stderr.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-api-double: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> std::io::Result<()> {
    let config = Config {
        auto_ready: args.auto_ready,
        crd_establish_delay: Duration::from_millis(args.crd_establish_delay),
        ready_delay: Duration::from_millis(args.ready_delay),
        foreign_writer_interval: Duration::from_millis(args.foreign_writer_interval),
        max_request_bytes: args.max_request_bytes,
        verbose: args.verbose,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let addr = listener.local_addr()?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on http://{addr}")?;
        stdout.flush()?;
        axum::serve(listener, router(App::new(config))).await
    })
}
