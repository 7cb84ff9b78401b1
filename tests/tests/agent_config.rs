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

#[test]
fn json_logs_are_one_object_per_line_naming_the_decision() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let run_json = |source: &str| {
        run(
            &bin("drover-agent"),
            &[
                "--source",
                source,
                "--key",
                &site.p("keys/drover.pub"),
                "--cluster-name",
                "site-9",
                "--sink",
                &format!("dir:{}", site.p("manifests")),
                "--state-dir",
                &site.p("state"),
                "--once",
                "--log-format",
                "json",
            ],
        )
    };
    let out = run_json(&format!("file://{}", site.p("nowhere")));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    assert!(!events.is_empty(), "{stderr}");
    let refused = events
        .iter()
        .find(|e| e["message"] == "no valid index from any source; keeping what is applied")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(refused["level"], "WARN", "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("nowhere"), "{refused}");
}
