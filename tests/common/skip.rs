//! Skipping a test whose tool or input is missing, visibly.
//!
//! Outside CI a test whose peer is missing passes after saying so; libtest
//! captures what tests print, so the notice goes straight to the process's
//! standard error (not captured) and into a list kept for this `cargo test`
//! run (one file per cargo process, under the target's temporary folder).
//! `tests/zz_skipped.rs`, the last test binary cargo runs, prints the list.
//! In CI ([`super::in_ci`]) a missing tool fails instead.

use std::io::Write;
use std::path::PathBuf;

/// The list of this run's skips: named for the cargo process running the
/// test binaries, so two runs do not mix.
pub fn list_file() -> PathBuf {
    let cargo = std::os::unix::process::parent_id();
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("skipped-{cargo}.txt"))
}

/// Skip the calling test: `what` is missing, `fix` says how to get it.
/// Panics in CI.
pub fn skip(what: &str, fix: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    assert!(
        !super::in_ci(),
        "{test}: {what} is required in CI ({fix}; see .ci/run)"
    );
    // Once per test and reason (a stand-in asks for its schema each start).
    static SAID: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    {
        let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
        let key = (test.clone(), what.to_string());
        if said.contains(&key) {
            return;
        }
        said.push(key);
    }
    let line = format!("SKIPPED {test}: {what}; to run it: {fix}");
    let _ = writeln!(std::io::stderr(), "{line}");
    // One write per line: appends from parallel tests do not interleave.
    let record = format!("{}: {line}\n", env!("CARGO_CRATE_NAME"));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(list_file())
    {
        let _ = f.write_all(record.as_bytes());
    }
}
