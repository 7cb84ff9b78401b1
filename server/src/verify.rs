//! `drover verify`: a store's signature, expiry and every blob it references, checked with
//! the agent's own code.

use std::collections::BTreeSet;
use std::path::PathBuf;

use drover_agent::format::{rfc3339, Digest};
use drover_agent::render::{check_tarball, Limits as RenderLimits};
use drover_agent::verify::VerifiedIndex;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::{runtime, store};

/// `drover verify STORE --key …`: verifies and says what was checked.
pub fn run(store: &str, keys: &[PathBuf], now: OffsetDateTime) -> Result<()> {
    let (verified, blobs) = runtime::start()?.block_on(verify_store(store, keys, now))?;
    let index = verified.index();
    println!(
        "ok: channel {} version {} expires {}; signature valid (key ID {}); {} bundles, {} blobs verified",
        index.channel,
        index.version,
        rfc3339(index.expires),
        verified
            .signed_by()
            .map_or_else(|| "unknown".to_string(), |id| id.to_string()),
        index.bundles.len(),
        blobs
    );
    Ok(())
}

/// Checks signature, expiry, and the size, sha256 and tarball rules of every referenced
/// blob. Returns the verified index, or every problem found.
pub async fn verify_store(store: &str, keys: &[PathBuf], now: OffsetDateTime) -> Result<(VerifiedIndex, usize)> {
    let source = store::open(store)?;
    let verified = store::load_index(&source, keys, now).await?;
    let scratch = tempfile::tempdir().map_err(|e| drover_agent::Error::io(std::env::temp_dir(), e))?;
    let mut problems = Vec::new();
    let mut checked: BTreeSet<Digest> = BTreeSet::new();
    for bundle in &verified.index().bundles {
        let blobs = bundle
            .targets
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.blobs().map(move |b| (i, b)));
        for (i, (digest, size)) in blobs {
            if !checked.insert(digest.clone()) {
                continue;
            }
            let dest = scratch.path().join(digest.hex());
            let at = format!("bundle {} targets[{i}]", bundle.name);
            if let Err(e) = source.fetch_blob(digest, size, &dest).await {
                problems.push(format!("{at}: {e}"));
                continue;
            }
            let checked_tar = std::fs::File::open(&dest)
                .map_err(|e| drover_agent::Error::io(&dest, e))
                .and_then(|f| check_tarball(std::io::BufReader::new(f), &at, &RenderLimits::default()));
            if let Err(e) = checked_tar {
                problems.push(e.to_string());
            }
            let _ = std::fs::remove_file(&dest);
        }
    }
    if problems.is_empty() {
        Ok((verified, checked.len()))
    } else {
        Err(Error::Verification {
            store: store.to_string(),
            problems,
        })
    }
}
