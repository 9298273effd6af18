//! `device-lorawan codec test <profile | fixture | folder>` and `codec
//! decode`: a vendor's JavaScript codec run outside the service, on its
//! examples (ours, or the vendor's TTN / ChirpStack fixtures as shipped)
//! or on one payload, with the readings the service would publish.

use std::path::Path;

use crate::codec::examples::{self, Examples};
use crate::codec::{Codec, CodecKind, DeviceProfile};

fn profile(dir: &Path, name: &str) -> anyhow::Result<DeviceProfile> {
    let mut all = crate::codec::profile::load_dir(dir)?;
    all.remove(name)
        .ok_or_else(|| anyhow::anyhow!("no profile {name} in {}", dir.display()))
}

/// Run `<dir>/<name>.examples.yaml` against `<dir>/<name>.js`: one line per
/// example; `Ok(false)` if one failed.
pub fn test(dir: &Path, name: &str, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    let p = profile(dir, name)?;
    let script = p
        .script
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("profile {name} has no {name}.js beside it"))?;
    let codec = script.codec()?;
    let path = dir.join(format!("{name}.examples.yaml"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("examples {}: {e}", path.display()))?;
    let ex: Examples = serde_yaml_ng::from_str(&text)
        .map_err(|e| anyhow::anyhow!("examples {}: {e}", path.display()))?;
    let verdicts = examples::run(&codec, &ex);
    let mut ok = true;
    for v in &verdicts {
        match &v.failure {
            None => writeln!(out, "PASS {}", v.what)?,
            Some(why) => {
                ok = false;
                writeln!(out, "FAIL {}: {why}", v.what)?;
            }
        }
    }
    let failed = verdicts.iter().filter(|v| v.failure.is_some()).count();
    writeln!(out, "{name}: {} examples, {failed} failed", verdicts.len())?;
    Ok(ok)
}

/// Run every vendor fixture under `path` (a file or a folder): one line
/// per example and per file that did not read; `Ok(false)` if any failed.
pub fn test_fixtures(path: &Path, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    let (suites, errors) = crate::codec::fixtures::find(path);
    if suites.is_empty() && errors.is_empty() {
        anyhow::bail!(
            "no codec fixtures under {} (*-codec.yaml, test_decode_*.json, test_encode_*.json, *.examples.yaml)",
            path.display()
        );
    }
    let (mut total, mut failed) = (0, errors.len());
    for e in &errors {
        writeln!(out, "FAIL {e}")?;
    }
    for suite in &suites {
        let codec = std::fs::read_to_string(&suite.script)
            .map_err(|e| format!("{}: {e}", suite.script.display()))
            .and_then(|src| {
                crate::codec::js::JsCodec::load(
                    &suite.script,
                    &src,
                    crate::codec::js::DEFAULT_BUDGET,
                    crate::codec::js::DEFAULT_MEMORY,
                )
                .map_err(|e| e.to_string())
            });
        let codec = match codec {
            Ok(c) => c,
            Err(why) => {
                failed += 1;
                writeln!(out, "FAIL {}: {why}", suite.source.display())?;
                continue;
            }
        };
        for v in examples::run(&codec, &suite.examples) {
            total += 1;
            match &v.failure {
                None => writeln!(out, "PASS {}: {}", suite.source.display(), v.what)?,
                Some(why) => {
                    failed += 1;
                    writeln!(out, "FAIL {}: {}: {why}", suite.source.display(), v.what)?;
                }
            }
        }
    }
    writeln!(
        out,
        "{}: {} fixture file(s), {total} examples, {failed} failed",
        path.display(),
        suites.len() + errors.len()
    )?;
    Ok(failed == 0)
}

/// How `codec decode` runs and prints.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    /// The codec's own output (`data`, `warnings`, `errors`) as JSON
    /// rather than readings.
    pub json: bool,
    /// The device's variables, a JSON object.
    pub variables: Option<String>,
    /// The frame's reception time, RFC 3339 (default: now).
    pub recv_time: Option<String>,
}

/// Decode `hex` on `fport` with `<dir>/<name>.js` into the readings the
/// service would publish, one JSON line each.
pub fn decode(
    dir: &Path,
    name: &str,
    fport: u8,
    hex_payload: &str,
    opts: &DecodeOptions,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let p = std::sync::Arc::new(profile(dir, name)?);
    let codec = Codec::compile(p.clone(), CodecKind::Javascript)?;
    let bytes = hex::decode(hex_payload.replace(' ', ""))
        .map_err(|_| anyhow::anyhow!("{hex_payload:?} is not hex"))?;
    let variables = opts.variables.as_deref().unwrap_or("{}");
    match serde_json::from_str::<serde_json::Value>(variables) {
        Ok(v) if v.is_object() => {}
        _ => anyhow::bail!("--variables must be a JSON object, e.g. '{{\"site\":\"roof\"}}'"),
    }
    let recv_ms = match &opts.recv_time {
        None => std::time::SystemTime::now(),
        Some(t) => humantime::parse_rfc3339_weak(t).map_err(|e| {
            anyhow::anyhow!("--recv-time {t:?} (RFC 3339, e.g. 2026-12-06T04:05:00Z): {e}")
        })?,
    }
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let js = p
        .script
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("profile {name} has no {name}.js beside it"))?
        .codec()?;
    // The codec's own output (calls are isolated: the readings below come
    // from a second, identical call).
    let raw = js.decode(&bytes, fport, recv_ms, variables)?;
    if opts.json {
        let doc =
            serde_json::json!({"data": raw.data, "warnings": raw.warnings, "errors": raw.errors});
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    let mut readings = Vec::new();
    let stats = codec.decode(&bytes, fport, variables, recv_ms, &mut readings)?;
    for r in &readings {
        let res = &p.device_resources[usize::from(r.resource)];
        let vt = res.properties.value_type;
        writeln!(
            out,
            "{}",
            serde_json::json!({"resourceName": res.name, "valueType": vt.as_str(),
                               "value": r.value.to_edgex_string(vt), "units": res.properties.units})
        )?;
    }
    for w in &raw.warnings {
        writeln!(out, "# warning: {w}")?;
    }
    if stats.unmapped + stats.warnings > 0 {
        writeln!(
            out,
            "# {} field(s) no resource takes, {} warning(s)",
            stats.unmapped, stats.warnings
        )?;
    }
    Ok(())
}
