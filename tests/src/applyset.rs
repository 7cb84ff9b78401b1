//! ApplySet identity as KEP-3659 defines it, computed here from the spec and not taken
//! from the agent, so a test can check the ids the agent writes.

use sha2::{Digest, Sha256};

/// The ApplySet id of a parent object: `applyset-<b64>-v1`, where `<b64>` is the URL-safe
/// base64 (RFC 4648 §5, no padding) of sha256(`<name>.<namespace>.<kind>.<group>`)
/// (KEP-3659, "ApplySet identification"; the core group is the empty string).
pub fn applyset_id(name: &str, namespace: &str, kind: &str, group: &str) -> String {
    let hash = Sha256::digest(format!("{name}.{namespace}.{kind}.{group}").as_bytes());
    format!("applyset-{}-v1", base64url(&hash))
}

/// URL-safe base64 without padding (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        let sextets = chunk.len() + 1;
        for i in 0..sextets {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_the_rfc_4648_test_vectors_without_padding() {
        let vectors = [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64url(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8", "the URL-safe alphabet");
    }

    #[test]
    fn applyset_id_hashes_name_namespace_kind_and_group_joined_by_dots() {
        // sha256("p.ns.ConfigMap.") computed with `printf %s p.ns.ConfigMap. | sha256sum | cut -d" " -f1 | xxd -r -p`
        // and encoded with `basenc --base64url | tr -d =`.
        assert_eq!(applyset_id("p", "ns", "ConfigMap", ""), EXPECTED_P_NS_CONFIGMAP);
    }

    const EXPECTED_P_NS_CONFIGMAP: &str = "applyset-znNVZvwGCMf5_JnqzDGY-O-wY3xxeI0RVndL5w-XkCM-v1";
}
