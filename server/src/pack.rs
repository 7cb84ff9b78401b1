//! Reproducible bundle tarballs: same files in, byte-identical `tar.gz` out, on any
//! machine (with the same drover version): entries sorted byte-wise by path, regular files
//! only, mode 0644, mtime 0, uid/gid 0, no user/group names, gzip header with mtime 0, no
//! file name and OS byte 255, compression level [`GZIP_LEVEL`].

use std::collections::BTreeMap;
use std::io::Write;

use flate2::{Compression, GzBuilder};

/// The gzip level of bundle blobs: 6, gzip's and zlib's default. On generated manifests it
/// gave the smallest blobs of levels 4 to 9 with the zlib-rs deflate, five times faster
/// than the level 9 of miniz_oxide used before (docs/performance.md, "Publish
/// throughput"). The level and the deflate implementation are part of what makes a digest:
/// changing either changes every digest once (agents then rewrite each bundle's file once,
/// with the same objects).
pub const GZIP_LEVEL: u32 = 6;

/// Packs `files` (relative path → content) into a gzip-compressed tar.
pub fn pack(files: &BTreeMap<&str, &[u8]>) -> std::io::Result<Vec<u8>> {
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Deterministic);
    // A BTreeMap of &str iterates in byte-wise order of the UTF-8 paths.
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        builder.append_data(&mut header, path, *bytes)?;
    }
    let mut gz = builder.into_inner()?;
    gz.flush()?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_agent::render::{read_manifests, Limits};

    #[test]
    fn same_files_give_identical_bytes() {
        let files: BTreeMap<&str, &[u8]> = [("b.yaml", &b"b: 1\n"[..]), ("a/deep/x.yml", &b"x: 1\n"[..])].into();
        assert_eq!(pack(&files).expect("pack"), pack(&files).expect("pack"));
    }

    #[test]
    fn packed_bundle_reads_back_in_order_with_long_paths() {
        let long = format!("{}/m.yaml", "d".repeat(150));
        let files: BTreeMap<&str, &[u8]> = [("z.yaml", &b"z\n"[..]), (long.as_str(), &b"l\n"[..])].into();
        let blob = pack(&files).expect("pack");
        let back = read_manifests(&blob[..], "t", &Limits::default()).expect("valid bundle");
        let paths: Vec<&str> = back.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [long.as_str(), "z.yaml"]);
    }
}
