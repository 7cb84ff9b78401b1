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

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster {
            name: "site-7".into(),
            labels: [("env".to_string(), "prod".to_string())].into(),
        }
    }

    #[test]
    fn substitutes_cluster_name_and_labels() {
        let out = substitute("host: ${cluster.name}.${cluster.labels.env}.example", &cluster()).expect("ok");
        assert_eq!(out, "host: site-7.prod.example");
    }

    #[test]
    fn unknown_variable_is_an_error_not_an_empty_string() {
        let err = substitute("x: ${cluster.labels.region}", &cluster()).expect_err("missing label");
        assert!(err.contains("region"), "{err}");
        assert!(substitute("x: ${cluster.zone}", &cluster()).is_err());
        assert!(substitute("x: ${cluster.name", &cluster()).is_err());
    }

    #[test]
    fn other_dollar_braces_and_escapes_are_left_for_the_workload() {
        let out = substitute("run: echo ${HOME} $${cluster.name} ${cluster.name}", &cluster()).expect("ok");
        assert_eq!(out, "run: echo ${HOME} ${cluster.name} site-7");
    }
}
