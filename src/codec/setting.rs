//! From an EdgeX `SettingRequest` (resource name → value string) to the
//! payload of a downlink: each resource written by downlink names its FPort
//! (`downlinkFPort`) and its bytes (`offset`, `length`, ... as in
//! [`super::layout`]). Values are parsed by the resource's value type and
//! checked against its minimum and maximum before anything is queued.

use std::collections::BTreeMap;

use super::layout::{Field, Format};
use super::profile::DeviceProfile;
use super::value::{Value, ValueType};

/// A downlink's application payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink {
    pub fport: u8,
    pub payload: Vec<u8>,
    /// A written resource says `confirmed: "true"`: the device must
    /// acknowledge the frame, or it is sent again.
    pub confirmed: bool,
}

/// Whether any resource `settings` write asks for a confirmed downlink.
fn confirmed(profile: &DeviceProfile, settings: &BTreeMap<String, String>) -> bool {
    settings.keys().any(|name| {
        profile
            .device_resources
            .iter()
            .any(|r| &r.name == name && r.attributes.get("confirmed").is_some_and(|v| v == "true"))
    })
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingError {
    #[error("nothing to set")]
    Empty,
    #[error("no resource {0:?} in the profile")]
    UnknownResource(String),
    #[error("resource {0:?} is not written by downlink (it has no downlinkFPort attribute)")]
    NotByDownlink(String),
    #[error("resource {resource:?}: attribute {key}: {message}")]
    Attribute {
        resource: String,
        key: &'static str,
        message: String,
    },
    #[error("resource {resource:?}: {value:?} is not a {value_type}")]
    Parse {
        resource: String,
        value: String,
        value_type: &'static str,
    },
    #[error("resource {resource:?}: {value} is outside [{min}, {max}]")]
    Range {
        resource: String,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("resource {resource:?}: EdgeX transforms (mask, shift, base, scale, offset) are not applied to downlinks")]
    Transform { resource: String },
    #[error("resource {resource:?}: the value {why}")]
    Field { resource: String, why: &'static str },
    #[error("resources {0:?} and {1:?} are sent on different FPorts")]
    Ports(String, String),
    #[error("resources {0:?} and {1:?} overlap in the payload")]
    Overlap(String, String),
    /// The JavaScript codec's `encodeDownlink` refused or failed.
    #[error("{0}")]
    Codec(String),
}

/// `value` as a `vt`, or `None`.
fn parse(vt: ValueType, value: &str) -> Option<Value> {
    let v = value.trim();
    let uint = |max: u64| v.parse::<u64>().ok().filter(|u| *u <= max).map(Value::Uint);
    let int = |min: i64, max: i64| {
        v.parse::<i64>()
            .ok()
            .filter(|i| (min..=max).contains(i))
            .map(Value::Int)
    };
    match vt {
        ValueType::Bool => v.parse::<bool>().ok().map(Value::Bool),
        ValueType::Uint8 => uint(u8::MAX.into()),
        ValueType::Uint16 => uint(u16::MAX.into()),
        ValueType::Uint32 => uint(u32::MAX.into()),
        ValueType::Uint64 => uint(u64::MAX),
        ValueType::Int8 => int(i8::MIN.into(), i8::MAX.into()),
        ValueType::Int16 => int(i16::MIN.into(), i16::MAX.into()),
        ValueType::Int32 => int(i32::MIN.into(), i32::MAX.into()),
        ValueType::Int64 => int(i64::MIN, i64::MAX),
        ValueType::Float32 | ValueType::Float64 => v
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float),
        ValueType::String | ValueType::Binary | ValueType::Object => None,
    }
}

/// A setting through the profile's JavaScript `encodeDownlink`: the
/// values typed by their resources into `data` (`{"reportInterval": 300}`),
/// the codec's bytes and FPort back.
pub fn encode_js(
    profile: &DeviceProfile,
    settings: &BTreeMap<String, String>,
    codec: &super::js::JsCodec,
    variables: &str,
) -> Result<Downlink, SettingError> {
    if settings.is_empty() {
        return Err(SettingError::Empty);
    }
    let mut data = serde_json::Map::new();
    for (name, text) in settings {
        let res = profile
            .resource_index(name)
            .map(|i| &profile.device_resources[i])
            .ok_or_else(|| SettingError::UnknownResource(name.clone()))?;
        let vt = res.properties.value_type;
        let value = match vt {
            ValueType::String => serde_json::Value::String(text.clone()),
            ValueType::Object => serde_json::from_str(text).map_err(|_| SettingError::Parse {
                resource: name.clone(),
                value: text.clone(),
                value_type: vt.as_str(),
            })?,
            _ => match parse(vt, text) {
                Some(Value::Bool(b)) => b.into(),
                Some(Value::Uint(u)) => u.into(),
                Some(Value::Int(i)) => i.into(),
                Some(Value::Float(f)) => f.into(),
                _ => {
                    return Err(SettingError::Parse {
                        resource: name.clone(),
                        value: text.clone(),
                        value_type: vt.as_str(),
                    })
                }
            },
        };
        data.insert(name.clone(), value);
    }
    let (payload, fport) = codec
        .encode(&serde_json::Value::Object(data), variables)
        .map_err(|e| SettingError::Codec(e.to_string()))?;
    Ok(Downlink {
        fport,
        payload,
        confirmed: confirmed(profile, settings),
    })
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Uint(u) => Some(*u as f64),
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// Encode `settings` for `profile` into one downlink.
pub fn encode(
    profile: &DeviceProfile,
    settings: &BTreeMap<String, String>,
) -> Result<Downlink, SettingError> {
    let mut fields: Vec<(&str, Field, Value)> = Vec::new();
    let mut port: Option<(u8, &str)> = None;
    for (name, text) in settings {
        let res = profile
            .resource_index(name)
            .map(|i| &profile.device_resources[i])
            .ok_or_else(|| SettingError::UnknownResource(name.clone()))?;
        let attr = |key: &'static str, message: &str| SettingError::Attribute {
            resource: name.clone(),
            key,
            message: message.into(),
        };
        let fport: u8 = res
            .attributes
            .get("downlinkFPort")
            .ok_or_else(|| SettingError::NotByDownlink(name.clone()))?
            .parse()
            .ok()
            .filter(|p| (1..=223).contains(p))
            .ok_or_else(|| attr("downlinkFPort", "must be an FPort from 1 to 223"))?;
        match port {
            Some((p, other)) if p != fport => {
                return Err(SettingError::Ports(other.to_string(), name.clone()))
            }
            _ => port = Some((fport, name)),
        }
        let field = Field::from_attributes(name, &res.attributes)
            .map_err(|e| attr("offset", &e.to_string()))?
            .ok_or_else(|| attr("offset", "missing"))?;
        let p = &res.properties;
        if p.mask.is_some()
            || p.shift.is_some()
            || p.base.is_some()
            || p.scale.is_some()
            || p.offset.is_some()
        {
            return Err(SettingError::Transform {
                resource: name.clone(),
            });
        }
        let value = parse(p.value_type, text).ok_or_else(|| SettingError::Parse {
            resource: name.clone(),
            value: text.chars().take(40).collect(),
            value_type: p.value_type.as_str(),
        })?;
        if let Some(x) = as_f64(&value) {
            let (min, max) = (p.minimum.unwrap_or(f64::MIN), p.maximum.unwrap_or(f64::MAX));
            if x < min || x > max {
                return Err(SettingError::Range {
                    resource: name.clone(),
                    value: x,
                    min,
                    max,
                });
            }
        }
        // An integer resource in a float field (or the reverse) is converted.
        let value = match (field.format, value) {
            (Format::Float, v) => Value::Float(as_f64(&v).unwrap_or_default()),
            (_, v) => v,
        };
        fields.push((name, field, value));
    }
    let Some((fport, _)) = port else {
        return Err(SettingError::Empty);
    };
    for (i, (a, fa, _)) in fields.iter().enumerate() {
        for (b, fb, _) in &fields[i + 1..] {
            if fa.offset < fb.offset + fb.length && fb.offset < fa.offset + fa.length {
                return Err(SettingError::Overlap(a.to_string(), b.to_string()));
            }
        }
    }
    let len = fields
        .iter()
        .map(|(_, f, _)| f.offset + f.length)
        .max()
        .unwrap_or(0);
    let mut payload = vec![0u8; len];
    for (name, field, value) in &fields {
        field
            .write(value, &mut payload)
            .map_err(|why| SettingError::Field {
                resource: name.to_string(),
                why,
            })?;
    }
    Ok(Downlink {
        fport,
        payload,
        confirmed: confirmed(profile, settings),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mote() -> DeviceProfile {
        let p = crate::codec::profile::load_dir(std::path::Path::new("profiles")).unwrap();
        p["Dragino-LPP-Mote"].clone()
    }

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn report_interval_is_a_big_endian_u16_on_port_2() {
        let d = encode(&mote(), &set(&[("reportInterval", "120")])).unwrap();
        assert_eq!(
            d,
            Downlink {
                fport: 2,
                payload: vec![0, 120],
                confirmed: false,
            }
        );
        let d = encode(&mote(), &set(&[("reportInterval", "3600")])).unwrap();
        assert_eq!(d.payload, 3600u16.to_be_bytes());
    }

    #[test]
    fn bad_settings_say_why() {
        let p = mote();
        let e = |pairs| encode(&p, &set(pairs)).unwrap_err();
        assert!(
            matches!(e(&[("reportInterval", "5")]), SettingError::Range { .. }),
            "under the minimum"
        );
        assert!(
            matches!(
                e(&[("reportInterval", "70000")]),
                SettingError::Parse { .. }
            ),
            "over Uint16"
        );
        assert!(matches!(
            e(&[("reportInterval", "ten")]),
            SettingError::Parse { .. }
        ));
        assert_eq!(
            e(&[("temperature", "20")]),
            SettingError::NotByDownlink("temperature".into())
        );
        assert_eq!(
            e(&[("nope", "1")]),
            SettingError::UnknownResource("nope".into())
        );
        assert_eq!(e(&[]), SettingError::Empty);
    }
}
