//! `device-lorawan profile import`: a bought sensor's entry in a vendors'
//! device repository turned into our profile, so onboarding is one command.
//!
//! - The Things Network's device repository: the device YAML
//!   (`vendor/<vendor>/<device>.yaml`, whose firmware profiles name a codec)
//!   or the codec YAML itself (`<device>-codec.yaml`).
//! - ChirpStack's device profiles: `vendors/<vendor>/devices/<device>.toml`
//!   (its firmware names `codecs/<codec>.js`, tested by
//!   `codecs/test_decode_<codec>.json` and `test_encode_<codec>.json`).
//!
//! Out come `<Name>.yaml` (an EdgeX device profile whose deviceResources
//! are typed from the codec's examples: every leaf of an example's `data`
//! is a resource, nested ones with a `jsPath`; what `encodeDownlink` takes
//! is writable), `<Name>.js` (the vendor's script as shipped) and
//! `<Name>.examples.yaml` (its examples in our format), so `codec test
//! <Name>` runs them. Numbers become Float64: an example shows `40` where the
//! device may send `40.5`, and a Float64 resource takes both.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::examples::Examples;

/// Why an entry could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Entry { path: PathBuf, message: String },
}

fn entry(path: &Path, message: impl std::fmt::Display) -> ImportError {
    ImportError::Entry {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn read(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A vendor's entry, read: who makes it, what it is, its script and examples.
#[derive(Debug)]
pub struct Entry {
    pub vendor: String,
    pub device: String,
    pub description: String,
    pub script: PathBuf,
    pub examples: Examples,
    /// Where it came from, and in which repository's format.
    pub source: PathBuf,
    pub format: &'static str,
}

/// Read the entry at `path` (TTN device or codec YAML, ChirpStack device TOML).
pub fn read_entry(path: &Path) -> Result<Entry, ImportError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".toml") {
        return chirpstack(path);
    }
    if name.ends_with("-codec.yaml") || name.ends_with("-codec.yml") {
        let device = name.rsplit_once("-codec.").map_or(name, |(d, _)| d);
        return ttn_codec(path, device.to_string(), String::new());
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        return ttn_device(path);
    }
    Err(entry(
        path,
        "not a vendor entry: a TTN device or codec YAML, or a ChirpStack device TOML",
    ))
}

/// The vendor of an entry: its folder's name (TTN `vendor/<vendor>/`,
/// ChirpStack `vendors/<vendor>/devices/`).
fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("vendor")
        .to_string()
}

fn ttn_device(path: &Path) -> Result<Entry, ImportError> {
    let doc: Value = serde_yaml_ng::from_str(&read(path)?).map_err(|e| entry(path, e))?;
    let device = doc["name"]
        .as_str()
        .ok_or_else(|| entry(path, "no `name`: not a TTN device YAML"))?
        .to_string();
    let codec = doc["firmwareVersions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["profiles"].as_object().into_iter().flatten())
        .find_map(|(_, p)| p["codec"].as_str())
        .ok_or_else(|| entry(path, "no firmware profile names a codec"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let description = doc["description"].as_str().unwrap_or("").to_string();
    let codec_path = [".yaml", ".yml"]
        .iter()
        .map(|ext| dir.join(format!("{codec}{ext}")))
        .find(|p| p.is_file())
        .ok_or_else(|| entry(path, format!("codec {codec}: no {codec}.yaml beside it")))?;
    let mut e = ttn_codec(&codec_path, device, description)?;
    e.source = path.to_owned();
    Ok(e)
}

fn ttn_codec(path: &Path, device: String, description: String) -> Result<Entry, ImportError> {
    let suites = super::fixtures::read(path)
        .map_err(|e| entry(path, e.message))?
        .ok_or_else(|| entry(path, "not a codec YAML"))?;
    let script = suites
        .first()
        .map(|s| s.script.clone())
        .ok_or_else(|| entry(path, "no uplinkDecoder"))?;
    let mut examples = Examples::default();
    for s in suites {
        if s.script != script {
            return Err(entry(
                path,
                "the decoder and encoder are in different scripts",
            ));
        }
        examples.uplink.extend(s.examples.uplink);
        examples.downlink.extend(s.examples.downlink);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(Entry {
        vendor: folder_name(dir),
        device,
        description,
        script,
        examples,
        source: path.to_owned(),
        format: "The Things Network device repository",
    })
}

/// The first `key = "value"` of a TOML text: the few string keys of a
/// ChirpStack device or vendor file this needs.
fn toml_str(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key)
            .then(|| serde_json::from_str::<String>(v.trim()).ok())
            .flatten()
    })
}

fn chirpstack(path: &Path) -> Result<Entry, ImportError> {
    let text = read(path)?;
    let device = toml_str(&text, "name").ok_or_else(|| entry(path, "no device name"))?;
    let codec = toml_str(&text, "codec")
        .ok_or_else(|| entry(path, "no firmware names a codec (`codec = \"<file>.js\"`)"))?;
    let devices = path.parent().unwrap_or(Path::new("."));
    let vendor_dir = devices.parent().unwrap_or(Path::new("."));
    let vendor = std::fs::read_to_string(vendor_dir.join("vendor.toml"))
        .ok()
        .and_then(|t| toml_str(&t, "name"))
        .unwrap_or_else(|| folder_name(vendor_dir));
    let codecs = vendor_dir.join("codecs");
    let script = codecs.join(&codec);
    if !script.is_file() {
        return Err(entry(
            path,
            format!("codec {}: not found", script.display()),
        ));
    }
    let stem = codec.trim_end_matches(".js");
    let mut examples = Examples::default();
    for kind in ["decode", "encode"] {
        let tests = codecs.join(format!("test_{kind}_{stem}.json"));
        if !tests.is_file() {
            continue;
        }
        for s in super::fixtures::read(&tests)
            .map_err(|e| entry(&tests, e.message))?
            .into_iter()
            .flatten()
        {
            examples.uplink.extend(s.examples.uplink);
            examples.downlink.extend(s.examples.downlink);
        }
    }
    Ok(Entry {
        vendor,
        device,
        description: toml_str(&text, "description").unwrap_or_default(),
        script,
        examples,
        source: path.to_owned(),
        format: "ChirpStack device profiles",
    })
}

/// A name EdgeX takes (RFC 3986 unreserved characters), from `text`.
fn edgex_name(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let keep = c.is_ascii_alphanumeric() || "-_.~".contains(c);
        match (keep, out.ends_with('-')) {
            (true, _) => out.push(c),
            (false, false) => out.push('-'),
            (false, true) => {}
        }
    }
    out.trim_matches('-').to_string()
}

/// What the examples show of one field.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Seen {
    number: bool,
    boolean: bool,
    text: bool,
    other: bool,
}

impl Seen {
    fn of(&mut self, v: &Value) {
        match v {
            Value::Number(_) => self.number = true,
            Value::Bool(_) => self.boolean = true,
            Value::String(_) => self.text = true,
            Value::Null => {}
            _ => self.other = true,
        }
    }

    fn value_type(self) -> &'static str {
        match (self.number, self.boolean, self.text, self.other) {
            (true, false, false, false) => "Float64",
            (false, true, false, false) => "Bool",
            (false, false, true, false) => "String",
            _ => "Object",
        }
    }
}

/// Every leaf of `data` (objects walked, arrays and scalars are leaves).
fn leaves<'a>(path: &mut Vec<String>, v: &'a Value, out: &mut Vec<(Vec<String>, &'a Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                path.push(k.clone());
                leaves(path, x, out);
                path.pop();
            }
        }
        _ if !path.is_empty() => out.push((path.clone(), v)),
        _ => {}
    }
}

/// One resource of the profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    /// The dotted path in `data`, when not the name itself.
    pub js_path: Option<String>,
    pub value_type: &'static str,
    pub read_write: &'static str,
}

/// The resources the examples show: uplink `data` leaves (read), the
/// fields `encodeDownlink` takes (written).
pub fn resources(ex: &Examples) -> Vec<Resource> {
    let mut order: Vec<Vec<String>> = Vec::new();
    let mut seen: std::collections::HashMap<Vec<String>, Seen> = Default::default();
    for e in &ex.uplink {
        let mut out = Vec::new();
        leaves(&mut Vec::new(), &e.output["data"], &mut out);
        for (path, v) in out {
            if !seen.contains_key(&path) {
                order.push(path.clone());
            }
            seen.entry(path).or_default().of(v);
        }
    }
    let mut written: Vec<(String, Seen)> = Vec::new();
    for e in &ex.downlink {
        for (k, v) in e.input["data"].as_object().into_iter().flatten() {
            match written.iter_mut().find(|(n, _)| n == k) {
                Some((_, s)) => s.of(v),
                None => {
                    let mut s = Seen::default();
                    s.of(v);
                    written.push((k.clone(), s));
                }
            }
        }
    }
    let mut out: Vec<Resource> = order
        .iter()
        .map(|path| {
            let dotted = path.join(".");
            let name = edgex_name(&path.join("_"));
            let writable = path.len() == 1 && written.iter().any(|(n, _)| *n == path[0]);
            Resource {
                js_path: (name != dotted).then_some(dotted),
                name,
                value_type: seen[path].value_type(),
                read_write: if writable { "RW" } else { "R" },
            }
        })
        .collect();
    for (k, s) in written {
        if !out.iter().any(|r| r.js_path.is_none() && r.name == k) {
            out.push(Resource {
                name: edgex_name(&k),
                js_path: None,
                value_type: s.value_type(),
                read_write: "W",
            });
        }
    }
    out
}

/// A YAML scalar: JSON's string quoting is valid YAML.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string")
}

/// The profile YAML of `e` under `name`.
pub fn profile_yaml(e: &Entry, name: &str) -> String {
    let mut y = format!(
        "# Imported by `device-lorawan profile import` from {} ({}).\n\
         # Resources are typed from the codec's examples; check units and ranges.\n\
         name: {}\nmanufacturer: {}\nmodel: {}\ndescription: {}\n\
         labels: [\"lorawan\", \"javascript-codec\"]\ndeviceResources:\n",
        e.source.display(),
        e.format,
        q(name),
        q(&e.vendor),
        q(&e.device),
        q(&e.description),
    );
    for r in resources(&e.examples) {
        y += &format!(
            "  - name: {}\n    properties: {{ valueType: {}, readWrite: {} }}\n",
            q(&r.name),
            q(r.value_type),
            q(r.read_write)
        );
        if let Some(p) = &r.js_path {
            y += &format!("    attributes: {{ jsPath: {} }}\n", q(p));
        }
    }
    y
}

/// Where [`import`] wrote, and the name devices use.
#[derive(Debug)]
pub struct Imported {
    pub name: String,
    pub files: Vec<PathBuf>,
}

/// Import the entry at `path` into `out` as profile `name` (default:
/// `<Vendor>-<Device>`).
pub fn import(path: &Path, out: &Path, name: Option<&str>) -> Result<Imported, ImportError> {
    let e = read_entry(path)?;
    // `<Vendor>-<Device>`, unless the device's name starts with the vendor's.
    let default = if e
        .device
        .to_lowercase()
        .starts_with(&e.vendor.to_lowercase())
    {
        e.device.clone()
    } else {
        format!("{}-{}", e.vendor, e.device)
    };
    let name = edgex_name(name.unwrap_or(&default));
    if name.is_empty() {
        return Err(entry(path, "no usable profile name: give one with --name"));
    }
    if resources(&e.examples).is_empty() {
        return Err(entry(
            path,
            "its examples show no decoded fields to make resources of",
        ));
    }
    let write = |file: PathBuf, text: &str| -> Result<PathBuf, ImportError> {
        std::fs::write(&file, text)
            .map(|_| file.clone())
            .map_err(|source| ImportError::Io { path: file, source })
    };
    std::fs::create_dir_all(out).map_err(|source| ImportError::Io {
        path: out.to_owned(),
        source,
    })?;
    let script = read(&e.script)?;
    let examples = format!(
        "# Examples of {name}.js, from {} (`device-lorawan codec test {name}`).\n{}",
        e.source.display(),
        serde_yaml_ng::to_string(&e.examples).map_err(|err| entry(path, err))?
    );
    let files = vec![
        write(out.join(format!("{name}.yaml")), &profile_yaml(&e, &name))?,
        write(out.join(format!("{name}.js")), &script)?,
        write(out.join(format!("{name}.examples.yaml")), &examples)?,
    ];
    Ok(Imported { name, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_typed_from_the_examples() {
        let ex: Examples = serde_yaml_ng::from_str(
            "uplink:\n\
             - { input: { bytes: [1] }, output: { data: { t: 21, ok: true, mode: eco, battery: { v: 3.3 }, list: [1, 2] } } }\n\
             - { input: { bytes: [2] }, output: { data: { t: 21.5, mode: 3, interval: 60 } } }\n\
             - { input: { bytes: [3] }, output: { errors: [bad] } }\n\
             downlink:\n\
             - { input: { data: { interval: 300, reboot: true } }, output: { bytes: [1], fPort: 2 } }\n",
        )
        .unwrap();
        let got: Vec<(String, Option<String>, &str, &str)> = resources(&ex)
            .into_iter()
            .map(|r| (r.name, r.js_path, r.value_type, r.read_write))
            .collect();
        // In order of first appearance, each example's fields by name.
        let want = [
            ("battery_v", Some("battery.v"), "Float64", "R"),
            ("list", None, "Object", "R"),
            ("mode", None, "Object", "R"),
            ("ok", None, "Bool", "R"),
            ("t", None, "Float64", "R"),
            ("interval", None, "Float64", "RW"),
            ("reboot", None, "Bool", "W"),
        ]
        .map(|(n, p, t, rw)| (n.to_string(), p.map(str::to_string), t, rw));
        assert_eq!(got, want);
        assert_eq!(
            edgex_name("Acme Inc./Thermo 2 (EU)"),
            "Acme-Inc.-Thermo-2-EU"
        );
        assert_eq!(
            toml_str("[device]\nname = \"Acme Valve\"\n", "name").as_deref(),
            Some("Acme Valve")
        );
    }
}
