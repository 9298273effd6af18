//! Independent implementations run as peers from `tests/peers/` (PyPI and
//! npm packages `.ci/run` installs).

use std::io::Write;
use std::process::{Command, Stdio};

/// Run a peer; `None` (skip) if it is not installed, a panic under CI.
pub fn peer(program: &str, args: &[&str], stdin: &str, probe: &[&str]) -> Option<String> {
    if !super::require(program) {
        return None;
    }
    let ok = Command::new(program)
        .args(probe)
        .current_dir(super::repo_path("tests/peers"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        super::skip::skip(
            &format!("the peer {program} {probe:?} is not installed"),
            "pip install -r tests/peers/requirements.txt; npm ci --prefix tests/peers",
        );
        return None;
    }
    let mut child = Command::new(program)
        .args(args)
        .current_dir(super::repo_path("tests/peers"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program} {args:?} failed");
    Some(String::from_utf8(out.stdout).unwrap())
}
