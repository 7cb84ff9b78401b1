//! `drover diff STORE_A STORE_B`: what changes between two publishes, per bundle and per
//! target.
//!
//! A store does not know its fleet, so "how many clusters" cannot be counted from it. The
//! diff counts what the store does know: bundles, and targets (each target is a group of
//! clusters chosen by a selector or a name) whose blob changes. Targets are matched
//! across the two indexes by their selector and cluster name; `drover targets` answers for
//! one cluster, and `drover status` counts clusters from their reports.
//!
//! The indexes are read, checked for form, but not verified: a diff is a review of two
//! stores, not a decision to trust one (`drover verify` does that).

use std::collections::BTreeSet;

use drover_agent::format::{Bundle, Index, Target};
use drover_agent::source::Source;

use crate::error::Result;
use crate::runtime;
use crate::store::{self, describe_target};

/// `drover diff STORE_A STORE_B`: reads both indexes and prints what changes.
pub fn run(store_a: &str, store_b: &str) -> Result<()> {
    let (a, b) = (store::open(store_a)?, store::open(store_b)?);
    let rt = runtime::start()?;
    let a = rt.block_on(read_index(&a))?;
    let b = rt.block_on(read_index(&b))?;
    println!(
        "{store_a} (version {}) -> {store_b} (version {}):",
        a.version, b.version
    );
    print!("{}", diff(&a, &b).render());
    Ok(())
}

/// Reads the index of `source` without verifying its signature (see the module docs).
pub async fn read_index(source: &Source) -> Result<Index> {
    let raw = source.fetch_index().await?;
    Ok(Index::parse(&raw.bytes, &raw.origin)?)
}

/// What changed between two indexes.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    /// One entry per bundle in either index that differs, in name order.
    pub bundles: Vec<BundleDiff>,
    /// Bundles in both indexes, unchanged.
    pub unchanged: usize,
}

/// How one bundle differs.
#[derive(Debug, PartialEq)]
pub struct BundleDiff {
    /// Bundle name.
    pub name: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// Human-readable lines: settings and targets that differ.
    pub lines: Vec<String>,
    /// Targets whose blob changes (added and removed targets included).
    pub targets_changed: usize,
}

/// Compares `a` (before) with `b` (after).
pub fn diff(a: &Index, b: &Index) -> Diff {
    let names: BTreeSet<&str> = a.bundles.iter().chain(&b.bundles).map(|x| x.name.as_str()).collect();
    let find = |i: &'_ Index, n: &str| i.bundles.iter().find(|x| x.name.as_str() == n).cloned();
    let mut out = Diff::default();
    for name in names {
        let (old, new) = (find(a, name), find(b, name));
        let entry = match (old, new) {
            (None, Some(new)) => BundleDiff {
                name: name.to_string(),
                change: "added",
                lines: new.targets.iter().map(|t| format!("+ {}", target_line(t))).collect(),
                targets_changed: new.targets.len(),
            },
            (Some(old), None) => BundleDiff {
                name: name.to_string(),
                change: "removed",
                lines: old.targets.iter().map(|t| format!("- {}", target_line(t))).collect(),
                targets_changed: old.targets.len(),
            },
            (Some(old), Some(new)) => {
                let (lines, targets_changed) = bundle_changes(&old, &new);
                if lines.is_empty() {
                    out.unchanged += 1;
                    continue;
                }
                BundleDiff {
                    name: name.to_string(),
                    change: "changed",
                    lines,
                    targets_changed,
                }
            }
            (None, None) => unreachable!("names come from the two indexes"),
        };
        out.bundles.push(entry);
    }
    out
}

fn target_line(t: &Target) -> String {
    let what = describe_target(t);
    if t.do_not_deploy {
        format!("{what}: doNotDeploy")
    } else {
        format!("{what}: {}", t.digest)
    }
}

fn same_clusters(a: &Target, b: &Target) -> bool {
    a.cluster_selector == b.cluster_selector && a.cluster_name == b.cluster_name
}

/// The lines describing how `old` became `new`, and how many targets' blobs changed.
fn bundle_changes(old: &Bundle, new: &Bundle) -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let mut setting = |what: &str, a: String, b: String| {
        if a != b {
            lines.push(format!("{what}: {a} -> {b}"));
        }
    };
    let percent = |b: &Bundle| format!("{}%", b.rollout.map_or(100, |r| r.percent));
    setting("rollout", percent(old), percent(new));
    setting("paused", old.paused.to_string(), new.paused.to_string());
    setting(
        "namespace",
        format!("{:?}", old.namespace),
        format!("{:?}", new.namespace),
    );
    let deps = |b: &Bundle| format!("{:?}", b.depends_on.iter().map(|d| d.as_str()).collect::<Vec<_>>());
    setting("dependsOn", deps(old), deps(new));
    let mut changed = 0;
    for t in &new.targets {
        match old.targets.iter().find(|o| same_clusters(o, t)) {
            None => {
                changed += 1;
                lines.push(format!("+ {}", target_line(t)));
            }
            Some(o) if o.digest != t.digest || o.do_not_deploy != t.do_not_deploy => {
                changed += 1;
                let from = if o.do_not_deploy {
                    "doNotDeploy".to_string()
                } else {
                    o.digest.to_string()
                };
                lines.push(format!("~ {}: {from} -> {}", describe_target(t), short_to(t)));
            }
            Some(_) => {}
        }
    }
    for o in &old.targets {
        if !new.targets.iter().any(|t| same_clusters(o, t)) {
            changed += 1;
            lines.push(format!("- {}", target_line(o)));
        }
    }
    let order = |b: &Bundle| b.targets.iter().map(describe_target).collect::<Vec<_>>();
    if changed == 0 && order(old) != order(new) {
        lines.push("targets reordered (first match wins: clusters may move between targets)".to_string());
    }
    (lines, changed)
}

fn short_to(t: &Target) -> String {
    if t.do_not_deploy {
        "doNotDeploy".to_string()
    } else {
        t.digest.to_string()
    }
}

impl Diff {
    /// The report `drover diff` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for b in &self.bundles {
            out.push_str(&format!(
                "{} {} ({} target{} change)\n",
                b.change,
                b.name,
                b.targets_changed,
                if b.targets_changed == 1 { "" } else { "s" }
            ));
            for line in &b.lines {
                out.push_str(&format!("  {line}\n"));
            }
        }
        let targets: usize = self.bundles.iter().map(|b| b.targets_changed).sum();
        out.push_str(&format!(
            "{} {}, {} unchanged; {targets} target{} change blob\n",
            self.bundles.len(),
            if self.bundles.len() == 1 {
                "bundle differs"
            } else {
                "bundles differ"
            },
            self.unchanged,
            if targets == 1 { "" } else { "s" },
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(json: &str) -> Index {
        let text = format!(
            r#"{{"apiVersion":"drover.dev/v1","kind":"Index","channel":"c","version":1,"expires":"2030-01-01T00:00:00Z","bundles":{json}}}"#
        );
        serde_json::from_str(&text).expect("test index")
    }

    fn digest(n: char) -> String {
        format!("sha256:{}", n.to_string().repeat(64))
    }

    #[test]
    fn counts_changed_targets_per_bundle_and_skips_unchanged_bundles() {
        let t = |sel: &str, d: char| format!(r#"{{"clusterSelector":{sel},"digest":"{}","size":1}}"#, digest(d));
        let a = index(&format!(
            r#"[{{"name":"web","targets":[{},{}]}},{{"name":"db","targets":[{}]}},{{"name":"old","targets":[{}]}}]"#,
            t(r#"{"matchLabels":{"env":"prod"}}"#, 'a'),
            t("{}", 'b'),
            t("{}", 'c'),
            t("{}", 'd')
        ));
        let b = index(&format!(
            r#"[{{"name":"web","rollout":{{"percent":10}},"targets":[{},{}]}},{{"name":"db","targets":[{}]}},{{"name":"new","targets":[{}]}}]"#,
            t(r#"{"matchLabels":{"env":"prod"}}"#, 'e'),
            t("{}", 'b'),
            t("{}", 'c'),
            t("{}", 'f')
        ));
        let d = diff(&a, &b);
        let summary: Vec<(&str, &str, usize)> = d
            .bundles
            .iter()
            .map(|b| (b.name.as_str(), b.change, b.targets_changed))
            .collect();
        assert_eq!(
            summary,
            [("new", "added", 1), ("old", "removed", 1), ("web", "changed", 1)]
        );
        assert_eq!(d.unchanged, 1);
        let web = &d.bundles[2].lines;
        assert!(web.contains(&"rollout: 100% -> 10%".to_string()), "{web:?}");
        assert!(
            web.iter().any(|l| l.contains(&digest('a')) || l.contains(&digest('e'))),
            "{web:?}"
        );
        assert!(
            d.render()
                .contains("3 bundles differ, 1 unchanged; 3 targets change blob"),
            "{}",
            d.render()
        );
    }
}
