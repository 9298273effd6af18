//! The layers above the YAML file: environment variables in the EdgeX
//! manner (the key path upper-cased and joined by `_`), merged into the
//! configuration's tree; the names a variable may have, to catch the one
//! that names no key; and the hints errors give.

use serde_yaml_ng::Value;

/// How a duration is written, for the errors that refuse one.
const DURATION_FORMS: &str = "a duration is a number and a unit, as 200ms, 5s, 10m, 24h or 1h 30m";

/// `message` with the accepted forms added when a duration was refused.
pub(super) fn with_duration_forms(message: String) -> String {
    if message.contains("duration") || message.contains("time unit") {
        format!("{message} ({DURATION_FORMS})")
    } else {
        message
    }
}

/// Overlay `over` onto `base`, mapping by mapping.
pub(super) fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        // An empty file (or key) overrides nothing.
        (_, Value::Null) => {}
        (slot, v) => *slot = v,
    }
}

/// Replace every leaf whose EdgeX-style variable name is set.
/// Set each leaf of `tree` an environment variable names (`path` in upper
/// case joined by `_`); `applied` gets each key set (`Ingest.Udp.Bind`)
/// and its variable.
pub(super) fn apply(
    tree: &mut Value,
    path: &mut Vec<String>,
    env: &impl Fn(&str) -> Option<String>,
    applied: &mut Vec<(String, String)>,
) {
    match tree {
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                let Some(k) = k.as_str() else { continue };
                path.push(k.to_string());
                apply(v, path, env, applied);
                path.pop();
            }
        }
        Value::Sequence(_) => {}
        leaf => {
            let name = path.join("_").to_uppercase();
            if let Some(text) = env(&name) {
                *leaf = serde_yaml_ng::from_str(&text).unwrap_or(Value::String(text));
                applied.push((path.join("."), name));
            }
        }
    }
}

/// Every environment variable name a key of the configuration answers to.
pub(super) fn names(
    tree: &Value,
    path: &mut Vec<String>,
    out: &mut std::collections::BTreeSet<String>,
) {
    match tree {
        Value::Mapping(m) => {
            for (k, v) in m {
                let Some(k) = k.as_str() else { continue };
                path.push(k.to_uppercase());
                names(v, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.join("_"));
        }
    }
}

/// Edit distance between two names (for a "did you mean").
pub(super) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
