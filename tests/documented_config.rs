//! The configuration reference (`docs/configuration.md`) is the embedded
//! defaults, whole: its YAML block parses with every key known, and every
//! value it shows is the default's (a renamed or removed key, or a changed
//! default the reference still shows the old way, fails here, not in a
//! user's hands).

use device_lorawan::config::Config;

/// Every leaf where `a` and `b` differ, as `Key.Path: a != b`.
fn differences(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = serde_json::Value::Null;
                differences(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{}: {a} != {b}", path.trim_start_matches('.'))),
        _ => {}
    }
}

#[test]
fn the_configuration_reference_is_the_defaults() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let block = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a yaml block in docs/configuration.md");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configuration.yaml");
    std::fs::write(&path, block).unwrap();
    let documented =
        Config::load(Some(&path)).unwrap_or_else(|e| panic!("docs/configuration.md: {e}"));
    let shown = serde_json::to_value(&documented).unwrap();
    // Loading gives empty client ids their derived names, as documented.
    let mut defaults = Config::default();
    defaults.derive_client_ids();
    let defaults = serde_json::to_value(defaults).unwrap();
    let mut diff = Vec::new();
    differences("", &shown, &defaults, &mut diff);
    assert!(
        diff.len() < 400 && shown.as_object().is_some_and(|o| o.len() >= 10),
        "the comparison read too little: {shown}"
    );
    assert!(
        diff.is_empty(),
        "docs/configuration.md shows values that are not the defaults:\n{}",
        diff.join("\n")
    );
}
