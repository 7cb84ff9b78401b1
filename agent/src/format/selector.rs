//! Kubernetes label selectors (matchLabels + matchExpressions) over cluster labels.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A label selector with Kubernetes semantics: every `matchLabels` pair and every
/// `matchExpressions` requirement must hold. The empty selector `{}` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// One set-based requirement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// How `values` apply.
    pub operator: Operator,
    /// Values for `In` / `NotIn`; must be empty for `Exists` / `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Operators of a set-based requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// The label exists and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label exists.
    Exists,
    /// The label does not exist.
    DoesNotExist,
}

impl LabelSelector {
    /// Checks operator/values consistency, as the Kubernetes API server does.
    pub fn validate(&self) -> Result<(), String> {
        for (i, req) in self.match_expressions.iter().enumerate() {
            let needs_values = matches!(req.operator, Operator::In | Operator::NotIn);
            if needs_values && req.values.is_empty() {
                return Err(format!(
                    "matchExpressions[{i}]: operator {:?} needs values",
                    req.operator
                ));
            }
            if !needs_values && !req.values.is_empty() {
                return Err(format!(
                    "matchExpressions[{i}]: operator {:?} takes no values",
                    req.operator
                ));
            }
        }
        Ok(())
    }

    /// Whether a cluster with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| req.matches(labels))
    }
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn selector(json: &str) -> LabelSelector {
        let s: LabelSelector = serde_json::from_str(json).expect("selector parses");
        s.validate().expect("selector is valid");
        s
    }

    #[test]
    fn empty_selector_matches_every_cluster() {
        assert!(selector("{}").matches(&labels(&[])));
        assert!(selector("{}").matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn match_labels_needs_every_pair() {
        let s = selector(r#"{"matchLabels":{"env":"prod","region":"eu"}}"#);
        assert!(s.matches(&labels(&[("env", "prod"), ("region", "eu"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("region", "eu")])));
    }

    #[test]
    fn in_requires_the_label_to_exist() {
        let s = selector(r#"{"matchExpressions":[{"key":"env","operator":"In","values":["prod","stage"]}]}"#);
        assert!(s.matches(&labels(&[("env", "stage")])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[])));
    }

    #[test]
    fn not_in_matches_when_the_label_is_absent() {
        let s = selector(r#"{"matchExpressions":[{"key":"env","operator":"NotIn","values":["dev"]}]}"#);
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("env", "prod")])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
    }

    #[test]
    fn exists_and_does_not_exist_ignore_values() {
        let exists = selector(r#"{"matchExpressions":[{"key":"gpu","operator":"Exists"}]}"#);
        let absent = selector(r#"{"matchExpressions":[{"key":"gpu","operator":"DoesNotExist"}]}"#);
        let with_gpu = labels(&[("gpu", "")]);
        assert!(exists.matches(&with_gpu) && !absent.matches(&with_gpu));
        assert!(!exists.matches(&labels(&[])) && absent.matches(&labels(&[])));
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let s = selector(
            r#"{"matchLabels":{"env":"prod"},"matchExpressions":[{"key":"tier","operator":"In","values":["edge"]}]}"#,
        );
        assert!(s.matches(&labels(&[("env", "prod"), ("tier", "edge")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("tier", "core")])));
    }

    #[test]
    fn rejects_in_without_values_and_exists_with_values() {
        let in_empty: LabelSelector =
            serde_json::from_str(r#"{"matchExpressions":[{"key":"a","operator":"In"}]}"#).expect("parses");
        assert!(in_empty.validate().is_err());
        let exists_vals: LabelSelector =
            serde_json::from_str(r#"{"matchExpressions":[{"key":"a","operator":"Exists","values":["x"]}]}"#)
                .expect("parses");
        assert!(exists_vals.validate().is_err());
    }

    #[test]
    fn rejects_unknown_operator() {
        let r: Result<LabelSelector, _> =
            serde_json::from_str(r#"{"matchExpressions":[{"key":"a","operator":"Gt","values":["1"]}]}"#);
        assert!(r.is_err());
    }
}
