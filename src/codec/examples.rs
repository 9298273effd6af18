//! A codec's examples, as vendors ship them beside their codecs
//! (`<ProfileName>.examples.yaml` next to `<ProfileName>.js`):
//!
//! ```yaml
//! uplink:
//!   - description: a normal reading
//!     input: { fPort: 1, bytes: "0367010a" }       # hex, or a list of numbers
//!     output: { data: { temperature: 26.6 }, warnings: [], errors: [] }
//! downlink:
//!   - description: report every 5 minutes
//!     input: { data: { reportInterval: 300 } }
//!     output: { bytes: "012c", fPort: 2 }           # or { errors: [...] }
//! ```
//!
//! Each example passes when the codec's output equals the expected one
//! (numbers compared as numbers; absent `warnings`/`errors` mean none).

use serde::Deserialize;
use serde_json::Value;

use super::js::JsCodec;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Examples {
    #[serde(default)]
    pub uplink: Vec<Example>,
    #[serde(default)]
    pub downlink: Vec<Example>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    #[serde(default)]
    pub description: String,
    pub input: Value,
    pub output: Value,
}

/// One example's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub what: String,
    /// `None`: passed; else what differed.
    pub failure: Option<String>,
}

/// Bytes written as hex or as a list of numbers.
pub fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => hex::decode(s.replace(' ', "")).ok(),
        Value::Array(a) => a
            .iter()
            .map(|b| b.as_u64().filter(|b| *b <= 255).map(|b| b as u8))
            .collect(),
        _ => None,
    }
}

/// JSON values equal, numbers as numbers (1 == 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Run every example of `ex` against `codec`.
pub fn run(codec: &JsCodec, ex: &Examples) -> Vec<Verdict> {
    let mut out = Vec::new();
    for (i, e) in ex.uplink.iter().enumerate() {
        let what = format!("uplink {}: {}", i + 1, e.description);
        let failure = (|| {
            let bytes =
                bytes_of(&e.input["bytes"]).ok_or("input.bytes is not hex or a byte list")?;
            let fport = e.input["fPort"]
                .as_u64()
                .filter(|p| *p <= 255)
                .ok_or("input.fPort is not 0..=255")? as u8;
            let vars = e
                .input
                .get("variables")
                .map_or("{}".to_string(), |v| v.to_string());
            let got = codec
                .decode(&bytes, fport, 0.0, &vars)
                .map_err(|e| e.to_string())?;
            let list = |v: &[String]| Value::from(v.to_vec());
            let empty = Value::Array(Vec::new());
            let want = &e.output;
            let pairs = [
                (
                    "data",
                    got.data.clone(),
                    want.get("data").cloned().unwrap_or(Value::Null),
                ),
                (
                    "warnings",
                    list(&got.warnings),
                    want.get("warnings").cloned().unwrap_or(empty.clone()),
                ),
                (
                    "errors",
                    list(&got.errors),
                    want.get("errors").cloned().unwrap_or(empty),
                ),
            ];
            for (name, g, w) in pairs {
                if !same(&g, &w) {
                    return Err(format!("{name}: got {g}, want {w}"));
                }
            }
            Ok::<(), String>(())
        })()
        .err()
        .map(String::from);
        out.push(Verdict { what, failure });
    }
    for (i, e) in ex.downlink.iter().enumerate() {
        let what = format!("downlink {}: {}", i + 1, e.description);
        let vars = e
            .input
            .get("variables")
            .map_or("{}".to_string(), |v| v.to_string());
        let got = codec.encode(&e.input["data"], &vars);
        let failure = match (got, e.output.get("errors")) {
            (Err(err), Some(_)) => {
                let want: Vec<String> = e.output["errors"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                (!want.iter().all(|w| err.to_string().contains(w)))
                    .then(|| format!("errors: got {err}, want {want:?}"))
            }
            (Err(err), None) => Some(err.to_string()),
            (Ok((bytes, fport)), _) => {
                let want_bytes = bytes_of(&e.output["bytes"]);
                let want_port = e.output["fPort"].as_u64();
                (want_bytes.as_deref() != Some(&bytes[..]) || want_port != Some(u64::from(fport)))
                    .then(|| {
                        format!(
                            "got bytes {} on fPort {fport}, want {}",
                            hex::encode(&bytes),
                            e.output
                        )
                    })
            }
        };
        out.push(Verdict { what, failure });
    }
    out
}
