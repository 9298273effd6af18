//! Vendors' codec fixtures as they ship them, read into [`Examples`]:
//!
//! - The Things Network's device repository: a codec YAML
//!   (`<device>-codec.yaml`) with `uplinkDecoder` / `downlinkEncoder`, each
//!   naming its script (`fileName`) and carrying `examples` (`input:
//!   {fPort, bytes, recvTime}`, `output: {data, warnings, errors}` or
//!   `{bytes, fPort}`). `normalizedOutput`, `hardwareVersions` and
//!   `downlinkDecoder` are not ours to check and are skipped.
//! - ChirpStack's device profiles: `codecs/test_decode_<codec>.json` and
//!   `test_encode_<codec>.json` beside `codecs/<codec>.js`, lists of
//!   `{name, input, expected}`. They are JavaScript literals rather than
//!   JSON (comments, `0x78`), so they are read by the JavaScript engine.
//! - Our own `<Profile>.examples.yaml` beside `<Profile>.js`.
//!
//! A folder is searched for all three; a file that does not read is one
//! failure, and the others still run.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::examples::{Example, Examples};

/// One script and the examples that test it, from one fixture file.
#[derive(Debug)]
pub struct Suite {
    /// The fixture file.
    pub source: PathBuf,
    pub script: PathBuf,
    pub examples: Examples,
}

/// Why a fixture file did not read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FixtureError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, message: impl std::fmt::Display) -> FixtureError {
    FixtureError {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Every fixture under `path` (a fixture file, or a folder searched to a
/// depth of 6), in path order: the suites read, and the files that did not.
pub fn find(path: &Path) -> (Vec<Suite>, Vec<FixtureError>) {
    let mut files = Vec::new();
    if path.is_dir() {
        walk(path, 6, &mut files);
        files.sort();
    } else {
        files.push(path.to_owned());
    }
    let (mut suites, mut errors) = (Vec::new(), Vec::new());
    for f in files {
        match read(&f) {
            Ok(Some(s)) => suites.extend(s),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    (suites, errors)
}

fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if depth > 0
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                walk(&p, depth - 1, out);
            }
        } else if kind(&p).is_some() {
            out.push(p);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Ours,
    Ttn,
    ChirpStackDecode,
    ChirpStackEncode,
}

fn kind(p: &Path) -> Option<Kind> {
    let name = p.file_name()?.to_str()?;
    if name.ends_with(".examples.yaml") || name.ends_with(".examples.yml") {
        Some(Kind::Ours)
    } else if name.starts_with("test_decode_") && name.ends_with(".json") {
        Some(Kind::ChirpStackDecode)
    } else if name.starts_with("test_encode_") && name.ends_with(".json") {
        Some(Kind::ChirpStackEncode)
    } else if name.ends_with("-codec.yaml") || name.ends_with("-codec.yml") {
        Some(Kind::Ttn)
    } else {
        None
    }
}

/// The suites of one fixture file; `None` for a file that is not one.
pub fn read(path: &Path) -> Result<Option<Vec<Suite>>, FixtureError> {
    let Some(k) = kind(path) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    Ok(Some(match k {
        Kind::Ours => {
            let examples: Examples = serde_yaml_ng::from_str(&text).map_err(|e| err(path, e))?;
            let stem = name.split(".examples.").next().unwrap_or(name);
            vec![Suite {
                source: path.to_owned(),
                script: dir.join(format!("{stem}.js")),
                examples,
            }]
        }
        Kind::Ttn => ttn(path, dir, &text)?,
        Kind::ChirpStackDecode | Kind::ChirpStackEncode => {
            let codec = name
                .trim_start_matches("test_decode_")
                .trim_start_matches("test_encode_")
                .trim_end_matches(".json");
            let list = super::js::eval_literal(&text).map_err(|e| err(path, e))?;
            let list = list
                .as_array()
                .ok_or_else(|| err(path, "not a list of tests"))?;
            let mut examples = Examples::default();
            for (i, t) in list.iter().enumerate() {
                let e = Example {
                    description: t["name"].as_str().unwrap_or("").to_string(),
                    input: t.get("input").cloned().unwrap_or(Value::Null),
                    output: t
                        .get("expected")
                        .cloned()
                        .ok_or_else(|| err(path, format!("test {}: no expected", i + 1)))?,
                };
                match k {
                    Kind::ChirpStackDecode => examples.uplink.push(e),
                    _ => examples.downlink.push(e),
                }
            }
            vec![Suite {
                source: path.to_owned(),
                script: dir.join(format!("{codec}.js")),
                examples,
            }]
        }
    }))
}

/// A TTN codec YAML: one suite per script it names.
fn ttn(path: &Path, dir: &Path, text: &str) -> Result<Vec<Suite>, FixtureError> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| err(path, e))?;
    let mut suites: Vec<Suite> = Vec::new();
    for (key, uplink) in [("uplinkDecoder", true), ("downlinkEncoder", false)] {
        let Some(part) = doc.get(key) else { continue };
        let file = part["fileName"]
            .as_str()
            .ok_or_else(|| err(path, format!("{key}: no fileName")))?;
        let script = dir.join(file);
        let mut examples = Vec::new();
        for (i, e) in part["examples"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let output = e
                .get("output")
                .cloned()
                .ok_or_else(|| err(path, format!("{key} example {}: no output", i + 1)))?;
            examples.push(Example {
                description: e["description"].as_str().unwrap_or("").to_string(),
                input: e.get("input").cloned().unwrap_or(Value::Null),
                output,
            });
        }
        let at = match suites.iter().position(|s| s.script == script) {
            Some(at) => at,
            None => {
                suites.push(Suite {
                    source: path.to_owned(),
                    script,
                    examples: Examples::default(),
                });
                suites.len() - 1
            }
        };
        let list = &mut suites[at].examples;
        if uplink {
            list.uplink.extend(examples);
        } else {
            list.downlink.extend(examples);
        }
    }
    if suites.is_empty() {
        return Err(err(path, "neither uplinkDecoder nor downlinkEncoder"));
    }
    Ok(suites)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_vendor_format_and_survives_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("ttn/acme")).unwrap();
        std::fs::create_dir_all(d.join("cs/vendors/acme/codecs")).unwrap();
        std::fs::write(
            d.join("ttn/acme/probe-codec.yaml"),
            "uplinkDecoder:\n  fileName: probe.js\n  examples:\n    - description: one\n      input: { fPort: 1, bytes: [1, 2] }\n      output: { data: { a: 1 } }\n      normalizedOutput: { data: [ { x: 1 } ] }\ndownlinkEncoder:\n  fileName: probe.js\n  examples:\n    - description: two\n      input: { data: { led: green } }\n      output: { bytes: [1], fPort: 2 }\n",
        )
        .unwrap();
        std::fs::write(
            d.join("cs/vendors/acme/codecs/test_decode_probe.json"),
            "[\n  {\n    \"name\": \"t1\",\n    \"input\": {\n      \"fPort\": 0x78, // fPort 120\n      \"bytes\": [0x00, 0x0f]\n    },\n    \"expected\": { \"data\": {\"v\": 15} }\n  }\n]",
        )
        .unwrap();
        std::fs::write(d.join("ttn/acme/broken-codec.yaml"), "uplinkDecoder: [").unwrap();
        let (suites, errors) = find(d);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].path.ends_with("broken-codec.yaml"));
        assert_eq!(suites.len(), 2, "{suites:?}");
        let cs = suites
            .iter()
            .find(|s| s.script.ends_with("codecs/probe.js"))
            .unwrap();
        assert_eq!(cs.examples.uplink[0].input["fPort"], 120);
        assert_eq!(cs.examples.uplink[0].output["data"]["v"], 15);
        let ttn = suites
            .iter()
            .find(|s| s.script.ends_with("acme/probe.js"))
            .unwrap();
        assert_eq!(
            (ttn.examples.uplink.len(), ttn.examples.downlink.len()),
            (1, 1)
        );
    }
}
