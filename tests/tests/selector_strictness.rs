//! A typo in a selector never widens a rollout: `drover publish` refuses unknown keys in
//! `clusterSelector` and in `matchExpressions` entries (naming the file and the nearest
//! valid key), the agent refuses an index that carries one, and publish warns when a
//! selector it accepts selects every cluster without the author writing `{}`.

use drover_e2e::{drover, minisign_sign, text, AgentRun, Site};

/// A site with one plain bundle `shop` whose bundle.yaml is `spec`.
fn shop_site(spec: &str) -> Site {
    let site = Site::new();
    site.write("src/bundles/shop/bundle.yaml", spec);
    site.write(
        "src/bundles/shop/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shop\n  namespace: default\ndata:\n  a: b\n",
    );
    site
}

/// `drover publish` that must fail without writing an index; returns its stderr.
fn publish_fails(site: &Site) -> String {
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.key"));
    let out = drover(&["publish", &src, "--store", &store, "--key", &key]);
    assert!(!out.status.success(), "publish should fail: {}", text(&out));
    assert!(
        !site.path("store/index.json").exists(),
        "a refused publish writes no index"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `drover publish` that must succeed; returns its stderr.
fn publish_stderr(site: &Site) -> String {
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.key"));
    let out = drover(&["publish", &src, "--store", &store, "--key", &key]);
    assert!(out.status.success(), "publish: {}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn publish_refuses_a_misspelt_match_labels_naming_the_file_and_the_nearest_key() {
    for typo in ["matchLabel", "matchlabels"] {
        let site = shop_site(&format!("targets:\n  - clusterSelector: {{{typo}: {{type: shop}}}}\n"));
        let err = publish_fails(&site);
        assert!(err.contains("shop/bundle.yaml"), "{err}");
        assert!(
            err.contains(&format!("unknown key `{typo}` in label selector")),
            "{err}"
        );
        assert!(err.contains("did you mean `matchLabels`?"), "{err}");
    }
}

#[test]
fn publish_refuses_an_unknown_key_inside_a_match_expressions_entry() {
    let site = shop_site(
        "targets:\n  - clusterSelector:\n      matchExpressions:\n        - {key: type, operator: In, value: [shop]}\n",
    );
    let err = publish_fails(&site);
    assert!(err.contains("shop/bundle.yaml"), "{err}");
    assert!(err.contains("unknown key `value` in matchExpressions entry"), "{err}");
    assert!(err.contains("did you mean `values`?"), "{err}");
}

#[test]
fn publish_warns_when_a_written_selector_is_empty_and_so_selects_every_cluster() {
    for spec in [
        "targets:\n  - clusterSelector: {matchLabels: {}}\n",
        "targets:\n  - clusterSelector:\n      matchLabels:\n",
        "targets:\n  - clusterSelector: {matchExpressions: []}\n",
    ] {
        let site = shop_site(spec);
        let err = publish_stderr(&site);
        assert!(
            err.contains("drover: warning: ")
                && err.contains("shop/bundle.yaml: targets[0].clusterSelector has no labels or expressions, so it selects every cluster"),
            "{spec}: {err}"
        );
    }
    let site = shop_site("targets: []\n");
    let err = publish_stderr(&site);
    assert!(err.contains("targets: [] selects every cluster"), "{err}");
}

#[test]
fn publish_is_silent_when_the_author_wrote_an_explicit_empty_selector() {
    for spec in ["targets:\n  - clusterSelector: {}\n", "namespace: default\n"] {
        let site = shop_site(spec);
        let err = publish_stderr(&site);
        assert!(!err.contains("warning"), "{spec}: {err}");
    }
}

#[test]
fn agent_refuses_an_index_whose_selector_has_an_unknown_key_and_applies_nothing() {
    let site = shop_site("targets:\n  - clusterSelector: {matchLabels: {type: shop}}\n");
    publish_stderr(&site);
    // A publisher other than drover (or an older one) writes the typo and signs it.
    let index = std::fs::read_to_string(site.path("store/index.json")).unwrap();
    assert!(index.contains("\"matchLabels\""), "{index}");
    std::fs::write(
        site.path("store/index.json"),
        index.replace("\"matchLabels\"", "\"matchLabel\""),
    )
    .unwrap();
    minisign_sign(&site.path("keys/drover.key"), &site.path("store/index.json"));

    let out = AgentRun::once(&site).cluster("shop-1").label("type=shop").run();
    assert!(!out.status.success(), "agent must refuse the index: {}", text(&out));
    let said = text(&out);
    assert!(said.contains("index.json"), "{said}");
    assert!(said.contains("unknown key `matchLabel` in label selector"), "{said}");
    assert!(said.contains("did you mean `matchLabels`?"), "{said}");
    assert!(site.manifests().is_empty(), "nothing applied from a refused index");
}

#[test]
fn publish_refuses_label_keys_and_values_that_kubernetes_refuses() {
    for (spec, said) in [
        (
            "targets:\n  - clusterSelector: {matchLabels: {\"bad key!\": v}}\n",
            "label key \"bad key!\"",
        ),
        (
            "targets:\n  - clusterSelector: {matchLabels: {env: \"with space\"}}\n",
            "value \"with space\"",
        ),
        (
            "targets:\n  - clusterSelector: {matchLabels: {env: 3}}\n",
            "expected a label value string",
        ),
        (
            "targets:\n  - clusterSelector: {matchExpressions: [{key: env, operator: In, values: [\"bad value!\"]}]}\n",
            "value \"bad value!\"",
        ),
    ] {
        let err = publish_fails(&shop_site(spec));
        assert!(err.contains("shop/bundle.yaml") && err.contains(said), "{spec}: {err}");
    }
}

#[test]
fn agent_refuses_a_label_flag_that_kubernetes_would_refuse() {
    let site = shop_site("targets:\n  - clusterSelector: {}\n");
    publish_stderr(&site);
    let out = AgentRun::once(&site).cluster("shop-1").label("bad key!=x").run();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("label key \"bad key!\""), "{}", text(&out));
}
