//! Selection: which digest of which bundle this cluster should run, and why.
//!
//! For each bundle, targets are tried in order and the first whose selector and name
//! match wins; no match means the bundle is not deployed here. `paused` and `rollout`
//! then decide whether the cluster takes that digest now. Plans come out in dependency
//! order (a bundle after everything in its `dependsOn`), so stages after this one can
//! apply in sequence.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest as _, Sha256};

use crate::format::{Bundle, BundleName, Digest, Target};
use crate::verify::VerifiedIndex;

/// The identity of the cluster the agent runs for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    /// Unique cluster name.
    pub name: String,
    /// Cluster labels, matched by `clusterSelector`.
    pub labels: BTreeMap<String, String>,
}

/// The blob a target assigns.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// Blob digest.
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Index of the matching target in the bundle's `targets`.
    pub target: usize,
    /// Set when this is the target's `previous` blob, given because the cluster is
    /// outside the rollout wave.
    pub outside_wave: Option<Wave>,
}

impl Chosen {
    /// `""`, or for a previous blob given outside the rollout wave, a note saying so (for
    /// status messages).
    pub fn wave_note(&self) -> String {
        self.outside_wave.as_ref().map_or_else(String::new, |w| {
            format!(
                "; previous blob: bucket {} is outside the {}% wave for {}",
                w.bucket,
                w.percent,
                w.wave_digest.short()
            )
        })
    }
}

/// Why a cluster got a target's previous blob: its rollout bucket is outside the wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Wave {
    /// This cluster's bucket, 0–99.
    pub bucket: u8,
    /// The wave's percentage.
    pub percent: u8,
    /// The blob clusters inside the wave get.
    pub wave_digest: Digest,
}

/// What should happen to one bundle on this cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Apply this blob.
    Deploy(Chosen),
    /// No target matches this cluster: the bundle must not be present.
    NotTargeted,
    /// The bundle is paused: keep whatever is applied now. `would_get` is what the
    /// targets select, for display.
    Paused {
        /// The blob the targets select.
        would_get: Chosen,
    },
    /// The cluster's rollout bucket is outside the current wave and the target names no
    /// previous blob: keep what is applied (outside the wave with a previous blob is a
    /// [`Decision::Deploy`] of that blob).
    OutsideRollout {
        /// This cluster's bucket, 0–99.
        bucket: u8,
        /// The wave's percentage.
        percent: u8,
        /// The blob clusters inside the wave get.
        would_get: Chosen,
    },
    /// The bundle cannot be planned (dependency cycle or unknown dependency).
    Invalid(String),
}

/// The plan for one bundle.
#[derive(Debug, Clone)]
pub struct BundlePlan<'a> {
    /// The bundle entry of the verified index.
    pub bundle: &'a Bundle,
    /// The decision for this cluster.
    pub decision: Decision,
}

/// Plans every bundle of `index` for `cluster`, in dependency order.
pub fn plan<'a>(index: &'a VerifiedIndex, cluster: &Cluster) -> Vec<BundlePlan<'a>> {
    let bundles = &index.index().bundles;
    let (order, problems) = dependency_order(bundles);
    order
        .into_iter()
        .map(|i| {
            let bundle = &bundles[i];
            let decision = match problems.get(&bundle.name) {
                Some(problem) => Decision::Invalid(problem.clone()),
                None => decide(bundle, cluster),
            };
            BundlePlan { bundle, decision }
        })
        .collect()
}

fn decide(bundle: &Bundle, cluster: &Cluster) -> Decision {
    let Some(chosen) = first_match(&bundle.targets, cluster) else {
        return Decision::NotTargeted;
    };
    let target = &bundle.targets[chosen.target];
    if target.do_not_deploy {
        return Decision::NotTargeted;
    }
    if bundle.paused {
        return Decision::Paused { would_get: chosen };
    }
    let percent = bundle.rollout.map_or(100, |r| r.percent);
    let bucket = rollout_bucket(&cluster.name, &bundle.name);
    if bucket >= percent {
        if let Some(previous) = &target.previous {
            // A cluster outside the wave runs what the whole fleet ran before the change,
            // even one that has nothing applied yet (freshly installed).
            return Decision::Deploy(Chosen {
                digest: previous.digest.clone(),
                size: previous.size,
                target: chosen.target,
                outside_wave: Some(Wave {
                    bucket,
                    percent,
                    wave_digest: chosen.digest,
                }),
            });
        }
        return Decision::OutsideRollout {
            bucket,
            percent,
            would_get: chosen,
        };
    }
    Decision::Deploy(chosen)
}

/// The first target matching `cluster`, if any (a `doNotDeploy` target included: it is
/// the match, and [`plan`] then deploys nothing).
pub fn first_match(targets: &[Target], cluster: &Cluster) -> Option<Chosen> {
    targets.iter().enumerate().find_map(|(i, t)| {
        let name_ok = t.cluster_name.as_deref().is_none_or(|n| n == cluster.name);
        let selector_ok = t.cluster_selector.as_ref().is_none_or(|s| s.matches(&cluster.labels));
        (name_ok && selector_ok).then(|| Chosen {
            digest: t.digest.clone(),
            size: t.size,
            target: i,
            outside_wave: None,
        })
    })
}

/// A cluster's stable rollout bucket for a bundle, 0–99: the first 8 bytes of
/// `sha256(cluster name + "/" + bundle name)` as a big-endian integer, modulo 100.
/// A cluster takes a bundle at `rollout.percent = p` when its bucket is below `p`, so
/// raising `p` only ever adds clusters to the wave.
pub fn rollout_bucket(cluster: &str, bundle: &BundleName) -> u8 {
    let hash = Sha256::new_with_prefix(cluster.as_bytes())
        .chain_update(b"/")
        .chain_update(bundle.as_str().as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(first) % 100) as u8
}

/// Orders bundles so each comes after its dependencies (ties broken by index order) and
/// names the problem of every bundle in a cycle or with an unknown dependency.
fn dependency_order(bundles: &[Bundle]) -> (Vec<usize>, BTreeMap<BundleName, String>) {
    let position: BTreeMap<&BundleName, usize> = bundles.iter().enumerate().map(|(i, b)| (&b.name, i)).collect();
    let mut problems = BTreeMap::new();
    for b in bundles {
        let unknown: Vec<&str> = b
            .depends_on
            .iter()
            .filter(|d| !position.contains_key(d))
            .map(BundleName::as_str)
            .collect();
        if !unknown.is_empty() {
            problems.insert(
                b.name.clone(),
                format!("dependsOn names unknown bundle(s): {}", unknown.join(", ")),
            );
        }
    }
    let mut placed = vec![false; bundles.len()];
    let mut order = Vec::with_capacity(bundles.len());
    loop {
        let ready = (0..bundles.len()).find(|&i| {
            !placed[i]
                && bundles[i]
                    .depends_on
                    .iter()
                    .all(|d| position.get(d).is_none_or(|&j| placed[j]))
        });
        let Some(i) = ready else { break };
        placed[i] = true;
        order.push(i);
    }
    // What is left is in a cycle or depends on one.
    let left: Vec<usize> = (0..bundles.len()).filter(|&i| !placed[i]).collect();
    for &i in &left {
        if reaches(bundles, &position, i, i) {
            problems.insert(bundles[i].name.clone(), "dependsOn forms a cycle".to_string());
        }
        order.push(i);
    }
    (order, problems)
}

fn reaches(bundles: &[Bundle], position: &BTreeMap<&BundleName, usize>, from: usize, goal: usize) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<usize> = vec![from];
    while let Some(i) = stack.pop() {
        for d in &bundles[i].depends_on {
            if let Some(&j) = position.get(d) {
                if j == goal {
                    return true;
                }
                if seen.insert(j) {
                    stack.push(j);
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{LabelSelector, Rollout};

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn target(selector: Option<&str>, name: Option<&str>, n: u8) -> Target {
        Target {
            cluster_selector: selector.map(|s| serde_json::from_str::<LabelSelector>(s).expect("selector")),
            cluster_name: name.map(str::to_string),
            digest: digest(n),
            size: 1,
            previous: None,
            variant: None,
            do_not_deploy: false,
        }
    }

    fn bundle(name: &str, deps: &[&str], targets: Vec<Target>) -> Bundle {
        Bundle {
            name: BundleName::parse(name).expect("name"),
            namespace: None,
            depends_on: deps.iter().map(|d| BundleName::parse(d).expect("dep")).collect(),
            paused: false,
            rollout: None,
            force: false,
            keep_resources: false,
            health_timeout_seconds: None,
            targets,
        }
    }

    fn cluster(name: &str, labels: &[(&str, &str)]) -> Cluster {
        Cluster {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn first_matching_target_wins() {
        let targets = vec![
            target(Some(r#"{"matchLabels":{"env":"prod"}}"#), None, 1),
            target(None, Some("site-7"), 2),
            target(Some("{}"), None, 3),
        ];
        let prod_site7 = cluster("site-7", &[("env", "prod")]);
        assert_eq!(first_match(&targets, &prod_site7).map(|c| c.target), Some(0));
        assert_eq!(
            first_match(&targets, &cluster("site-7", &[])).map(|c| c.target),
            Some(1)
        );
        assert_eq!(first_match(&targets, &cluster("other", &[])).map(|c| c.target), Some(2));
    }

    #[test]
    fn no_matching_target_means_not_deployed() {
        let b = bundle("web", &[], vec![target(None, Some("site-7"), 1)]);
        assert_eq!(decide(&b, &cluster("site-8", &[])), Decision::NotTargeted);
    }

    #[test]
    fn name_and_selector_in_one_target_must_both_match() {
        let targets = vec![target(Some(r#"{"matchLabels":{"env":"prod"}}"#), Some("a"), 1)];
        assert!(first_match(&targets, &cluster("a", &[("env", "prod")])).is_some());
        assert!(first_match(&targets, &cluster("a", &[])).is_none());
        assert!(first_match(&targets, &cluster("b", &[("env", "prod")])).is_none());
    }

    #[test]
    fn paused_bundle_is_not_deployed_anew() {
        let mut b = bundle("web", &[], vec![target(Some("{}"), None, 1)]);
        b.paused = true;
        assert!(matches!(decide(&b, &cluster("a", &[])), Decision::Paused { .. }));
    }

    #[test]
    fn rollout_wave_grows_monotonically_and_is_close_to_its_percentage() {
        let name = BundleName::parse("web").expect("name");
        let buckets: Vec<u8> = (0..10_000)
            .map(|i| rollout_bucket(&format!("cluster-{i}"), &name))
            .collect();
        let wave = |percent: u8| -> BTreeSet<usize> { (0..buckets.len()).filter(|&i| buckets[i] < percent).collect() };
        let percents = [0u8, 1, 5, 10, 25, 50, 75, 99, 100];
        for percent in percents {
            let inside = wave(percent).len();
            let expected = 10_000 * percent as usize / 100;
            assert!(inside.abs_diff(expected) < 200, "{percent}%: {inside} of 10000");
        }
        // Monotonic: every cluster inside at p is inside at every q > p.
        for (i, &p) in percents.iter().enumerate() {
            for &q in &percents[i + 1..] {
                assert!(
                    wave(p).is_subset(&wave(q)),
                    "a cluster inside at {p}% is outside at {q}%"
                );
            }
        }
        assert_eq!(wave(100).len(), 10_000, "100 % is everyone");
        assert!(wave(0).is_empty(), "0 % is no one");
    }

    #[test]
    fn rollout_bucket_matches_the_pinned_values_of_the_format() {
        // docs/format.md §"Selection", step 3: u64_be(sha256(N + "/" + name)[0..8]) mod 100.
        // Computed outside this code (`printf site-1/web | sha256sum` → 9a3ab0b17d567f08…,
        // 0x9a3ab0b17d567f08 mod 100 = 76); every implementation must give these.
        for (cluster, bundle, bucket) in [("site-1", "web", 76), ("cluster-1", "web", 49), ("site-7", "db", 8)] {
            let name = BundleName::parse(bundle).expect("name");
            assert_eq!(rollout_bucket(cluster, &name), bucket, "{cluster}/{bundle}");
        }
    }

    #[test]
    fn outside_rollout_wave_keeps_current() {
        let mut b = bundle("web", &[], vec![target(Some("{}"), None, 1)]);
        b.rollout = Some(Rollout { percent: 0 });
        assert!(matches!(
            decide(&b, &cluster("a", &[])),
            Decision::OutsideRollout { .. }
        ));
        b.rollout = Some(Rollout { percent: 100 });
        assert!(matches!(decide(&b, &cluster("a", &[])), Decision::Deploy(_)));
    }

    #[test]
    fn outside_the_wave_gets_the_previous_blob_when_the_index_names_one() {
        let mut b = bundle("web", &[], vec![target(Some("{}"), None, 1)]);
        b.targets[0].previous = Some(crate::format::BlobRef {
            digest: digest(9),
            size: 7,
        });
        b.rollout = Some(Rollout { percent: 0 });
        let Decision::Deploy(chosen) = decide(&b, &cluster("fresh", &[])) else {
            panic!("outside the wave with a previous blob deploys it");
        };
        assert_eq!((chosen.digest, chosen.size), (digest(9), 7));
        let wave = chosen.outside_wave.expect("marked as outside the wave");
        assert_eq!((wave.percent, wave.wave_digest), (0, digest(1)));
        b.rollout = Some(Rollout { percent: 100 });
        let Decision::Deploy(chosen) = decide(&b, &cluster("fresh", &[])) else {
            panic!("inside the wave deploys");
        };
        assert_eq!((chosen.digest, chosen.outside_wave), (digest(1), None));
    }

    #[test]
    fn cluster_in_the_10_percent_wave_stays_in_at_50_and_proportions_hold() {
        let name = BundleName::parse("web").expect("name");
        let names: Vec<String> = (0..10_000).map(|i| format!("site-{i}")).collect();
        let mut b = bundle("web", &[], vec![target(Some("{}"), None, 1)]);
        let inside = |b: &Bundle| -> Vec<bool> {
            names
                .iter()
                .map(|n| matches!(decide(b, &cluster(n, &[])), Decision::Deploy(c) if c.outside_wave.is_none()))
                .collect()
        };
        let mut waves = Vec::new();
        for percent in [10u8, 50, 100] {
            b.rollout = Some(Rollout { percent });
            let wave = inside(&b);
            let count = wave.iter().filter(|&&x| x).count();
            assert!(
                count.abs_diff(100 * percent as usize) <= 200,
                "{percent}%: {count} of 10000"
            );
            waves.push(wave);
        }
        for (i, n) in names.iter().enumerate() {
            if waves[0][i] {
                assert!(waves[1][i] && waves[2][i], "{n} left the wave as it grew");
            }
        }
        // The wave at 10 % is exactly the clusters whose bucket is below 10.
        for (i, n) in names.iter().enumerate() {
            assert_eq!(waves[0][i], rollout_bucket(n, &name) < 10, "{n}");
        }
    }

    #[test]
    fn do_not_deploy_target_excludes_before_later_targets() {
        let mut b = bundle(
            "web",
            &[],
            vec![
                target(Some(r#"{"matchLabels":{"env":"lab"}}"#), None, 1),
                target(Some("{}"), None, 2),
            ],
        );
        b.targets[0].do_not_deploy = true;
        assert_eq!(decide(&b, &cluster("a", &[("env", "lab")])), Decision::NotTargeted);
        assert!(matches!(decide(&b, &cluster("a", &[("env", "prod")])), Decision::Deploy(c) if c.digest == digest(2)));
    }

    #[test]
    fn dependencies_come_first_and_cycles_are_errors() {
        let bundles = vec![
            bundle("app", &["db"], vec![]),
            bundle("db", &["crds"], vec![]),
            bundle("crds", &[], vec![]),
            bundle("x", &["y"], vec![]),
            bundle("y", &["x"], vec![]),
            bundle("z", &["x"], vec![]),
            bundle("lost", &["nowhere"], vec![]),
        ];
        let (order, problems) = dependency_order(&bundles);
        let names: Vec<&str> = order.iter().map(|&i| bundles[i].name.as_str()).collect();
        let pos = |n: &str| names.iter().position(|&m| m == n).expect("placed");
        assert!(pos("crds") < pos("db") && pos("db") < pos("app"));
        assert_eq!(names.len(), bundles.len());
        assert!(problems[&BundleName::parse("x").expect("n")].contains("cycle"));
        assert!(problems[&BundleName::parse("y").expect("n")].contains("cycle"));
        assert!(
            !problems.contains_key(&BundleName::parse("z").expect("n")),
            "z only depends on a cycle"
        );
        assert!(problems[&BundleName::parse("lost").expect("n")].contains("nowhere"));
    }
}
