//! The agent reads the same settings from a YAML --config file, and refuses bad
//! configuration with exit code 2 before touching anything.

use drover_e2e::{bin, run, text, Site};

#[test]
fn agent_runs_from_a_config_file() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    site.write(
        "agent.yaml",
        &format!(
            "sources: [\"{}\"]\nkeys: [\"{}\"]\nclusterName: site-9\nlabels: {{env: prod, region: us}}\n\
             sink: \"dir:{}\"\nstateDir: \"{}\"\n",
            site.store_url(),
            site.p("keys/drover.pub"),
            site.p("manifests"),
            site.p("state")
        ),
    );
    let out = run(&bin("drover-agent"), &["--config", &site.p("agent.yaml"), "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(site.manifests()["drover-web.yaml"].contains("value: site-9"));
}

#[test]
fn bad_configuration_exits_2_and_names_the_problem() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let key = site.p("keys/drover.pub");
    let sink = format!("dir:{}", site.p("manifests"));
    let state = site.p("state");
    let cases: [(&[&str], &str); 4] = [
        (&["--source", "ftp://x/", "--key", &key], "unsupported scheme"),
        (
            &["--source", "file:///nowhere", "--key", "/nonexistent.pub"],
            "/nonexistent.pub",
        ),
        (&["--key", &key], "--source"),
        (
            &["--source", "file:///nowhere", "--key", &site.p("keys/drover.key")],
            "not a minisign public key",
        ),
    ];
    for (flags, expected) in cases {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend_from_slice(&["--cluster-name", "a", "--sink", &sink, "--state-dir", &state, "--once"]);
        let out = run(&bin("drover-agent"), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out)
        );
    }
    assert!(!site.path("manifests").exists() && !site.path("state").exists());
}
