//! A store directory holds one channel: publishing another channel over it is refused
//! (agents of the first channel would all refuse the store), unless `--force`.

use drover_e2e::{drover, text, AgentRun, Site};

#[test]
fn publishing_another_channel_over_a_store_is_refused_and_agents_keep_working() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let index_before = std::fs::read(site.path("store/index.json")).unwrap();
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.key"));

    let out = drover(&["publish", &src, "--store", &store, "--key", &key, "--channel", "canary"]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("index.json") && said.contains("this store holds channel \"stable\""),
        "{said}"
    );
    assert!(said.contains("one store per channel"), "{said}");
    assert_eq!(
        std::fs::read(site.path("store/index.json")).unwrap(),
        index_before,
        "index untouched"
    );

    let out = AgentRun::once(&site)
        .cluster("site-1")
        .arg("--channel")
        .arg("stable")
        .run();
    assert!(
        out.status.success(),
        "a stable agent still applies the store: {}",
        text(&out)
    );

    let out = drover(&[
        "publish",
        &src,
        "--store",
        &store,
        "--key",
        &key,
        "--channel",
        "canary",
        "--force",
    ]);
    assert!(out.status.success(), "--force replaces the channel: {}", text(&out));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.path("store/index.json")).unwrap()).unwrap();
    assert_eq!(index["channel"], "canary");
}
