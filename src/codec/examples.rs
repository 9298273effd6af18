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
//! (numbers compared as numbers; absent `warnings`/`errors` mean none); a
//! failing one lists every difference. `input.fPort` defaults to 1,
//! `input.recvTime` (RFC 3339) is passed to the codec. Vendors' own fixture
//! formats (TTN, ChirpStack) are read by [`super::fixtures`].

use serde::Deserialize;
use serde_json::Value;

use super::js::JsCodec;

#[derive(Debug, Deserialize, serde::Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Examples {
    #[serde(default)]
    pub uplink: Vec<Example>,
    #[serde(default)]
    pub downlink: Vec<Example>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
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

/// Every place where `got` differs from `want`, as `path: got …, want …`
/// (numbers compared as numbers), so a failing example shows all of it.
pub fn differences(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (got, want) {
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (g, w)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), g, w, out);
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, w) in y {
                match x.get(k) {
                    Some(g) => differences(&at(k), g, w, out),
                    None => out.push(format!("{}: missing, want {w}", at(k))),
                }
            }
            for (k, g) in x {
                if !y.contains_key(k) {
                    out.push(format!("{}: got {g}, not expected", at(k)));
                }
            }
        }
        _ if got == want => {}
        _ => out.push(format!(
            "{}: got {got}, want {want}",
            if path.is_empty() { "(whole)" } else { path }
        )),
    }
}

/// An example's reception time (`input.recvTime`, RFC 3339) in Unix ms;
/// none given: 0.
fn recv_ms(input: &Value) -> Result<f64, String> {
    match input.get("recvTime").and_then(Value::as_str) {
        None => Ok(0.0),
        Some(t) => humantime::parse_rfc3339_weak(t)
            .map_err(|e| format!("input.recvTime {t:?}: {e}"))
            .map(|at| {
                at.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64() * 1e3)
            }),
    }
}

/// The FPort an example names; none: 1 (the usual application port, and
/// what vendors' fixtures that leave it out assume).
fn fport_of(input: &Value) -> Result<u8, String> {
    match input.get("fPort") {
        None | Some(Value::Null) => Ok(1),
        Some(p) => p
            .as_u64()
            .filter(|p| *p <= 255)
            .map(|p| p as u8)
            .ok_or_else(|| "input.fPort is not 0..=255".to_string()),
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
            let fport = fport_of(&e.input)?;
            let recv = recv_ms(&e.input)?;
            let vars = e
                .input
                .get("variables")
                .map_or("{}".to_string(), |v| v.to_string());
            let got = codec
                .decode(&bytes, fport, recv, &vars)
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
            let mut diff = Vec::new();
            for (name, g, w) in pairs {
                differences(name, &g, &w, &mut diff);
            }
            if diff.is_empty() {
                Ok::<(), String>(())
            } else {
                Err(diff.join("; "))
            }
        })()
        .err();
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
                // No fPort in the fixture: the codec's own port is right.
                let want_port = e.output["fPort"].as_u64().unwrap_or(u64::from(fport));
                (want_bytes.as_deref() != Some(&bytes[..]) || want_port != u64::from(fport)).then(
                    || {
                        format!(
                            "got bytes {} on fPort {fport}, want {}",
                            hex::encode(&bytes),
                            e.output
                        )
                    },
                )
            }
        };
        out.push(Verdict { what, failure });
    }
    out
}
