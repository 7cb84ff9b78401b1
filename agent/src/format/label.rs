//! Label keys and values, checked as Kubernetes checks them (`validation.IsQualifiedName`
//! and `IsValidLabelValue`), so a selector drover accepts is one Kubernetes would accept.

/// Checks a label key: an optional DNS-1123 subdomain prefix (at most 253 characters) and
/// `/`, then a name of 1–63 characters: letters, digits, `-`, `_`, `.`, alphanumeric at
/// both ends.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !is_dns_subdomain(prefix) {
            return Err(format!(
                "label key {key:?}: prefix {prefix:?} is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.', at most 253 characters)"
            ));
        }
    }
    if name.is_empty() || !is_label_name(name) {
        return Err(format!(
            "label key {key:?}: name {name:?} must be 1-63 characters of letters, digits, '-', '_', '.', alphanumeric at both ends"
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or 1–63 characters of letters, digits, `-`, `_`, `.`,
/// alphanumeric at both ends.
pub fn check_label_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "label {key:?}: value {value:?} must be empty or 1-63 characters of letters, digits, '-', '_', '.', alphanumeric at both ends"
        ))
    }
}

/// At most 63 characters of `[A-Za-z0-9_.-]`, alphanumeric at both ends (non-empty).
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(inner)
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A DNS-1123 subdomain: dot-separated labels of lowercase letters, digits and `-`,
/// alphanumeric at both ends, at most 253 characters in all.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|label| super::name::check_dns_label(label).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_label_keys_kubernetes_accepts() {
        for key in [
            "env",
            "app.kubernetes.io/name",
            "drover.dev/site",
            "a",
            "A_b.c-D",
            "x.y/z",
        ] {
            assert_eq!(check_label_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn refuses_the_label_keys_kubernetes_refuses() {
        let long = "k".repeat(64);
        let long_prefix = format!("{}.com/x", "a".repeat(250));
        for key in [
            "",
            "bad key!",
            "-env",
            "env-",
            "/x",
            "Example.com/x",
            "a/b/c",
            "x/",
            &long,
            &long_prefix,
        ] {
            assert!(check_label_key(key).is_err(), "{key:?} accepted");
        }
        assert_eq!(check_label_key(&"k".repeat(63)), Ok(()));
    }

    #[test]
    fn label_values_may_be_empty_but_not_spaced_or_long() {
        assert_eq!(check_label_value("k", ""), Ok(()));
        assert_eq!(check_label_value("k", "prod-1.eu_w"), Ok(()));
        for value in ["bad value!", "with space", "-x", "x.", &"v".repeat(64)] {
            let e = check_label_value("k", value).expect_err(value);
            assert!(e.contains("label \"k\": value"), "{e}");
        }
    }
}
