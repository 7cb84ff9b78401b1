//! Bundle names: untrusted strings that end up in file names, so they are checked when built.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A bundle name: a DNS-1123 label (lowercase letters, digits and `-`, at most 63
/// characters, starting and ending with a letter or digit). Safe to use in a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BundleName(String);

impl BundleName {
    /// Validates `s` as a bundle name.
    pub fn parse(s: &str) -> Result<Self, String> {
        check_dns_label(s).map_err(|m| format!("bundle name {m}"))?;
        Ok(BundleName(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the DNS-1123 label rule (used for bundle names and namespaces).
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|&b| ok_char(b) || b == b'-')
        && ok_char(bytes[0])
        && ok_char(bytes[bytes.len() - 1]);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS-1123 label (lowercase letters, digits, '-', 1-63 chars, alphanumeric at both ends)"
        ))
    }
}

impl TryFrom<String> for BundleName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        BundleName::parse(&s)
    }
}

impl From<BundleName> for String {
    fn from(n: BundleName) -> String {
        n.0
    }
}

impl fmt::Display for BundleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_names_that_could_escape_a_directory() {
        for bad in ["../x", "a/b", "", "-a", "a-", "A", "a.b", &"a".repeat(64)] {
            assert!(BundleName::parse(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["web", "a", "web-2", "0abc"] {
            assert!(BundleName::parse(good).is_ok(), "{good:?} refused");
        }
    }
}
