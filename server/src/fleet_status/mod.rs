//! `drover status`: the fleet view, built from the status reports agents leave in a report
//! directory (one `<cluster>.json` per cluster, PUT to a WebDAV server or copied from a USB
//! stick).
//!
//! Four steps, each usable on its own:
//! * [`read`] reads every report of a directory or of an `http(s)://` directory listing
//!   ([`listing`] finds the reports a listing names); [`report`] parses one, tolerantly,
//!   with the agent's own field names and states;
//! * [`aggregate`](mod@aggregate) turns the reports into a [`FleetStatus`];
//! * [`render`] prints it as a table; `-o json` is its `Serialize` impl.

pub mod aggregate;
pub mod listing;
pub mod read;
pub mod render;
pub mod report;

pub use aggregate::{
    aggregate, stale_after, staleness, AgentVersionCount, BundleError, BundleRow, FleetStatus, IndexVersionCount,
    Options, StaleCluster, Totals, DEFAULT_INTERVAL, DEFAULT_REPORT_INTERVAL, MIN_STALE_AFTER, STALE_INTERVALS,
};
pub use listing::parse_listing;
pub use read::{read_dir, read_http, read_reports, Reports, HTTP_CONCURRENCY, MAX_LISTING_SIZE, MAX_REPORT_SIZE};
pub use render::TABLE_MESSAGE_CHARS;
pub use report::{is_report_name, parse_report, BundleReport, BundleState, ClusterReport, Problem, STATUS_KIND};

use crate::error::{Error, Result};

/// How `drover status` prints the fleet view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The whole aggregation, for scripts.
    Json,
}

/// `drover status`: the view was made, but a cluster is stale, a bundle is in Error or a
/// report is unusable.
pub const EXIT_ATTENTION: u8 = 1;
/// `drover status`: no view could be made (source unreadable, or no reports in it).
pub const EXIT_NO_VIEW: u8 = 3;
/// Stale clusters, bundle errors and problems shown in the table (JSON lists all).
pub const LIST_LIMIT: usize = 20;

/// `drover status SOURCE`: reads, aggregates and prints the fleet view on stdout and its
/// problems on stderr. Returns the documented exit code: 0 all well, [`EXIT_ATTENTION`] or
/// [`EXIT_NO_VIEW`]; an error is a failure to write the output.
pub fn run(source: &str, format: Format, opts: &Options) -> Result<u8> {
    let read = crate::runtime::start().and_then(|rt| rt.block_on(read_reports(source)));
    let reports = match read {
        Ok(reports) => reports,
        Err(e) => {
            eprintln!("drover: {}", crate::error::one_line(&e));
            return Ok(EXIT_NO_VIEW);
        }
    };
    let fleet = aggregate(reports, opts);
    print_view(&fleet, format).map_err(|source| Error::Output { source })?;
    eprint!("{}", fleet.render_problems(LIST_LIMIT));
    Ok(if fleet.needs_attention() { EXIT_ATTENTION } else { 0 })
}

/// Writes `fleet` to stdout in `format`.
fn print_view(fleet: &FleetStatus, format: Format) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        Format::Table => stdout.write_all(fleet.render_table(LIST_LIMIT).as_bytes())?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut stdout, fleet)?;
            stdout.write_all(b"\n")?;
        }
    }
    stdout.flush()
}

#[cfg(test)]
mod fixtures;
