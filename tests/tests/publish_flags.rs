//! `drover publish` flags that would publish something no agent can use are refused.

use drover_e2e::{drover, text, Site};

#[test]
fn an_expiry_of_zero_is_refused_and_nothing_is_written() {
    let site = Site::new().with_examples();
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.key"));
    for zero in ["0s", "0d", "0ms"] {
        let out = drover(&["publish", &src, "--store", &store, "--key", &key, "--expires-in", zero]);
        assert_eq!(out.status.code(), Some(2), "{zero}: {}", text(&out));
        assert!(
            text(&out).contains("must stay valid for longer than 0"),
            "{zero}: {}",
            text(&out)
        );
        assert!(!site.path("store/index.json").exists());
    }
    let out = drover(&["publish", &src, "--store", &store, "--key", &key, "--expires-in", "3y"]);
    assert!(
        text(&out).contains("unit must be one of ms, s, m, h, d, w"),
        "{}",
        text(&out)
    );
}
