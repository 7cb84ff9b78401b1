//! `drover targets`: which bundle and digest one cluster would get from a store, and why.

use std::path::PathBuf;

use drover_agent::select::{first_match, plan, rollout_bucket, Cluster, Decision};
use drover_agent::verify::VerifiedIndex;
use time::OffsetDateTime;

use crate::error::Result;
use crate::{runtime, store};

/// `drover targets STORE --key … --cluster-name … --label …`: prints the cluster, the index
/// version and one line per bundle.
pub fn run(store: &str, keys: &[PathBuf], cluster: &Cluster, now: OffsetDateTime) -> Result<()> {
    let source = store::open(store)?;
    let verified = runtime::start()?.block_on(store::load_index(&source, keys, now))?;
    println!(
        "cluster {} with labels {:?}, channel {} version {}:",
        cluster.name,
        cluster.labels,
        verified.index().channel,
        verified.index().version
    );
    for line in explain_targets(&verified, cluster) {
        println!("  {line}");
    }
    Ok(())
}

/// One line per bundle: what `cluster` would get from the verified index, and why.
pub fn explain_targets(index: &VerifiedIndex, cluster: &Cluster) -> Vec<String> {
    plan(index, cluster)
        .into_iter()
        .map(|item| {
            let b = item.bundle;
            let why = |t: usize| store::describe_target(&b.targets[t]);
            let percent = b.rollout.map_or(100, |r| r.percent);
            let line = match &item.decision {
                Decision::Deploy(c) => match &c.outside_wave {
                    None if percent < 100 => format!(
                        "deploy {} (targets[{}]: {}; in the {percent}% wave, bucket {})",
                        c.digest,
                        c.target,
                        why(c.target),
                        rollout_bucket(&cluster.name, &b.name)
                    ),
                    None => format!("deploy {} (targets[{}]: {})", c.digest, c.target, why(c.target)),
                    Some(wave) => format!(
                        "deploy previous {} (targets[{}]: {}; outside the {}% wave, bucket {}; the wave gets {})",
                        c.digest,
                        c.target,
                        why(c.target),
                        wave.percent,
                        wave.bucket,
                        wave.wave_digest
                    ),
                },
                Decision::NotTargeted => match first_match(&b.targets, cluster) {
                    Some(c) => format!("not deployed: targets[{}] ({}) is doNotDeploy", c.target, why(c.target)),
                    None => "not deployed: no target matches".to_string(),
                },
                Decision::Paused { would_get } => format!(
                    "paused: keeps what it has (targets[{}] would give {})",
                    would_get.target, would_get.digest
                ),
                Decision::OutsideRollout {
                    bucket,
                    percent,
                    would_get,
                } => format!(
                    "outside rollout: bucket {bucket} >= {percent}%, keeps what it has, nothing if new (wave gets {}; the index names no previous blob)",
                    would_get.digest
                ),
                Decision::Invalid(problem) => format!("error: {problem}"),
            };
            let deps = if b.depends_on.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = b.depends_on.iter().map(|d| d.as_str()).collect();
                format!(" [dependsOn: {}]", names.join(", "))
            };
            format!("{:<24} {line}{deps}", b.name.as_str())
        })
        .collect()
}
