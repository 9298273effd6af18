//! The house's rules, checked on the source itself (no tool to install):
//!
//! - no two modules of the library import each other, directly or round a
//!   circle (a module is a file; an import is any `use` or path naming an
//!   item of another module — `crate::`, `super::`, `self::` or a child's
//!   name). Test modules (`#[cfg(test)] mod tests { .. }`) are left out:
//!   they may reach across to check that two sides agree.
//! - no `#[path]` attribute: a file is a module of its own;
//! - no source file over 800 lines.
//!
//! On a circle the test names each module in it and, for each arrow, the
//! paths that make it, so the fix can start from the message.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`crate::a::b`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// `code` without comments, string and char literals, and test modules.
fn strip(code: &str) -> String {
    let b = code.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // A raw string: r"..", r#".."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                // A char literal ('a', '\n', '\u{..}'), not a lifetime.
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    drop_test_modules(&out)
}

/// `code` without its `#[cfg(test)] mod name { .. }` blocks.
fn drop_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let rest = &out[at + "#[cfg(test)]".len()..];
        let trimmed = rest.trim_start();
        if !(trimmed.starts_with("mod ") || trimmed.starts_with("pub(crate) mod ")) {
            // A test-only item that is not a module: keep it, look further.
            out.replace_range(at..at + "#[cfg(test)]".len(), "");
            continue;
        }
        let open = out[at..].find('{').map(|o| at + o);
        let semi = out[at..].find(';').map(|s| at + s);
        let open = match (open, semi) {
            (Some(o), Some(s)) if s < o => {
                // `mod tests;`: a file of its own, not read here.
                out.replace_range(at..=s, "");
                continue;
            }
            (Some(o), _) => o,
            (None, Some(s)) => {
                out.replace_range(at..=s, "");
                continue;
            }
            (None, None) => break,
        };
        let mut depth = 0;
        let mut end = open;
        for (k, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..=end, "");
    }
    out
}

/// `a::{b, c::{d, e as f}}` expanded to `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    // ` as name` becomes `@name` before the spaces go (a word may hold "as").
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut joined = String::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" {
            joined.push('@');
        } else {
            joined.push_str(words[i]);
        }
        i += 1;
    }
    let tree = joined;
    let Some(open) = tree.find('{') else {
        let path = tree.split('@').next().unwrap_or(&tree);
        return vec![path.trim_end_matches("::").to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (k, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.is_empty())
        .flat_map(|i| {
            expand(i).into_iter().map(move |p| match p.as_str() {
                "self" => prefix.trim_end_matches("::").to_string(),
                _ => format!("{prefix}{p}"),
            })
        })
        .collect()
}

/// Strip the `@name` an alias left (`bridge as gateway`).
fn without_alias(path: &str) -> &str {
    path.split('@').next().unwrap_or(path)
}

/// The paths `code` names: its `use` trees and inline `crate::`/`super::`
/// /`self::` paths.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut rest = String::with_capacity(code.len());
    let mut i = 0;
    while let Some(k) = code[i..].find("use ") {
        let at = i + k;
        let word_start =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let Some(end) = code[at..].find(';').map(|e| at + e) else {
            break;
        };
        let tree = &code[at + 4..end];
        if !word_start || tree.contains('(') || tree.contains('=') {
            // Not a use item (`use` ending an identifier, or in an expression).
            rest.push_str(&code[i..at + 4]);
            i = at + 4;
            continue;
        }
        out.extend(
            expand(tree)
                .into_iter()
                .map(|p| without_alias(&p).to_string()),
        );
        rest.push_str(&code[i..at]);
        i = end + 1;
    }
    rest.push_str(&code[i..]);
    let code = rest.as_str();
    let bytes = code.as_bytes();
    for root in ["crate::", "super::", "self::"] {
        let mut j = 0;
        while let Some(k) = code[j..].find(root) {
            let at = j + k;
            j = at + root.len();
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':')
            {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            out.push(code[at..end].trim_end_matches(':').to_string());
        }
    }
    out
}

/// The module (as a key of `modules`) that `path`, written in `from`,
/// names: the deepest module its leading segments reach.
fn resolve(
    path: &str,
    from: &[String],
    modules: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let (mut at, rest): (Vec<String>, &[&str]) = match segs.first().copied()? {
        "crate" => (Vec::new(), &segs[1..]),
        "self" => (from.to_vec(), &segs[1..]),
        "super" => {
            let mut m = from.to_vec();
            let mut k = 0;
            while segs.get(k) == Some(&"super") {
                m.pop()?;
                k += 1;
            }
            (m, &segs[k..])
        }
        first => {
            // A child module's name (edition 2018 paths), else not ours.
            let mut child = from.to_vec();
            child.push(first.to_string());
            if !modules.contains_key(&child) {
                return None;
            }
            (from.to_vec(), &segs[..])
        }
    };
    for s in rest {
        let mut next = at.clone();
        next.push(s.to_string());
        if modules.contains_key(&next) {
            at = next;
        } else {
            break;
        }
    }
    Some(at)
}

/// Strongly connected components of more than one module (Tarjan).
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct T<'a> {
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Vec<String>) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.g.get(v) {
            for w in ws {
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let l = t.low[v].min(t.low[w]);
                    t.low.insert(v, l);
                } else if t.on.contains(w) {
                    let l = t.low[v].min(t.index[w]);
                    t.low.insert(v, l);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                c.push(w.clone());
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                t.out.push(c);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_module_imports_another_that_imports_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.retain(|f| !f.ends_with("main.rs"));
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    assert!(
        modules.len() > 100,
        "the library's modules were not found under {src:?}"
    );
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut why: BTreeMap<(Vec<String>, Vec<String>), BTreeSet<String>> = BTreeMap::new();
    let mut edges = 0;
    for (m, f) in &modules {
        let code = strip(&std::fs::read_to_string(f).unwrap());
        let targets = graph.entry(m.clone()).or_default();
        for p in paths(&code) {
            let Some(to) = resolve(&p, m, &modules) else {
                continue;
            };
            if to == *m {
                continue;
            }
            if targets.insert(to.clone()) {
                edges += 1;
            }
            why.entry((m.clone(), to)).or_default().insert(p);
        }
    }
    assert!(
        edges > 200,
        "only {edges} imports were read: the reader is broken"
    );
    let found = circles(&graph);
    let mut report = String::new();
    for c in &found {
        report.push_str(&format!(
            "a circle of {} modules: {}\n",
            c.len(),
            c.iter().map(|m| name(m)).collect::<Vec<_>>().join(", ")
        ));
        let set: BTreeSet<&Vec<String>> = c.iter().collect();
        for a in c {
            for b in &graph[a] {
                if set.contains(b) {
                    let paths: Vec<_> = why[&(a.clone(), b.clone())].iter().cloned().collect();
                    report.push_str(&format!(
                        "  {} -> {}: {}\n",
                        name(a),
                        name(b),
                        paths.join(", ")
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "modules import each other:\n{report}");
}

#[test]
fn no_path_attributes_and_no_file_over_800_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    {
        let dir = "src";
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 100, "the sources were not found");
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines = text.lines().count();
        if lines > MAX_LINES {
            bad.push(format!(
                "{} has {lines} lines (at most {MAX_LINES}): split it along the data flow",
                f.display()
            ));
        }
        if strip(&text).contains("#[path") {
            bad.push(format!(
                "{} uses #[path]: make the file a module of its own",
                f.display()
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_reader_sees_use_trees_and_inline_paths() {
    let code = strip(
        "use crate::a::{b, c::{d as e, self}, Reason};\n// use crate::z;\nfn f() { super::g::h(); let s = \"crate::q\"; }\n#[cfg(test)]\nmod tests { use crate::t; }",
    );
    let p = paths(&code);
    assert_eq!(
        p,
        vec![
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c",
            "crate::a::Reason",
            "super::g::h"
        ]
    );
    let mut g = BTreeMap::new();
    let m = |s: &str| vec![s.to_string()];
    g.insert(m("a"), BTreeSet::from([m("b")]));
    g.insert(m("b"), BTreeSet::from([m("c")]));
    g.insert(m("c"), BTreeSet::from([m("a")]));
    g.insert(m("d"), BTreeSet::from([m("a")]));
    let c = circles(&g);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].len(), 3);
}
