//! The list of what this `cargo test` run skipped, and why: the last test
//! binary cargo runs (binaries run in name order), printing straight to
//! standard error so libtest does not swallow it. Nothing skipped: nothing
//! printed. In CI nothing can be skipped (a missing tool fails its test).

mod common;

use std::io::Write;

#[test]
fn list_what_this_run_skipped() {
    let file = common::skip::list_file();
    let Ok(text) = std::fs::read_to_string(&file) else {
        return;
    };
    let _ = std::fs::remove_file(&file);
    let lines: std::collections::BTreeSet<&str> = text.lines().collect();
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "\n{} test(s) SKIPPED in this run (a peer or input missing; .ci/run installs them all):",
        lines.len()
    );
    for l in &lines {
        let _ = writeln!(err, "  {l}");
    }
    assert!(
        !common::in_ci() || lines.is_empty(),
        "skips in CI: {lines:?}"
    );
}
