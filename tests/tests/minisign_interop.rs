//! Keys and signatures interoperate both ways with the stock minisign CLI.

use drover_e2e::{require, run, text, AgentRun, Site};

fn minisign() -> std::path::PathBuf {
    require("minisign", "minisign")
}

#[test]
fn stock_minisign_verifies_what_drover_signs() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let out = run(
        &minisign(),
        &[
            "-V",
            "-p",
            &site.p("keys/drover.pub"),
            "-m",
            &site.p("store/index.json"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("drover index channel=stable version=1"));
}

/// A key pair made by `minisign -G -W`, used by `drover publish` and trusted by the agent.
fn minisign_keys(site: &Site) -> (String, String) {
    let (pk, sk) = (site.p("mkeys/minisign.pub"), site.p("mkeys/minisign.key"));
    std::fs::create_dir_all(site.path("mkeys")).unwrap();
    let out = run(&minisign(), &["-G", "-W", "-p", &pk, "-s", &sk]);
    assert!(out.status.success(), "{}", text(&out));
    (pk, sk)
}

#[test]
fn drover_publishes_with_a_key_made_by_minisign() {
    let site = Site::new().with_examples();
    let (pk, sk) = minisign_keys(&site);
    drover_e2e::drover_ok(&["publish", &site.p("src"), "--store", &site.p("store"), "--key", &sk]);
    let out = run(&minisign(), &["-V", "-p", &pk, "-m", &site.p("store/index.json")]);
    assert!(out.status.success(), "{}", text(&out));
    drover_e2e::drover_ok(&["verify", &site.p("store"), "--key", &pk]);
}

fn agent_accepts_index_signed_by_stock_minisign(legacy: bool) {
    let site = Site::new().with_examples();
    let (pk, sk) = minisign_keys(&site);
    site.publish(&[]);
    // Re-sign the index with stock minisign and the minisign-made key, and trust only it.
    let index = site.p("store/index.json");
    let mut args = vec!["-S", "-s", sk.as_str(), "-m", index.as_str()];
    if legacy {
        args.insert(1, "-l");
    }
    let out = run(&minisign(), &args);
    assert!(out.status.success(), "{}", text(&out));
    let sig = std::fs::read_to_string(site.path("store/index.json.minisig")).unwrap();
    // Legacy signatures use algorithm "Ed" (base64 "RW…"), prehashed ones "ED" ("RU…").
    let algorithm = sig.lines().nth(1).map(|l| l[..2].to_string()).unwrap();
    assert_eq!(algorithm, if legacy { "RW" } else { "RU" }, "legacy={legacy}");
    std::fs::copy(&pk, site.path("keys/drover.pub")).unwrap();
    let out = AgentRun::once(&site)
        .cluster("site-7")
        .labels(&["env=prod", "region=eu"])
        .run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(site.manifests().contains_key("drover-web.yaml"));
}

#[test]
fn agent_accepts_prehashed_signature_made_by_stock_minisign() {
    agent_accepts_index_signed_by_stock_minisign(false);
}

#[test]
fn agent_accepts_legacy_signature_made_by_stock_minisign() {
    agent_accepts_index_signed_by_stock_minisign(true);
}
