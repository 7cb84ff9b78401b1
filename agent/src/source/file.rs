//! `file://` sources: a store directory on a mounted USB stick, NFS share or local mirror.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{blob_path, RawIndex, INDEX_PATHS};
use crate::error::{Error, Result};
use crate::format::Digest;
use crate::transport::{read_limited, BlobWriter, Limits};

/// A store directory.
#[derive(Debug, Clone)]
pub struct FileSource {
    root: PathBuf,
    limits: Limits,
    received: Arc<AtomicU64>,
}

impl FileSource {
    /// A store rooted at `root`.
    pub fn new(root: PathBuf, limits: &Limits) -> Self {
        FileSource {
            root,
            limits: limits.clone(),
            received: Arc::default(),
        }
    }

    /// Bytes read from this store so far.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read_file(&self, rel: &str, limit: u64) -> Result<(Vec<u8>, String)> {
        let path = self.root.join(rel);
        let what = path.display().to_string();
        let file = open_regular(&path)?;
        let bytes = read_limited(file, limit, &what)?;
        self.received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok((bytes, what))
    }

    /// Reads index and signature, on the blocking thread pool (a USB stick or NFS share
    /// can take long to answer, and must not stall the runtime), within the request
    /// timeout: a hung mount fails this read instead of freezing the agent.
    pub async fn fetch_index(&self) -> Result<RawIndex> {
        let source = self.clone();
        let within = self.limits.request_timeout;
        let what = self.root.join(INDEX_PATHS.0);
        bounded(within, "--request-timeout", &what, move || source.read_index()).await
    }

    /// Copies a blob into `dest`, verifying it as it streams, on the blocking thread pool,
    /// within the blob timeout.
    pub async fn fetch_blob(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        let (source, digest, dest) = (self.clone(), digest.clone(), dest.to_path_buf());
        let (within, what) = (self.limits.blob_timeout, self.root.join(blob_path(&digest)));
        bounded(within, "--blob-timeout", &what, move || {
            source.copy_blob(&digest, size, &dest)
        })
        .await
    }

    fn read_index(&self) -> Result<RawIndex> {
        let (index, sig) = INDEX_PATHS;
        let (bytes, origin) = self.read_file(index, self.limits.max_index_bytes)?;
        let (signature, _) = self.read_file(sig, self.limits.max_signature_bytes)?;
        Ok(RawIndex {
            bytes,
            signature,
            origin,
            not_modified: false,
        })
    }

    fn copy_blob(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        let path = self.root.join(blob_path(digest));
        let what = path.display().to_string();
        let mut file = open_regular(&path)?;
        let mut writer = BlobWriter::new(dest, digest, size, what)?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            self.received.fetch_add(n as u64, Ordering::Relaxed);
            writer.write(&buf[..n])?;
        }
        writer.finish(dest)
    }
}

/// Runs `read` on the blocking pool and gives up after `within`. A read stuck in the
/// kernel (a dead NFS server) keeps its blocking thread, but the cycle goes on.
async fn bounded<T, F>(within: Duration, flag: &str, what: &Path, read: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::time::timeout(within, crate::blocking::run(read)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Fetch {
            url: what.display().to_string(),
            message: format!("no answer within {within:?} ({flag}); the store's file system may be hung"),
        }),
    }
}

/// `O_NONBLOCK` on Linux (every architecture drover builds for): opening a FIFO with it
/// returns at once instead of waiting for a writer. It does not change reads of a regular
/// file.
const O_NONBLOCK: i32 = 0o4000;

/// Opens `path` for reading only if it is a regular file (following symlinks). The check
/// is made on the opened file, so a FIFO swapped in after a check by name is refused too;
/// opening never blocks on one.
fn open_regular(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let kind = file.metadata().map_err(|e| Error::io(path, e))?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(Error::NotRegularFile {
        path: path.to_path_buf(),
        kind: describe(kind),
    })
}

/// What a non-regular file is, for messages.
fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn reads_index_and_verified_blobs_from_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).expect("mkdir");
        std::fs::write(dir.path().join("index.json"), b"{}").expect("index");
        std::fs::write(dir.path().join("index.json.minisig"), b"sig").expect("sig");
        let digest = Digest::of(b"blob");
        std::fs::write(dir.path().join(blob_path(&digest)), b"blob").expect("blob");
        let source = FileSource::new(dir.path().to_path_buf(), &Limits::default());
        let raw = source.fetch_index().await.expect("index");
        assert_eq!(
            (raw.bytes.as_slice(), raw.signature.as_slice()),
            (&b"{}"[..], &b"sig"[..])
        );
        let dest = dir.path().join("copy");
        source.fetch_blob(&digest, 4, &dest).await.expect("blob");
        assert_eq!(std::fs::read(&dest).expect("copied"), b"blob");
        assert_eq!(source.bytes_received(), 2 + 3 + 4);
        let wrong = source.fetch_blob(&Digest::of(b"other"), 4, &dir.path().join("x")).await;
        assert!(wrong.is_err() && !dir.path().join("x").exists());
    }

    fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(made.success(), "mkfifo {}", path.display());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_fifo_or_directory_where_a_store_file_belongs_is_refused_at_once_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).expect("mkdir");
        mkfifo(&dir.path().join("index.json"));
        std::fs::write(dir.path().join("index.json.minisig"), b"sig").expect("sig");
        let digest = Digest::of(b"blob");
        std::fs::create_dir(dir.path().join(blob_path(&digest))).expect("dir as blob");
        let source = FileSource::new(dir.path().to_path_buf(), &Limits::default());
        match source.fetch_index().await {
            Err(Error::NotRegularFile { path, kind }) => {
                assert_eq!((path, kind), (dir.path().join("index.json"), "a FIFO"));
            }
            other => panic!("expected NotRegularFile, got {other:?}"),
        }
        let blob = source.fetch_blob(&digest, 4, &dir.path().join("copy")).await;
        assert!(
            matches!(
                &blob,
                Err(Error::NotRegularFile {
                    kind: "a directory",
                    ..
                })
            ),
            "{blob:?}"
        );
        let link = dir.path().join("blobs/sha256").join(Digest::of(b"link").hex());
        std::os::unix::fs::symlink(dir.path().join("index.json"), &link).expect("symlink");
        let linked = source
            .fetch_blob(&Digest::of(b"link"), 4, &dir.path().join("copy"))
            .await;
        assert!(
            matches!(&linked, Err(Error::NotRegularFile { kind: "a FIFO", .. })),
            "{linked:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_read_that_does_not_answer_in_time_fails_naming_the_path_and_the_flag() {
        let path = Path::new("/mnt/hung/index.json");
        let hung = bounded(Duration::from_millis(50), "--request-timeout", path, || {
            std::thread::sleep(Duration::from_millis(500));
            Ok(())
        })
        .await;
        match hung {
            Err(Error::Fetch { url, message }) => {
                assert_eq!(url, "/mnt/hung/index.json");
                assert!(message.contains("--request-timeout"), "{message}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}
