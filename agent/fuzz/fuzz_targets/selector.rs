//! Fuzz target `selector`: label selectors (matchLabels + matchExpressions) as they come
//! from an index, and cluster labels as they come from the agent's config, through parsing,
//! validation and matching. Checks two laws on every valid selector: it survives a
//! serialise/parse round trip, and matchLabels means the same as `In` with one value.
//!
//! Input: JSON `{"selector": <LabelSelector>, "labels": {<key>: <value>}}`.
#![no_main]

use std::collections::BTreeMap;

use drover_agent::format::{LabelSelector, Operator, Requirement};
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
struct Input {
    selector: LabelSelector,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let selector = input.selector;
    if selector.validate().is_err() {
        return;
    }
    let matched = selector.matches(&input.labels);

    let json = serde_json::to_string(&selector).expect("a selector serialises");
    let back: LabelSelector = serde_json::from_str(&json).expect("a serialised selector parses");
    assert_eq!(back, selector);

    let mut as_expressions = LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: selector.match_expressions.clone(),
    };
    for (key, value) in &selector.match_labels {
        as_expressions.match_expressions.push(Requirement {
            key: key.clone(),
            operator: Operator::In,
            values: vec![value.clone()],
        });
    }
    assert_eq!(as_expressions.matches(&input.labels), matched);
});
