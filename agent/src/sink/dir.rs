//! The `dir` sink: one `drover-<bundle>.yaml` per bundle in the k3s auto-deploy directory
//! (`/var/lib/rancher/k3s/server/manifests`).
//!
//! k3s's deploy controller applies a file when it appears or its content changes, and
//! prunes objects that disappear from a file it has applied; deleting the *file* deletes
//! nothing. So removal is a *tombstone*: the file is rewritten with comments only, k3s
//! applies the now-empty object set and deletes what it had created from that file, and the
//! tombstone stays so the deletion is never undone by a restart. Writing is atomic
//! (temporary file + rename) and skipped when the bytes are already there, so k3s is not
//! woken for nothing. The agent only ever touches files named `drover-*.yaml`.
//!
//! A bundle is written as it is rendered: [`DirSink::begin`] opens a [`BundleFile`], a
//! temporary file in the same directory (`.drover-*.tmp`, which k3s ignores) that hashes
//! what goes through it, and [`BundleFile::commit`] renames it over the bundle's file, or
//! drops it when the file already holds those bytes. So no bundle is ever in memory whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::allow::{placement_offline, AllowList, Candidate};
use crate::error::{Error, Result};
use crate::format::{BundleName, Digest};
use crate::fsutil;
use crate::render::{Object, ObjectWriter, Scopes};
use crate::select::Cluster;
use crate::sink::{BundleSink, Cleared, Job, Placed, Stage};
use crate::state::{BundleState, Status};

/// A k3s manifests directory.
#[derive(Debug, Clone)]
pub struct DirSink {
    dir: PathBuf,
}

impl DirSink {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: PathBuf) -> Self {
        DirSink { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `bundle`.
    pub fn file_for(&self, bundle: &BundleName) -> PathBuf {
        self.dir.join(format!("drover-{bundle}.yaml"))
    }

    /// Whether the bundle's file exists with exactly the content hashed as `sha256`.
    pub fn is_in_place(&self, bundle: &BundleName, sha256: &Digest) -> bool {
        file_sha256(&self.file_for(bundle)).as_ref() == Some(sha256)
    }

    /// Starts writing the manifests of `bundle` from blob `digest`: objects written to the
    /// returned [`BundleFile`] land in the bundle's file when it is committed, not before.
    pub fn begin(&self, bundle: &BundleName, digest: &Digest) -> Result<BundleFile> {
        fsutil::ensure_dir(&self.dir)?;
        let path = self.file_for(bundle);
        let tmp = fsutil::temp_beside(&path)?;
        let mut file = BundleFile {
            path,
            header: format!(
                "# Managed by drover-agent: bundle {bundle}, blob {digest}.\n\
                 # Local edits are overwritten on the next cycle; change the bundle and re-publish instead.\n"
            ),
            out: std::io::BufWriter::with_capacity(64 << 10, tmp),
            hasher: Sha256::new(),
            listed: None,
        };
        file.put_header()?;
        Ok(file)
    }

    /// Writes `documents` as the bundle's manifests at once; returns the sha256 of the file.
    #[cfg(test)]
    fn write_documents(&self, bundle: &BundleName, digest: &Digest, documents: &[&str]) -> Result<Digest> {
        let mut file = self.begin(bundle, digest)?;
        for doc in documents {
            file.write_document(doc)?;
        }
        file.commit()
    }

    /// Replaces the bundle's file by a tombstone so that k3s prunes its objects; returns
    /// the sha256 of the tombstone.
    pub fn write_tombstone(&self, bundle: &BundleName, reason: &str) -> Result<Digest> {
        let text = format!(
            "# Managed by drover-agent: bundle {bundle} was removed from this cluster ({reason}).\n\
             # This file holds no objects on purpose: k3s deletes the objects it applied from it.\n\
             # Keep it; deleting the file would not delete anything in the cluster.\n"
        );
        self.write(bundle, text.as_bytes())
    }

    fn write(&self, bundle: &BundleName, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let path = self.file_for(bundle);
        if file_sha256(&path).as_ref() == Some(&digest) {
            return Ok(digest);
        }
        fsutil::ensure_dir(&self.dir)?;
        fsutil::write_atomic(&path, bytes)?;
        Ok(digest)
    }
}

/// The dir sink in the cycle: a bundle is in place once its file holds it, so a dependent
/// waits for its dependencies to be written. An unchanged bundle whose file is intact is
/// neither fetched nor rendered.
impl BundleSink for DirSink {
    fn dependency_goal(&self) -> &'static str {
        "applied"
    }

    fn unblocks_dependents(&self, result: &BundleState, _previous: Option<&BundleState>) -> bool {
        result.digest.is_some() && result.file_sha256.is_some() && result.status != Status::Removed
    }

    async fn apply(&mut self, job: &Job<'_>, stage: &mut Stage<'_>) -> Result<Placed> {
        let (name, chosen) = (job.name(), job.chosen);
        let inputs = render_inputs(job, stage.render.cluster);
        if let Some(placed) = self.unchanged(job, &inputs).await {
            return Ok(placed);
        }
        let blob = stage.fetch(job).await?;
        // Rendered into a temporary file beside the bundle's file: the sink shows nothing
        // of it until the commit below.
        let file = {
            let (sink, name, digest) = (self.clone(), name.clone(), chosen.digest.clone());
            crate::blocking::run(move || sink.begin(&name, &digest)).await?
        };
        let file = match stage.render.allow {
            Some(_) => file.listing_objects(),
            None => file,
        };
        let (file, rendering) = stage.render_into(blob, job, file).await?;
        if let Some(allow) = stage.render.allow {
            file.check_allowed(&job.what(), allow, &rendering.scopes)?;
        }
        let objects = rendering.objects;
        stage
            .record_intent(name, &chosen.digest, format!("writing {}", chosen.digest.short()))
            .await?;
        let file_sha = crate::blocking::run(move || file.commit()).await?;
        Ok(Placed {
            status: Status::Applied,
            message: format!(
                "{} written to {} ({objects} objects, target {}{})",
                chosen.digest.short(),
                self.file_for(name).display(),
                chosen.target,
                chosen.wave_note()
            ),
            file_sha256: Some(file_sha),
            inputs: Some(inputs),
            reason: None,
        })
    }

    /// Writes the tombstone.
    async fn remove(&mut self, bundle: &BundleName, reason: &str) -> Result<Cleared> {
        let (sink, name, why) = (self.clone(), bundle.clone(), reason.to_string());
        let sha = crate::blocking::run(move || sink.write_tombstone(&name, &why)).await?;
        Ok(Cleared {
            message: format!("{reason}; tombstone written so k3s deletes its objects"),
            file_sha256: Some(sha),
        })
    }
}

impl DirSink {
    /// The result for a job whose blob and render inputs are those of the previous apply
    /// and whose file still holds what was written, or `None` when it must be written.
    async fn unchanged(&self, job: &Job<'_>, inputs: &Digest) -> Option<Placed> {
        let previous = job.previous?;
        let file_sha = previous.file_sha256.clone()?;
        if !job.same_digest() || previous.inputs.as_ref() != Some(inputs) {
            return None;
        }
        let (sink, name, sha) = (self.clone(), job.name().clone(), file_sha.clone());
        if !crate::blocking::run(move || sink.is_in_place(&name, &sha)).await {
            return None;
        }
        // Keep the message of the apply that put it there: an unchanged poll then leaves
        // the state byte-for-byte as it was, and nothing is rewritten.
        let message = match previous.status {
            Status::Applied => previous.message.clone(),
            _ => format!("{} already in place", job.chosen.digest.short()),
        };
        Some(Placed {
            status: Status::Applied,
            message,
            file_sha256: Some(file_sha),
            inputs: Some(inputs.clone()),
            reason: None,
        })
    }
}

/// Fingerprint of the render inputs other than the blob: the same blob renders differently
/// for another cluster name, other labels or another default namespace. The declared size
/// is in it too: an index that gives an applied digest another size is no longer
/// "unchanged", so the blob is checked against that size (and refused: none can match).
fn render_inputs(job: &Job<'_>, cluster: &Cluster) -> Digest {
    let inputs = serde_json::json!({
        "digest": job.chosen.digest.as_str(),
        "size": job.chosen.size,
        "namespace": job.bundle.namespace.as_deref(),
        "cluster": cluster.name,
        "labels": cluster.labels,
    });
    Digest::of(inputs.to_string().as_bytes())
}

/// A bundle's file being written: a temporary file beside it, hashed as it is written.
/// Dropping it without [`BundleFile::commit`] removes the temporary file and leaves the
/// bundle's file as it was.
#[derive(Debug)]
pub struct BundleFile {
    path: PathBuf,
    header: String,
    out: std::io::BufWriter<tempfile::NamedTempFile>,
    hasher: Sha256,
    /// Who each object written is, when the allow-list will check them.
    listed: Option<Vec<Listed>>,
}

/// An object written, as the allow-list judges it.
#[derive(Debug)]
struct Listed {
    group: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

impl BundleFile {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(self.out.get_ref().path(), e))
    }

    fn put_header(&mut self) -> Result<()> {
        let header = std::mem::take(&mut self.header);
        let put = self.put(header.as_bytes());
        self.header = header;
        put
    }

    /// Puts the written file in place of the bundle's file (flushed to disk, renamed,
    /// directory synced), unless that file already holds exactly these bytes: then nothing
    /// changes, so k3s is not woken. Returns the sha256 of the file.
    pub fn commit(self) -> Result<Digest> {
        let digest = Digest::from_hasher(self.hasher);
        let tmp_path = self.out.get_ref().path().to_path_buf();
        let tmp = self.out.into_inner().map_err(|e| Error::io(tmp_path, e.into_error()))?;
        if file_sha256(&self.path).as_ref() == Some(&digest) {
            return Ok(digest);
        }
        fsutil::persist(tmp, &self.path)?;
        Ok(digest)
    }
}

impl BundleFile {
    /// The same file, also noting who each object written is, for [`BundleFile::check_allowed`].
    pub fn listing_objects(mut self) -> Self {
        self.listed = Some(Vec::new());
        self
    }

    /// Checks the objects written against `allow`, placed by `scopes` without an API
    /// server to ask ([`crate::allow::placement_offline`]). A file not
    /// [listing](BundleFile::listing_objects) its objects has nothing to check.
    pub fn check_allowed(&self, what: &str, allow: &AllowList, scopes: &Scopes) -> Result<()> {
        let listed = self.listed.iter().flatten();
        allow.check(
            what,
            listed.map(|o| Candidate {
                group: &o.group,
                kind: &o.kind,
                name: &o.name,
                placement: placement_offline(scopes.cluster_scoped(&o.group, &o.kind), o.namespace.as_deref()),
            }),
        )
    }

    /// Appends one YAML document, after a `---` separator.
    fn write_document(&mut self, document: &str) -> Result<()> {
        self.put(b"---\n")?;
        self.put(document.as_bytes())
    }
}

impl ObjectWriter for BundleFile {
    fn write_object(&mut self, object: Object) -> Result<()> {
        self.write_document(&object.text)?;
        if let Some(listed) = &mut self.listed {
            listed.push(Listed {
                group: object.group().to_string(),
                name: object.name_or_prefix().to_string(),
                kind: object.kind,
                namespace: object.namespace,
            });
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<()> {
        use std::io::Seek;
        let path = self.out.get_ref().path().to_path_buf();
        self.out.flush().map_err(|e| Error::io(&path, e))?;
        let file = self.out.get_mut().as_file_mut();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .map_err(|e| Error::io(&path, e))?;
        self.hasher = Sha256::new();
        if let Some(listed) = &mut self.listed {
            listed.clear();
        }
        self.put_header()
    }
}

/// The sha256 of a file's content, read in pieces; `None` when it cannot be read.
fn file_sha256(path: &Path) -> Option<Digest> {
    Digest::of_file(path).ok().map(|(digest, _)| digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_multi_document_file_per_bundle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = DirSink::new(dir.path().join("manifests"));
        let name = BundleName::parse("web").expect("name");
        let sha = sink
            .write_documents(&name, &Digest::of(b"blob"), &["a: 1\n", "b: 2\n"])
            .expect("apply");
        let text = std::fs::read_to_string(dir.path().join("manifests/drover-web.yaml")).expect("read");
        assert!(text.ends_with("---\na: 1\n---\nb: 2\n"), "{text}");
        assert!(sink.is_in_place(&name, &sha));
    }

    #[test]
    fn unchanged_content_is_not_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = DirSink::new(dir.path().to_path_buf());
        let name = BundleName::parse("web").expect("name");
        sink.write_documents(&name, &Digest::of(b"blob"), &["a: 1\n"])
            .expect("apply");
        use std::os::unix::fs::MetadataExt;
        let path = sink.file_for(&name);
        let before = std::fs::metadata(&path).expect("stat").ino();
        sink.write_documents(&name, &Digest::of(b"blob"), &["a: 1\n"])
            .expect("apply");
        let after = std::fs::metadata(&path).expect("stat").ino();
        assert_eq!(
            before, after,
            "an identical rewrite would replace the file and wake k3s"
        );
    }

    #[test]
    fn removal_leaves_a_tombstone_without_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = DirSink::new(dir.path().to_path_buf());
        let name = BundleName::parse("web").expect("name");
        sink.write_documents(&name, &Digest::of(b"blob"), &["a: 1\n"])
            .expect("apply");
        sink.write_tombstone(&name, "no target matches").expect("remove");
        let text = std::fs::read_to_string(sink.file_for(&name)).expect("tombstone");
        assert!(text.lines().all(|l| l.starts_with('#')), "{text}");
    }

    #[test]
    fn an_uncommitted_file_changes_nothing_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = DirSink::new(dir.path().to_path_buf());
        let name = BundleName::parse("web").expect("name");
        let sha = sink
            .write_documents(&name, &Digest::of(b"blob"), &["a: 1\n"])
            .expect("apply");
        let mut file = sink.begin(&name, &Digest::of(b"other")).expect("begin");
        file.write_document("b: 2\n").expect("write");
        drop(file);
        assert!(sink.is_in_place(&name, &sha));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("drover-web.yaml")]);
    }

    #[test]
    fn a_restarted_file_holds_only_what_came_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = DirSink::new(dir.path().to_path_buf());
        let (web, api) = (
            BundleName::parse("web").expect("name"),
            BundleName::parse("api").expect("name"),
        );
        let mut file = sink.begin(&web, &Digest::of(b"blob")).expect("begin");
        file.write_document("stale: 1\n").expect("write");
        file.restart().expect("restart");
        file.write_document("a: 1\n").expect("write");
        let restarted = file.commit().expect("commit");
        let direct = sink
            .write_documents(&api, &Digest::of(b"blob"), &["a: 1\n"])
            .expect("apply");
        let text = |n: &BundleName| std::fs::read_to_string(sink.file_for(n)).expect("read");
        assert_eq!(text(&web).replace("bundle web", "bundle api"), text(&api));
        assert!(!text(&web).contains("stale"));
        assert_eq!(restarted, Digest::of(text(&web).as_bytes()));
        assert_eq!(direct, Digest::of(text(&api).as_bytes()));
    }

    fn config_map(name: &str, namespace: Option<&str>) -> Object {
        Object {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: Some(name.into()),
            generate_name: None,
            namespace: namespace.map(str::to_string),
            body: serde_norway::Mapping::new(),
            text: format!("kind: ConfigMap\nmetadata: {{name: {name}}}\n"),
        }
    }

    #[test]
    fn the_objects_written_since_the_last_restart_are_checked_against_the_allow_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = DirSink::new(dir.path().to_path_buf());
        let allow = AllowList::new(["web".to_string()], false).expect("allow");
        let name = BundleName::parse("web").expect("name");
        let mut file = sink
            .begin(&name, &Digest::of(b"blob"))
            .expect("begin")
            .listing_objects();
        file.write_object(config_map("stale", Some("elsewhere")))
            .expect("write");
        file.restart().expect("restart");
        file.write_object(config_map("ok", Some("web"))).expect("write");
        file.check_allowed("bundle web", &allow, &Scopes::default())
            .expect("allowed");
        file.write_object(config_map("loose", None)).expect("write");
        let err = file
            .check_allowed("bundle web", &allow, &Scopes::default())
            .expect_err("no namespace: counted as cluster-scoped")
            .to_string();
        assert!(err.ends_with("ConfigMap loose (cluster-scoped)"), "{err}");
    }
}
