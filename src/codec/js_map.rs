//! A JavaScript codec's `data` into readings: each resource takes the field
//! at its path (its name, or its `jsPath` attribute, dotted: `battery.voltage`,
//! `channels.0.value`), typed by its `valueType` (integers range-checked,
//! EdgeX transforms applied as for any codec). A field absent from `data`
//! gives no reading; a field no resource takes is counted.

use super::error::CodecError;
use super::value::Reading;
use super::value::{Transform, Value, ValueType};
use crate::codec::profile::DeviceResource;

fn at<'a>(data: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(data, |v, key| match v {
        serde_json::Value::Object(m) => m.get(key),
        serde_json::Value::Array(a) => a.get(key.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Fill `out` from `data`; the number of top-level `data` fields no
/// resource took.
pub fn readings(
    data: &serde_json::Value,
    fields: &[(u16, Vec<String>, Transform)],
    res: &[DeviceResource],
    out: &mut Vec<Reading>,
) -> Result<u32, CodecError> {
    for (idx, path, t) in fields {
        let Some(v) = at(data, path).filter(|v| !v.is_null()) else {
            continue;
        };
        let r = &res[usize::from(*idx)];
        let vt = t.value_type();
        let wrong = || CodecError::Type {
            resource: r.name.clone(),
            expected: vt,
        };
        let value = match (v, vt) {
            (serde_json::Value::Bool(b), ValueType::Bool) => Value::Bool(*b),
            (serde_json::Value::String(s), ValueType::String) => Value::Text(s.clone()),
            // An Object resource takes any JSON value (EdgeX `objectValue`).
            (_, ValueType::Object) => Value::Text(v.to_string()),
            // Structured values a String resource takes as JSON text.
            (serde_json::Value::Object(_) | serde_json::Value::Array(_), ValueType::String) => {
                Value::Text(v.to_string())
            }
            (serde_json::Value::Array(a), ValueType::Binary) => Value::Binary(
                a.iter()
                    .map(|b| b.as_u64().filter(|b| *b <= 255).map(|b| b as u8))
                    .collect::<Option<_>>()
                    .ok_or_else(wrong)?,
            ),
            (serde_json::Value::Number(n), _)
                if vt != ValueType::String && vt != ValueType::Binary =>
            {
                let raw = match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => Value::Uint(u),
                    (None, Some(i)) => Value::Int(i),
                    _ => Value::Float(n.as_f64().ok_or_else(wrong)?),
                };
                t.apply(raw).map_err(|e| e.at(&r.name, vt))?
            }
            _ => return Err(wrong()),
        };
        out.push(Reading {
            resource: *idx,
            value,
        });
    }
    let unmapped = match data {
        serde_json::Value::Object(m) => m
            .keys()
            .filter(|k| !fields.iter().any(|(_, p, _)| p.first() == Some(*k)))
            .count() as u32,
        _ => 0,
    };
    Ok(unmapped)
}
