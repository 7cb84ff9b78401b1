//! Kubernetes label selectors (matchLabels + matchExpressions) over cluster labels.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::label::{check_label_key, check_label_value};

/// A label selector with Kubernetes semantics: every `matchLabels` pair and every
/// `matchExpressions` requirement must hold. The empty selector `{}` matches everything.
///
/// Parsing is strict: a key other than `matchLabels` and `matchExpressions` is an error
/// naming the nearest valid key, because a misspelt `matchLabel:` silently dropped would
/// leave `{}` — every cluster. `null` for either key means no constraint, as in Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// One set-based requirement. Parsing is strict, as for [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Label keys and values follow Kubernetes' rules ([`check_label_key`],
    /// [`check_label_value`]).
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in &self.match_labels {
            check_label_key(key)
                .and_then(|()| check_label_value(key, value))
                .map_err(|m| format!("matchLabels: {m}"))?;
        }
        for (i, req) in self.match_expressions.iter().enumerate() {
            check_label_key(&req.key).map_err(|m| format!("matchExpressions[{i}]: {m}"))?;
            for value in &req.values {
                check_label_value(&req.key, value).map_err(|m| format!("matchExpressions[{i}]: {m}"))?;
            }
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

const SELECTOR_KEYS: &[&str] = &["matchLabels", "matchExpressions"];
const REQUIREMENT_KEYS: &[&str] = &["key", "operator", "values"];

impl<'de> Deserialize<'de> for LabelSelector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StrictVisitor::<LabelSelector>(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for Requirement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StrictVisitor::<Requirement>(std::marker::PhantomData))
    }
}

/// A map visitor that refuses unknown keys (naming the nearest known one) and repeated keys.
struct StrictVisitor<T>(std::marker::PhantomData<T>);

/// What [`StrictVisitor`] needs from the type it builds: its keys, and how to read each
/// key's value into the fields read so far (`Partial`).
trait StrictMap: Sized {
    const WHAT: &'static str;
    const KEYS: &'static [&'static str];
    type Partial: Default;
    /// Reads the value of `key` (one of `KEYS`, each at most once).
    fn read_value<'de, A: MapAccess<'de>>(partial: &mut Self::Partial, key: &str, map: &mut A) -> Result<(), A::Error>;
    fn finish<E: de::Error>(partial: Self::Partial) -> Result<Self, E>;
}

impl<'de, T: StrictMap> Visitor<'de> for StrictVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{} (a map with keys {})", T::WHAT, T::KEYS.join(", "))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut partial = T::Partial::default();
        let mut seen: Vec<&str> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let Some(known) = T::KEYS.iter().find(|k| **k == key) else {
                return Err(de::Error::custom(unknown_key(T::WHAT, &key, T::KEYS)));
            };
            if seen.contains(known) {
                return Err(de::Error::duplicate_field(known));
            }
            seen.push(known);
            T::read_value(&mut partial, known, &mut map)?;
        }
        T::finish(partial)
    }
}

impl StrictMap for LabelSelector {
    const WHAT: &'static str = "label selector";
    const KEYS: &'static [&'static str] = SELECTOR_KEYS;
    type Partial = LabelSelector;

    fn read_value<'de, A: MapAccess<'de>>(s: &mut Self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "matchLabels" => {
                let labels: Option<BTreeMap<String, LabelText>> = map.next_value()?;
                s.match_labels = labels.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            }
            _ => s.match_expressions = map.next_value::<Option<_>>()?.unwrap_or_default(),
        }
        Ok(())
    }

    fn finish<E: de::Error>(s: Self) -> Result<Self, E> {
        Ok(s)
    }
}

impl StrictMap for Requirement {
    const WHAT: &'static str = "matchExpressions entry";
    const KEYS: &'static [&'static str] = REQUIREMENT_KEYS;
    type Partial = (Option<String>, Option<Operator>, Vec<String>);

    fn read_value<'de, A: MapAccess<'de>>(p: &mut Self::Partial, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "key" => p.0 = Some(map.next_value()?),
            "operator" => p.1 = Some(map.next_value()?),
            _ => {
                let values: Option<Vec<LabelText>> = map.next_value()?;
                p.2 = values.unwrap_or_default().into_iter().map(|v| v.0).collect();
            }
        }
        Ok(())
    }

    fn finish<E: de::Error>((key, operator, values): Self::Partial) -> Result<Self, E> {
        Ok(Requirement {
            key: key.ok_or_else(|| E::missing_field("key"))?,
            operator: operator.ok_or_else(|| E::missing_field("operator"))?,
            values,
        })
    }
}

/// A label value as written: a string only. YAML would otherwise turn `env: 3` or
/// `env: true` into `"3"` and `"true"`, which Kubernetes refuses (label values are strings).
struct LabelText(String);

impl<'de> Deserialize<'de> for LabelText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = LabelText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a label value string (quote numbers and booleans, e.g. \"3\")")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LabelText, E> {
                Ok(LabelText(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Text)
    }
}

/// `unknown key `matchLabel` in label selector (did you mean `matchLabels`? valid keys: …)`.
fn unknown_key(what: &str, key: &str, known: &[&str]) -> String {
    let nearest = known
        .iter()
        .map(|k| (edit_distance(&key.to_ascii_lowercase(), &k.to_ascii_lowercase()), *k))
        .min()
        .filter(|(d, k)| *d <= (k.len() / 3).max(2));
    let hint = match nearest {
        Some((_, k)) => format!("did you mean `{k}`? "),
        None => String::new(),
    };
    format!("unknown key `{key}` in {what} ({hint}valid keys: {})", known.join(", "))
}

/// Levenshtein distance between two short ASCII-ish strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(json: &str) -> String {
        serde_json::from_str::<LabelSelector>(json)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn refuses_a_misspelt_match_labels_naming_the_nearest_key() {
        for typo in ["matchLabel", "matchlabels", "match_labels"] {
            let e = parse_error(&format!(r#"{{"{typo}":{{"type":"shop"}}}}"#));
            assert!(e.contains(&format!("unknown key `{typo}`")), "{e}");
            assert!(e.contains("did you mean `matchLabels`?"), "{e}");
        }
    }

    #[test]
    fn refuses_unknown_keys_inside_match_expressions() {
        let e = parse_error(r#"{"matchExpressions":[{"key":"env","operator":"In","value":["prod"]}]}"#);
        assert!(e.contains("unknown key `value` in matchExpressions entry"), "{e}");
        assert!(e.contains("did you mean `values`?"), "{e}");
    }

    #[test]
    fn names_no_nearest_key_when_nothing_is_close() {
        let e = parse_error(r#"{"clusters":["a"]}"#);
        assert!(!e.contains("did you mean"), "{e}");
        assert!(e.contains("valid keys: matchLabels, matchExpressions"), "{e}");
    }

    #[test]
    fn refuses_a_repeated_key() {
        let e = parse_error(r#"{"matchLabels":{"a":"b"},"matchLabels":{"c":"d"}}"#);
        assert!(e.contains("duplicate field `matchLabels`"), "{e}");
    }

    #[test]
    fn null_match_labels_and_expressions_mean_no_constraint() {
        let s: LabelSelector = serde_json::from_str(r#"{"matchLabels":null,"matchExpressions":null}"#).expect("parses");
        assert_eq!(s, LabelSelector::default());
    }

    #[test]
    fn a_requirement_needs_key_and_operator() {
        assert!(parse_error(r#"{"matchExpressions":[{"operator":"Exists"}]}"#).contains("missing field `key`"));
        assert!(parse_error(r#"{"matchExpressions":[{"key":"a"}]}"#).contains("missing field `operator`"));
    }

    #[test]
    fn refuses_a_number_or_boolean_label_value_unless_quoted() {
        for yaml in [
            "matchLabels: {env: 3}\n",
            "matchLabels: {env: true}\n",
            "matchExpressions: [{key: a, operator: In, values: [1]}]\n",
        ] {
            let e = serde_norway::from_str::<LabelSelector>(yaml)
                .expect_err(yaml)
                .to_string();
            assert!(e.contains("expected a label value string"), "{yaml}: {e}");
        }
        let quoted: LabelSelector = serde_norway::from_str("matchLabels: {env: \"3\"}\n").expect("parses");
        assert_eq!(quoted.match_labels["env"], "3");
    }

    #[test]
    fn validate_refuses_label_keys_and_values_kubernetes_refuses() {
        for json in [
            r#"{"matchLabels":{"bad key!":"v"}}"#,
            r#"{"matchLabels":{"env":"with space"}}"#,
            r#"{"matchExpressions":[{"key":"env","operator":"In","values":["bad value!"]}]}"#,
            r#"{"matchExpressions":[{"key":"-env","operator":"Exists"}]}"#,
        ] {
            let s: LabelSelector = serde_json::from_str(json).expect("parses");
            assert!(s.validate().is_err(), "{json} validated");
        }
        let long_key = format!(r#"{{"matchLabels":{{"{}":"v"}}}}"#, "k".repeat(72));
        let s: LabelSelector = serde_json::from_str(&long_key).expect("parses");
        assert!(s
            .validate()
            .expect_err("72-char key")
            .contains("matchLabels: label key"));
    }

    #[test]
    fn strict_parsing_reads_yaml_as_well() {
        let e = serde_norway::from_str::<LabelSelector>("matchLabel: {type: shop}\n")
            .expect_err("refused")
            .to_string();
        assert!(e.contains("did you mean `matchLabels`?"), "{e}");
    }

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

/// Laws of selector matching, checked on random selectors and label sets. Keys and values
/// come from small alphabets so that selectors and clusters actually share keys.
#[cfg(test)]
pub(crate) mod properties {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(&["env", "region", "tier", "gpu"][..]).prop_map(str::to_owned)
    }

    fn value() -> impl Strategy<Value = String> {
        prop::sample::select(&["", "prod", "eu", "edge", "x"][..]).prop_map(str::to_owned)
    }

    fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map(key(), value(), 0..5)
    }

    fn values() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(value(), 1..4)
    }

    /// A requirement that passes [`LabelSelector::validate`].
    fn requirement() -> impl Strategy<Value = Requirement> {
        let op = prop::sample::select(&[Operator::In, Operator::NotIn, Operator::Exists, Operator::DoesNotExist][..]);
        (key(), op, values()).prop_map(|(key, operator, values)| {
            let values = match operator {
                Operator::In | Operator::NotIn => values,
                Operator::Exists | Operator::DoesNotExist => Vec::new(),
            };
            Requirement { key, operator, values }
        })
    }

    /// Any valid selector (also used by the index round-trip properties).
    pub(crate) fn selector() -> impl Strategy<Value = LabelSelector> {
        (labels(), prop::collection::vec(requirement(), 0..5)).prop_map(|(match_labels, match_expressions)| {
            LabelSelector {
                match_labels,
                match_expressions,
            }
        })
    }

    fn only(requirement: Requirement) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![requirement],
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn match_labels_means_in_with_one_value(wanted in labels(), cluster in labels()) {
            let by_labels = LabelSelector { match_labels: wanted.clone(), match_expressions: Vec::new() };
            let by_expressions = LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: wanted
                    .into_iter()
                    .map(|(key, v)| Requirement { key, operator: Operator::In, values: vec![v] })
                    .collect(),
            };
            prop_assert_eq!(by_labels.matches(&cluster), by_expressions.matches(&cluster));
        }

        #[test]
        fn not_in_is_the_complement_of_in_when_the_key_exists(k in key(), vs in values(), cluster in labels()) {
            let is_in = only(Requirement { key: k.clone(), operator: Operator::In, values: vs.clone() });
            let not_in = only(Requirement { key: k.clone(), operator: Operator::NotIn, values: vs });
            if cluster.contains_key(&k) {
                prop_assert_ne!(is_in.matches(&cluster), not_in.matches(&cluster));
            } else {
                prop_assert!(!is_in.matches(&cluster) && not_in.matches(&cluster));
            }
        }

        #[test]
        fn exists_and_does_not_exist_are_complements(k in key(), cluster in labels()) {
            let exists = only(Requirement { key: k.clone(), operator: Operator::Exists, values: Vec::new() });
            let absent = only(Requirement { key: k.clone(), operator: Operator::DoesNotExist, values: Vec::new() });
            prop_assert_ne!(exists.matches(&cluster), absent.matches(&cluster));
            prop_assert_eq!(exists.matches(&cluster), cluster.contains_key(&k));
        }

        #[test]
        fn empty_selector_matches_every_cluster(cluster in labels()) {
            prop_assert!(LabelSelector::default().matches(&cluster));
        }

        #[test]
        fn requirement_order_does_not_matter(
            (s, shuffled) in selector().prop_flat_map(|s| {
                let requirements = s.match_expressions.clone();
                (Just(s), Just(requirements).prop_shuffle())
            }),
            cluster in labels(),
        ) {
            let reordered = LabelSelector { match_labels: s.match_labels.clone(), match_expressions: shuffled };
            prop_assert_eq!(s.matches(&cluster), reordered.matches(&cluster));
        }

        #[test]
        fn selector_is_the_conjunction_of_its_requirements(s in selector(), cluster in labels()) {
            let each = s.match_expressions.iter().all(|r| only(r.clone()).matches(&cluster))
                && s.match_labels.iter().all(|(k, v)| cluster.get(k) == Some(v));
            prop_assert_eq!(s.matches(&cluster), each);
        }

        #[test]
        fn generated_selectors_validate_and_survive_a_json_round_trip(s in selector()) {
            prop_assert!(s.validate().is_ok());
            let json = serde_json::to_string(&s).expect("serialises");
            let back: LabelSelector = serde_json::from_str(&json).expect("parses");
            prop_assert_eq!(back, s);
        }
    }
}
