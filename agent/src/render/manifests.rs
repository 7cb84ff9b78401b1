//! Reading a bundle whole, without rendering it: the checks `drover verify` runs, and the
//! manifest files for tests and small tools.

use std::io::Read;

use super::documents::{Documents, SplitError};
use super::tarball::{self, Stop};
use super::{Limits, ManifestFile};
use crate::error::{Error, Result};

/// Checks the tarball rules of format §5 on the blob read from `reader` (entry types,
/// paths, duplicates, limits, UTF-8 and the size of each YAML document) without keeping
/// the content; returns the manifest paths in the order they apply. This is what
/// `drover verify` checks.
pub fn check_tarball(reader: impl Read, what: &str, limits: &Limits) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    let walked = tarball::walk(reader, what, limits, &mut |m| {
        let mut documents = Documents::new(
            std::io::BufReader::with_capacity(64 << 10, &mut *m.data),
            limits.max_document_bytes,
        );
        loop {
            match documents.next_chunk() {
                Ok(Some(chunk)) => {
                    std::str::from_utf8(&chunk.text)
                        .map_err(|_| Error::invalid(what, format!("entry {:?} is not UTF-8", m.raw_path)))?;
                }
                Ok(None) => break,
                Err(SplitError::Io(e)) => return Err(m.read_error(e).into()),
                Err(SplitError::TooLarge) => {
                    return Err(Error::invalid(
                        format!("{what}: {}", m.path),
                        format!(
                            "a YAML document is larger than the limit of {} bytes",
                            limits.max_document_bytes
                        ),
                    )
                    .into())
                }
            }
        }
        paths.push(m.path.to_string());
        Ok(())
    });
    finish_walk(walked)?;
    sorted_without_duplicates(paths, |p| p.as_str(), what)
}

/// Reads the manifest files of a gzip-compressed tar into memory, enforcing the bundle
/// rules; for tests and tools that look at small bundles (the agent streams instead).
pub fn read_manifests(reader: impl Read, what: &str, limits: &Limits) -> Result<Vec<ManifestFile>> {
    let mut files = Vec::new();
    let walked = tarball::walk(reader, what, limits, &mut |m| {
        let mut bytes = Vec::new();
        m.data.read_to_end(&mut bytes).map_err(|e| m.read_error(e))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::invalid(what, format!("entry {:?} is not UTF-8", m.raw_path)))?;
        files.push(ManifestFile {
            path: m.path.to_string(),
            text,
        });
        Ok(())
    });
    finish_walk(walked)?;
    sorted_without_duplicates(files, |f| f.path.as_str(), what)
}

fn finish_walk(walked: Result<(), Stop>) -> Result<()> {
    match walked {
        Ok(()) => Ok(()),
        Err(Stop::Failed(e)) => Err(e),
        Err(Stop::Unsorted) => unreachable!("tarball::walk never checks the order"),
    }
}

fn sorted_without_duplicates<T>(mut items: Vec<T>, path: impl Fn(&T) -> &str, what: &str) -> Result<Vec<T>> {
    items.sort_by(|a, b| path(a).as_bytes().cmp(path(b).as_bytes()));
    if let Some(w) = items.windows(2).find(|w| path(&w[0]) == path(&w[1])) {
        return Err(Error::invalid(what, format!("entry {:?} appears twice", path(&w[0]))));
    }
    Ok(items)
}
