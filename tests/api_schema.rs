//! Schemathesis (PyPI) with every check against the running binary and the
//! official device-sdk OpenAPI spec, authentication on: devices, uplinks
//! (so GET commands have values), a writable command and discovery set up,
//! so that every operation is reached. Zero failures.

mod common;

use std::process::Command;
use std::time::Duration;

use device_lorawan::sim::mote;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_with_every_check() {
    if !common::require("schemathesis") {
        return;
    }
    let Some(spec) = common::openapi_spec("device-sdk.yaml") else {
        return;
    };
    let token = "schemathesis-token-0123456789";
    let env = common::binary_env(
        &mote::devices_yaml(&mote::entries(3, 5)),
        &format!("ApiToken: \"{token}\""),
        "",
        "",
    );
    let mut svc = common::start_binary_with(
        &env.config,
        &[("DEVICES_DISCOVERY_ENABLED".into(), "true".into())],
        &env.config.with_file_name("service.log"),
    );
    common::until("the API", Duration::from_secs(20), || {
        common::scrape(env.api, "lorawan_uplinks_published_total").is_some()
    })
    .await;
    let report = common::sim_udp(env.udp, 5, 6, 0).await;
    common::until("the uplinks published", Duration::from_secs(15), || {
        common::published_lines(&env.out).len() >= report.expected.len()
    })
    .await;
    let out = Command::new("schemathesis")
        .arg("--config-file")
        .arg(common::repo_path("tests/schemathesis/schemathesis.toml"))
        .arg("run")
        .arg(&spec)
        .args([
            "--checks",
            "all",
            "--seed",
            "1",
            "--workers",
            "1",
            "--no-color",
        ])
        .env("API_URL", format!("http://{}/api/v3", env.api))
        .env("API_TOKEN", token)
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&out.stdout);
    svc.kill().unwrap();
    svc.wait().unwrap();
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every operation ran (none skipped for want of a reachable answer).
    assert!(!text.contains("Skipped"), "{text}");
}
