//! `${cluster.name}` and `${cluster.labels.<key>}` substitution.

use crate::select::Cluster;

/// Replaces `${cluster.name}` and `${cluster.labels.<key>}`. `$${` stands for a literal
/// `${`. Other `${…}` (shell scripts in ConfigMaps, for example) are left alone; but any
/// `${cluster.…}` that is not one of the two forms, or names a label the cluster does not
/// have, is an error.
pub fn substitute(text: &str, cluster: &Cluster) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${` escape: emit everything before the extra `$`, then a literal `${`.
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        if !after.starts_with("cluster.") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated variable \"${{{}\"", first_line(after)))?;
        let var = &after[..end];
        let value =
            match var.strip_prefix("cluster.") {
                Some("name") => cluster.name.as_str(),
                Some(other) => match other.strip_prefix("labels.") {
                    Some(key) => cluster.labels.get(key).map(String::as_str).ok_or_else(|| {
                        format!("variable ${{{var}}}: cluster {:?} has no label {key:?}", cluster.name)
                    })?,
                    None => {
                        return Err(format!(
                            "unknown variable ${{{var}}} (known: ${{cluster.name}}, ${{cluster.labels.<key>}})"
                        ))
                    }
                },
                None => unreachable!("checked starts_with(\"cluster.\") above"),
            };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or("");
    &line[..line.len().min(40)]
}
