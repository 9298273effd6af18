//! Every option of every command says what it does (`--help`): a user
//! should not have to read the source to learn whether `--rate` is per
//! mote or in all, or `--bad-mic` a probability or a count.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists (not `help`).
fn commands(text: &str) -> Vec<String> {
    let Some(list) = text.split("Commands:\n").nth(1) else {
        return Vec::new();
    };
    list.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// The options of a long help text (`--help`) whose description is empty:
/// the lines after an option's own line are its description, indented.
fn undocumented(text: &str) -> Vec<String> {
    let Some(options) = text.split("Options:\n").nth(1) else {
        return Vec::new();
    };
    let lines: Vec<&str> = options.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if !(t.starts_with('-') && l.len() - t.len() <= 6) {
            continue;
        }
        // Short help puts the text on the same line; long help below it.
        let same_line = t
            .split("  ")
            .skip(1)
            .any(|p| !p.trim().is_empty() && !p.trim().starts_with('['));
        let below = lines
            .get(i + 1)
            .map(|n| n.trim())
            .is_some_and(|n| !n.is_empty() && !n.starts_with('-') && !n.starts_with('['));
        if !same_line && !below {
            out.push(t.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
        }
    }
    out
}

#[test]
fn every_option_of_every_command_has_help() {
    let mut missing = Vec::new();
    let mut seen = 0;
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        seen += 1;
        for o in undocumented(&text) {
            missing.push(format!("device-lorawan {} {o}", path.join(" ")));
        }
        for c in commands(&text) {
            let mut p = path.clone();
            p.push(c);
            todo.push(p);
        }
    }
    assert!(seen >= 12, "only {seen} commands were read");
    assert!(
        missing.is_empty(),
        "options without help:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_reader_finds_an_option_without_help() {
    let text = "Options:\n      --dir <DIR>\n          \n      --rate <RATE>\n          Uplinks per second\n  -h, --help\n          Print help\n";
    assert_eq!(undocumented(text), vec!["--dir <DIR>"]);
}
