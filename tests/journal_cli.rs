//! `device-lorawan journal verify` on an intact and on a tampered outbox.

use std::process::Command;

use device_lorawan::store::outbox::{FullPolicy, Journal};

fn verify(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["journal", "verify", "--dir"])
        .arg(dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn verify_reports_intact_and_tampered_journals() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = verify(dir.path());
    assert!(!ok && text.contains("no outbox journal"), "{text}");
    let mut j = Journal::open(dir.path(), 1 << 20, FullPolicy::Reject).unwrap();
    for i in 0..5 {
        j.append(format!("{{\"event\":{i}}}").as_bytes()).unwrap();
    }
    drop(j);
    let (ok, text) = verify(dir.path());
    assert!(ok && text.contains("intact, 5 records"), "{text}");

    // Change one byte of the third event's payload.
    let log = dir.path().join("outbox.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes
        .windows(11)
        .position(|w| w == b"{\"event\":2}")
        .unwrap();
    bytes[at + 9] = b'7';
    std::fs::write(&log, bytes).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(!ok && text.contains("record 3"), "{text}");
}
