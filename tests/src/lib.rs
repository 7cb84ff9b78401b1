//! Shared helpers for drover's end-to-end tests: the real `drover` and `drover-agent`
//! binaries, real `minisign` and real `nginx`, in temporary directories on free ports.
//!
//! The binaries must be built first (`cargo build --workspace --bins`; `tests/run.sh`
//! does it). A missing external component fails the test with a message saying how to
//! install it; nothing is skipped silently.
//!
//! One module per thing a test drives; everything a test needs is re-exported here. A
//! test runs the agent only through [`AgentRun`] (one cycle, a daemon, a run killed at
//! some point) and kubectl only through [`Kubectl`], so a flag or an isolation setting is
//! added in one place:
//!
//! - [`agent`], [`agent_daemon`], [`static_agent`](mod@static_agent): the agent under test;
//! - [`site`], [`versions`], [`publisher`], [`minisign`]: what the publisher side makes;
//! - [`kube_api`], [`kubectl`], [`applyset`]: the Kubernetes API double, stock kubectl,
//!   ApplySet ids computed from the KEP;
//! - [`nginx`](mod@nginx), [`registry`], [`faulty`], [`pki`], [`net`]: the servers a store is read from;
//! - [`process`], [`fsutil`], [`tmpfs`]: running programs, files, a disk that can be filled;
//! - [`kill`]: aiming SIGKILLs at a window of the agent's work.

pub mod agent;
pub mod agent_daemon;
pub mod applyset;
pub mod faulty;
pub mod foreign;
pub mod fsutil;
pub mod kill;
pub mod kube_api;
pub mod kubectl;
pub mod minisign;
pub mod net;
pub mod nginx;
pub mod pki;
pub mod process;
pub mod publisher;
pub mod registry;
pub mod site;
pub mod static_agent;
pub mod tmpfs;
pub mod versions;

pub use agent::{AgentRun, Ended};
pub use agent_daemon::AgentDaemon;
pub use applyset::applyset_id;
pub use faulty::{Behaviour, FaultyServer};
pub use fsutil::{assert_tombstone, copy_dir, repo_root, restore, sha256_hex, snapshot, stamp, stamps, Stamp};
pub use kill::{KillSearch, Landing};
pub use kube_api::KubeApi;
pub use kubectl::{kustomize, Kubectl};
pub use minisign::minisign_sign;
pub use net::{down_port, free_port, http, log_since, mark_log, DownPort};
pub use nginx::{access_log, nginx, nginx_on};
pub use pki::test_pki;
pub use process::{bin, require, run, text, wait_for, Daemon};
pub use publisher::{drover, drover_ok, drover_serve};
pub use registry::Registry;
pub use site::Site;
pub use static_agent::static_agent;
pub use tmpfs::Tmpfs;
pub use versions::Versions;
