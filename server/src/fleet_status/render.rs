//! Presentation of a [`FleetStatus`]: the table `drover status` prints and the problems it
//! lists on stderr (`-o json` is its `Serialize` impl).

use std::collections::BTreeSet;

use drover_agent::state::Status;

use super::aggregate::FleetStatus;
use super::report::agent_status;

/// Longest bundle message shown in the table (the JSON output has it whole).
pub const TABLE_MESSAGE_CHARS: usize = 160;

/// The agent's states in the order the table shows their columns; states it does not know
/// follow alphabetically.
pub const STATE_COLUMNS: [Status; 9] = [
    Status::Applied,
    Status::Ready,
    Status::Applying,
    Status::PendingDependency,
    Status::Error,
    Status::Paused,
    Status::OutsideRollout,
    Status::NotTargeted,
    Status::Removed,
];

/// The states `seen` in the table, in column order: the agent's in [`STATE_COLUMNS`] order,
/// then the others by name.
fn column_order(seen: BTreeSet<&str>) -> Vec<&str> {
    let column = |name: &str| agent_status(name).and_then(|s| STATE_COLUMNS.iter().position(|c| *c == s));
    let mut states: Vec<&str> = seen.into_iter().collect();
    // Stable sort: the unknown ones keep their alphabetical order after the known ones.
    states.sort_by_key(|name| column(name).unwrap_or(STATE_COLUMNS.len()));
    states
}

impl FleetStatus {
    /// The table `drover status` prints: bundle rows, a summary, then the first `limit`
    /// stale clusters and bundle errors (the JSON output has them all).
    pub fn render_table(&self, limit: usize) -> String {
        let mut out = String::new();
        out.push_str(&self.bundle_table());
        out.push('\n');
        out.push_str(&self.summary());
        if !self.stale_clusters.is_empty() {
            out.push_str(&format!("\nSTALE CLUSTERS ({})\n", self.stale_clusters.len()));
            let rows = self.stale_clusters.iter().take(limit).map(|s| {
                vec![
                    s.cluster.clone(),
                    s.checked_at.map_or("-".into(), drover_agent::format::rfc3339),
                    s.reason.clone(),
                    s.last_error.as_deref().map_or("-".into(), one_line),
                ]
            });
            out.push_str(&columns(&["CLUSTER", "LAST CHECK-IN", "REASON", "LAST ERROR"], rows));
            out.push_str(&more(self.stale_clusters.len(), limit));
        }
        if !self.errors.is_empty() {
            out.push_str(&format!(
                "\nBUNDLE ERRORS ({} on {} clusters)\n",
                self.errors.len(),
                self.totals.clusters_with_errors
            ));
            let rows = self.errors.iter().take(limit).map(|e| {
                vec![
                    e.cluster.clone(),
                    e.bundle.clone(),
                    short_digest(e.digest.as_deref()),
                    e.since.map_or("-".into(), drover_agent::format::rfc3339),
                    e.message.as_deref().map_or("-".into(), one_line),
                ]
            });
            out.push_str(&columns(&["CLUSTER", "BUNDLE", "DIGEST", "SINCE", "MESSAGE"], rows));
            out.push_str(&more(self.errors.len(), limit));
        }
        out
    }

    /// The problems, one per line, the first `limit` of them; empty when there are none.
    pub fn render_problems(&self, limit: usize) -> String {
        if self.problems.is_empty() {
            return String::new();
        }
        let mut out = format!("{} reports could not be used:\n", self.problems.len());
        for p in self.problems.iter().take(limit) {
            out.push_str(&format!("  {}: {}\n", p.file, one_line(&p.reason)));
        }
        out.push_str(&more(self.problems.len(), limit));
        out
    }

    fn bundle_table(&self) -> String {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for row in &self.bundles {
            seen.extend(row.states.keys().map(String::as_str));
        }
        let states = column_order(seen);
        let mut header = vec!["BUNDLE", "DIGEST", "CLUSTERS", "STALE"];
        header.extend(&states);
        let count = |n: usize| if n == 0 { "-".to_string() } else { n.to_string() };
        let rows = self.bundles.iter().map(|r| {
            let mut cells = vec![
                r.bundle.clone(),
                short_digest(r.digest.as_deref()),
                r.clusters.to_string(),
                count(r.stale),
            ];
            cells.extend(states.iter().map(|s| count(r.states.get(*s).copied().unwrap_or(0))));
            cells
        });
        columns(&header, rows)
    }

    fn summary(&self) -> String {
        let t = &self.totals;
        let mut line = format!(
            "{} clusters: {} stale, {} with bundle errors ({} bundles)",
            t.clusters, t.stale, t.clusters_with_errors, t.bundle_errors
        );
        if t.problems > 0 {
            line.push_str(&format!("; {} reports unusable (listed on stderr)", t.problems));
        }
        let versions: Vec<String> = self
            .index_versions
            .iter()
            .map(|v| {
                let channel = v.channel.as_deref().unwrap_or("?");
                match v.version {
                    Some(n) => format!("{channel} v{n}: {}", v.clusters),
                    None => format!("no valid index yet: {}", v.clusters),
                }
            })
            .collect();
        let agents: Vec<String> = self
            .agent_versions
            .iter()
            .map(|a| format!("{}: {}", a.version.as_deref().unwrap_or("unknown"), a.clusters))
            .collect();
        format!(
            "{line}\nindex versions: {}\nagent versions: {}\n",
            versions.join(", "),
            agents.join(", ")
        )
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn columns(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let mut widths = vec![0; header.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn more(total: usize, shown: usize) -> String {
    if total > shown {
        format!("... and {} more (-o json lists all)\n", total - shown)
    } else {
        String::new()
    }
}

/// The first 12 hex digits of a digest, like `docker images`; `-` when there is none.
fn short_digest(digest: Option<&str>) -> String {
    match digest {
        Some(d) => {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            hex.chars().take(12).collect()
        }
        None => "-".into(),
    }
}

/// A message on one line, cut to [`TABLE_MESSAGE_CHARS`].
fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > TABLE_MESSAGE_CHARS {
        let cut: String = flat.chars().take(TABLE_MESSAGE_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;

    #[test]
    fn table_shows_only_states_that_occur_and_caps_lists() {
        let many: Vec<ClusterReport> = (0..25)
            .map(|i| {
                parse(
                    &format!("s{i:02}"),
                    "2026-11-26T09:59:00Z",
                    &[bundle("web", DIGEST_A, "Error")],
                )
            })
            .chain([parse(
                "ok",
                "2026-11-26T09:59:00Z",
                &[bundle("web", DIGEST_A, "Applied")],
            )])
            .collect();
        let table = aggregate(reports(many), &opts()).render_table(20);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "BUNDLE  DIGEST        CLUSTERS  STALE  Applied  Error");
        assert_eq!(lines[1], "web     aaaaaaaaaaaa  26        -      1        25");
        assert!(
            table.contains("26 clusters: 0 stale, 25 with bundle errors (25 bundles)"),
            "{table}"
        );
        assert!(table.contains("index versions: stable v12: 26"), "{table}");
        assert!(table.contains("BUNDLE ERRORS (25 on 25 clusters)"), "{table}");
        assert!(table.contains("... and 5 more (-o json lists all)"), "{table}");
        assert!(table.contains("s19") && !table.contains("s20"), "{table}");
    }

    #[test]
    fn json_output_uses_camel_case_and_complete_lists() {
        let many: Vec<ClusterReport> = (0..25)
            .map(|i| {
                parse(
                    &format!("s{i:02}"),
                    "2026-11-25T09:59:00Z",
                    &[bundle("web", DIGEST_A, "Applied")],
                )
            })
            .collect();
        let json = serde_json::to_value(aggregate(reports(many), &opts())).expect("serializes");
        assert_eq!(json["kind"], "FleetStatus");
        assert_eq!(json["totals"]["stale"], 25);
        assert_eq!(json["staleClusters"].as_array().map(Vec::len), Some(25));
        assert_eq!(json["bundles"][0]["states"]["Applied"], 25);
        assert_eq!(json["staleClusters"][0]["checkedAt"], "2026-11-25T09:59:00Z");
    }

    #[test]
    fn an_unknown_state_is_kept_as_written_and_gets_its_own_column_after_the_known_ones() {
        let r = parse("a", "2026-11-26T09:59:00Z", &[bundle("web", DIGEST_A, "Quarantined")]);
        assert_eq!(&*r.bundles[0].state.name, "Quarantined");
        assert_eq!(r.bundles[0].state.known, None);
        assert!(!r.bundles[0].state.is_error());
        let fleet = aggregate(
            reports(vec![
                r,
                parse("b", "2026-11-26T09:59:00Z", &[bundle("web", DIGEST_A, "Error")]),
                parse("c", "2026-11-26T09:59:00Z", &[bundle("web", DIGEST_A, "Applied")]),
                parse_report("d.json", br#"{"cluster":"d","bundles":[{"name":"web","digest":"sha256:aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000"}]}"#)
                    .expect("parses"),
            ]),
            &opts(),
        );
        assert_eq!(
            fleet.totals.bundle_errors, 1,
            "only the known Error state counts as an error"
        );
        let table = fleet.render_table(20);
        assert_eq!(
            table.lines().next(),
            Some("BUNDLE  DIGEST        CLUSTERS  STALE  Applied  Error  Quarantined  Unknown")
        );
    }

    #[test]
    fn every_agent_state_has_a_table_column() {
        use drover_agent::state::Status;
        for status in render::STATE_COLUMNS {
            // No wildcard: a state added to the agent does not compile here until it has a column.
            let name = match status {
                Status::Applied => "Applied",
                Status::Ready => "Ready",
                Status::Applying => "Applying",
                Status::Error => "Error",
                Status::PendingDependency => "PendingDependency",
                Status::Paused => "Paused",
                Status::OutsideRollout => "OutsideRollout",
                Status::NotTargeted => "NotTargeted",
                Status::Removed => "Removed",
            };
            assert_eq!(report::agent_status(name), Some(status));
            assert_eq!(serde_json::to_value(status).expect("serialises"), name);
        }
        let first = |s: &Status| render::STATE_COLUMNS.iter().position(|c| c == s);
        assert!(
            render::STATE_COLUMNS
                .iter()
                .enumerate()
                .all(|(i, s)| first(s) == Some(i)),
            "each state has one column"
        );
    }
}
