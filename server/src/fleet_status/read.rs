//! Reading the reports of a directory or of an `http(s)://` directory listing. Files are
//! read in parallel; a report that cannot be read or parsed becomes a [`Problem`] and never
//! stops the others.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::Url;

use super::listing::parse_listing;
use super::report::{is_report_name, parse_report_interned, ClusterReport, Interner, Problem};
use crate::error::{Error, Result};
use crate::{http, parallel};

/// Largest report read (1 MiB); a bigger file is listed as a problem, not read.
pub const MAX_REPORT_SIZE: u64 = 1 << 20;
/// Largest directory listing read over HTTP (64 MiB; nginx lists 100,000 reports in about
/// 12 MiB of HTML).
pub const MAX_LISTING_SIZE: u64 = 64 << 20;
/// Reports fetched at once over HTTP.
pub const HTTP_CONCURRENCY: usize = 32;

/// What [`read_reports`] found.
#[derive(Debug, Default)]
pub struct Reports {
    /// Where the reports were read from.
    pub source: String,
    /// The readable reports.
    pub reports: Vec<ClusterReport>,
    /// The unreadable ones.
    pub problems: Vec<Problem>,
}

/// What one reader thread or task keeps between reports.
#[derive(Debug, Default)]
struct Scratch {
    buf: Vec<u8>,
    strings: Interner,
}

/// Reads every report of `source`: a directory, or the `http(s)://` URL of a directory
/// listing. Fails only when the source itself cannot be read or holds no report at all;
/// unreadable reports are returned as problems.
pub async fn read_reports(source: &str) -> Result<Reports> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let url = Url::parse(source).map_err(|e| Error::reports(source, format!("not a valid URL: {e}")))?;
        return read_http(url).await;
    }
    if source.contains("://") {
        return Err(Error::reports(
            source,
            "only directories and http(s):// URLs are supported",
        ));
    }
    let dir = PathBuf::from(source);
    tokio::task::spawn_blocking(move || read_dir(&dir))
        .await
        .map_err(|e| Error::reports(source, format!("reader thread failed: {e}")))?
}

/// Reads every report file of `dir` (not recursive), in parallel.
pub fn read_dir(dir: &Path) -> Result<Reports> {
    let source = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::reports(&source, format!("cannot list: {e}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::reports(&source, format!("cannot list: {e}")))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not UTF-8: no agent writes such a name
        };
        if is_report_name(&name) && !entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(Error::reports(&source, "no *.json reports here"));
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8) * 2;
    let results = parallel::map_with(&names, threads, |scratch: &mut Scratch, name| {
        read_report_file(&dir.join(name), name, scratch)
    });
    Ok(collect(source, results))
}

/// Reads and parses one report file.
fn read_report_file(path: &Path, name: &str, scratch: &mut Scratch) -> Result<ClusterReport, Problem> {
    let problem = |reason: String| Problem {
        file: name.to_string(),
        reason,
    };
    scratch.buf.clear();
    let file = std::fs::File::open(path).map_err(|e| problem(format!("cannot open: {e}")))?;
    file.take(MAX_REPORT_SIZE + 1)
        .read_to_end(&mut scratch.buf)
        .map_err(|e| problem(format!("cannot read: {e}")))?;
    if scratch.buf.len() as u64 > MAX_REPORT_SIZE {
        return Err(problem(format!("larger than {MAX_REPORT_SIZE} bytes")));
    }
    parse_report_interned(name, &scratch.buf, &mut scratch.strings)
}

/// Sorts results into reports and problems.
fn collect(source: String, results: Vec<Result<ClusterReport, Problem>>) -> Reports {
    let mut reports = Reports {
        source,
        ..Reports::default()
    };
    for r in results {
        match r {
            Ok(report) => reports.reports.push(report),
            Err(problem) => reports.problems.push(problem),
        }
    }
    reports
}

/// Reads the listing at `base`, then every report it names, [`HTTP_CONCURRENCY`] at a time.
pub async fn read_http(mut base: Url) -> Result<Reports> {
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let source = base.to_string();
    let client = http::client().map_err(|e| Error::reports(&source, format!("HTTP client: {e}")))?;
    let listing = http::fetch(&client, &base, MAX_LISTING_SIZE)
        .await
        .map_err(|e| Error::reports(&source, format!("cannot read the listing: {e}")))?;
    let files = Arc::new(parse_listing(&listing, &base));
    if files.is_empty() {
        return Err(Error::reports(
            &source,
            "the listing names no *.json reports (is autoindex on?)",
        ));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..HTTP_CONCURRENCY.min(files.len()) {
        let (client, files, next) = (client.clone(), files.clone(), next.clone());
        workers.spawn(async move {
            let (mut out, mut strings) = (Vec::new(), Interner::default());
            while let Some((name, url)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                let report = match http::fetch(&client, url, MAX_REPORT_SIZE).await {
                    Ok(bytes) => parse_report_interned(name, &bytes, &mut strings),
                    Err(reason) => Err(Problem {
                        file: name.clone(),
                        reason,
                    }),
                };
                out.push(report);
            }
            out
        });
    }
    let mut results = Vec::with_capacity(files.len());
    while let Some(done) = workers.join_next().await {
        results.extend(done.map_err(|e| Error::reports(&source, format!("fetch task failed: {e}")))?);
    }
    Ok(collect(source, results))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;
    use super::*;

    #[test]
    fn corrupt_file_in_a_directory_is_a_problem_and_the_rest_still_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = report_json("a", "2026-11-26T09:59:00Z", &bundle("web", DIGEST_A, "Applied"));
        std::fs::write(dir.path().join("a.json"), good).expect("write");
        std::fs::write(dir.path().join("b.json"), "{\"cluster\": \"b\", ").expect("write");
        std::fs::write(dir.path().join(".c.json.tmp"), "ignored").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        std::fs::create_dir(dir.path().join("dir.json")).expect("mkdir");
        let fleet = aggregate(read_dir(dir.path()).expect("readable"), &opts());
        assert_eq!(fleet.totals.clusters, 1);
        assert_eq!(fleet.problems.len(), 1);
        assert_eq!(fleet.problems[0].file, "b.json");
        assert!(fleet.needs_attention());
        assert!(fleet.render_problems(20).contains("b.json: not a status report"));
    }

    #[test]
    fn an_empty_or_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read_dir(dir.path()).is_err());
        assert!(read_dir(&dir.path().join("missing")).is_err());
    }
}
