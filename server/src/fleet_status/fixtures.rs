//! Test fixtures of the fleet view: report JSON as agents write it, parsed reports, options.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::*;

pub(super) fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).expect("test time is RFC 3339")
}
pub(super) const DIGEST_A: &str = "sha256:aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000";
pub(super) const DIGEST_B: &str = "sha256:bbbbbbbbbbbb0000000000000000000000000000000000000000000000000000";

pub(super) fn opts() -> Options {
    Options {
        now: at("2026-11-26T10:00:00Z"),
        stale_after: None,
    }
}

pub(super) fn report_json(cluster: &str, checked_at: &str, bundles: &str) -> String {
    format!(
        r#"{{"apiVersion":"drover.dev/v1","kind":"ClusterStatus","cluster":"{cluster}","labels":{{"env":"prod"}},
        "agentVersion":"0.1.0","channel":"stable","indexVersion":12,"indexSha256":"sha256:00",
        "origin":"http://mirror/store/index.json","checkedAt":"{checked_at}","lastSuccess":"{checked_at}",
        "stale":false,"staleSince":null,"intervalSeconds":60,"bundles":[{bundles}]}}"#
    )
}

pub(super) fn bundle(name: &str, digest: &str, state: &str) -> String {
    format!(r#"{{"name":"{name}","digest":"{digest}","state":"{state}","message":"m","since":"2026-11-26T09:00:00Z"}}"#)
}

pub(super) fn parse(cluster: &str, checked_at: &str, bundles: &[String]) -> ClusterReport {
    let json = report_json(cluster, checked_at, &bundles.join(","));
    parse_report(&format!("{cluster}.json"), json.as_bytes()).expect("test report parses")
}

pub(super) fn reports(reports: Vec<ClusterReport>) -> Reports {
    Reports {
        source: "test".into(),
        reports,
        problems: vec![],
    }
}
