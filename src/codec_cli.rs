//! `device-lorawan codec test <profile>` and `codec decode`: a vendor's
//! JavaScript codec run outside the service, on its examples file or on
//! one payload, with the readings the service would publish.

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

/// Decode `hex` on `fport` with `<dir>/<name>.js` into the readings the
/// service would publish, one JSON line each.
pub fn decode(
    dir: &Path,
    name: &str,
    fport: u8,
    hex_payload: &str,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let p = std::sync::Arc::new(profile(dir, name)?);
    let codec = Codec::compile(p.clone(), CodecKind::Javascript)?;
    let bytes = hex::decode(hex_payload.replace(' ', ""))
        .map_err(|_| anyhow::anyhow!("{hex_payload:?} is not hex"))?;
    let mut readings = Vec::new();
    let stats = codec.decode(&bytes, fport, "{}", &mut readings)?;
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
    if stats.unmapped + stats.warnings > 0 {
        writeln!(
            out,
            "# {} field(s) no resource takes, {} warning(s)",
            stats.unmapped, stats.warnings
        )?;
    }
    Ok(())
}
