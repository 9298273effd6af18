//! The deployment files in compose/ and the Dockerfile: both compose files
//! parse (`docker-compose config`, which needs no engine), everything they
//! and the Dockerfile reference exists, and device-lorawan's environment in
//! each compose file gives a configuration the service accepts, with events
//! on the message bus and registration on.

mod common;

use std::path::Path;

use device_lorawan::config::{Config, Delivery};
use serde_yaml_ng::Value;

const FILES: [&str; 2] = [
    "compose/docker-compose.yml",
    "compose/docker-compose.balena.yml",
];

#[test]
fn compose_files_parse() {
    for file in FILES {
        // `docker-compose config` fails the test on a file it cannot read.
        if common::compose::merged(&[file], &[]).is_none() {
            return;
        }
    }
}

#[test]
fn everything_referenced_exists() {
    for file in FILES {
        let doc = common::compose::load(file);
        let dir = common::repo_path("compose");
        for (name, svc) in doc["services"].as_mapping().unwrap() {
            if let Some(build) = svc.get("build") {
                let ctx = dir.join(build["context"].as_str().unwrap());
                let dockerfile = ctx.join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
                assert!(
                    dockerfile.exists(),
                    "{file} {name:?}: {}",
                    dockerfile.display()
                );
            }
            for v in svc
                .get("volumes")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let host = v.as_str().unwrap().split(':').next().unwrap();
                if host.starts_with('.') {
                    assert!(dir.join(host).exists(), "{file} {name:?}: {host} missing");
                }
            }
        }
    }
    // Every COPY source of the Dockerfile's build context.
    let dockerfile = std::fs::read_to_string(common::repo_path("Dockerfile")).unwrap();
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(common::repo_path(src).exists(), "Dockerfile: {src} missing");
        }
    }
}

#[test]
fn compose_environment_gives_a_valid_config() {
    let base = common::repo_path("compose/configuration.yaml");
    for file in FILES {
        let doc = common::compose::load(file);
        let env = doc["services"]["device-lorawan"]["environment"]
            .as_mapping()
            .unwrap()
            .clone();
        let lookup = |k: &str| env.get(k).and_then(Value::as_str).map(str::to_string);
        let config = Config::load_with_env(Some(Path::new(&base)), lookup)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(config.edgex.delivery, Delivery::MessageBus, "{file}");
        assert_eq!(config.edgex.message_bus.host, "mqtt-broker", "{file}");
        assert!(config.edgex.metadata.enabled, "{file}");
        assert!(
            config.service.host != "localhost",
            "{file}: registered address must be reachable"
        );
    }
    // The example devices file loads, with the bundled profiles.
    let entries =
        device_lorawan::devices::load(&common::repo_path("compose/devices.example.yaml")).unwrap();
    device_lorawan::devices::Registry::build(entries, &common::profiles()).unwrap();
}
