//! A wrong key file gets a diagnosis that names the right one, and key IDs (minisign's own)
//! appear where an operator checks which key signed what: `drover verify` and the agent's
//! signature errors.

use drover_e2e::{drover, drover_ok, text, AgentRun, Site};

/// The key ID minisign wrote in the `untrusted comment:` line of a public key file.
fn key_id(site: &Site, pub_file: &str) -> String {
    let text = std::fs::read_to_string(site.path(pub_file)).unwrap();
    let first = text.lines().next().unwrap();
    first.rsplit(' ').next().unwrap().to_string()
}

#[test]
fn publish_with_the_public_key_says_it_needs_the_secret_key() {
    let site = Site::new().with_examples();
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.pub"));
    let out = drover(&["publish", &src, "--store", &store, "--key", &key]);
    assert!(!out.status.success());
    let said = text(&out);
    let id = key_id(&site, "keys/drover.pub");
    assert!(
        said.contains(&format!("this is the public key (key ID {id})")),
        "{said}"
    );
    assert!(said.contains("drover.key"), "{said}");
}

#[test]
fn an_agent_given_the_secret_key_says_to_trust_the_public_key() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let out = AgentRun::once(&site)
        .cluster("c1")
        .key(&site.p("keys/drover.key"))
        .run();
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("keys/drover.key") && said.contains("this is a minisign secret key"),
        "{said}"
    );
    assert!(said.contains("drover.pub"), "{said}");
}

#[test]
fn verify_prints_the_id_of_the_key_that_signed_and_a_refusal_names_both_ids() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let id = key_id(&site, "keys/drover.pub");
    let said = drover_ok(&["verify", &site.p("store"), "--key", &site.p("keys/drover.pub")]);
    assert!(said.contains(&format!("signature valid (key ID {id})")), "{said}");

    drover_ok(&["keygen", "--out", &site.p("other")]);
    let other = key_id(&site, "other/drover.pub");
    let out = drover(&["verify", &site.p("store"), "--key", &site.p("other/drover.pub")]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains(&format!("(key ID {other}): signed by a different key (key ID {id})")),
        "{said}"
    );
}
