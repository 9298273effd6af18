//! The configuration reference in the README is a valid configuration: it
//! parses with every key known, and its values are the embedded defaults'
//! keys (a renamed or removed key fails here, not in a user's hands).

use device_lorawan::config::Config;

#[test]
fn the_readme_configuration_block_loads() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a yaml block in the README");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configuration.yaml");
    std::fs::write(&path, block).unwrap();
    let c = Config::load(Some(&path)).unwrap_or_else(|e| panic!("README config: {e}"));
    assert_eq!(
        c.handover,
        Config::default().handover,
        "the README shows the defaults"
    );
}
