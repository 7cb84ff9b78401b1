//! The spec says a blob MUST be exactly the `size` the signed index gives. An index that
//! keeps an applied bundle's digest but declares another size cannot be satisfied: the
//! agent refuses that bundle (its cached copy included) and keeps what is applied.

use drover_e2e::{minisign_sign, text, AgentRun, Site};

const CLUSTER: &str = "site-1";
const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];

#[test]
fn a_cached_blob_is_refused_when_the_signed_index_declares_another_size() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let run = || AgentRun::once(&site).cluster(CLUSTER).labels(LABELS).run();
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let applied = site.manifests();

    // A publisher other than drover signs the same digest with a size one byte larger.
    let path = site.path("store/index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    index["version"] = (index["version"].as_u64().unwrap() + 1).into();
    let base = index["bundles"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["name"] == "base")
        .unwrap();
    for target in base["targets"].as_array_mut().unwrap() {
        target["size"] = (target["size"].as_u64().unwrap() + 1).into();
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    minisign_sign(&site.path("keys/drover.key"), &path);

    let out = run();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "that bundle fails: {said}");
    let base_line = said.lines().find(|l| l.trim_start().starts_with("base")).unwrap_or("");
    assert!(base_line.contains("Error"), "base is refused: {said}");
    assert!(base_line.contains("size mismatch"), "says why: {said}");
    assert!(site.manifests() == applied, "what was applied stays: {said}");
}
