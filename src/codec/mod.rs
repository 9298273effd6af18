//! From a decrypted FRMPayload to typed readings named as in the device's
//! EdgeX profile.
//!
//! - [`profile`]: EdgeX device profiles (YAML).
//! - [`value`]: EdgeX value types, transforms, value strings and readings.
//! - [`error`]: why a payload could not be decoded.
//! - [`lpp`]: Cayenne LPP; [`layout`]: declarative binary layouts.
//!
//! A [`Codec`] is compiled once per (profile, codec kind): decoding a frame
//! is then a table walk that writes into a caller's reused `Vec`.

pub mod error;
pub mod examples;
pub mod fixtures;
pub mod import;
pub mod js;
mod js_map;
pub mod kind;
pub mod layout;
pub mod lpp;
pub mod profile;
pub mod setting;
pub mod value;

use std::sync::Arc;

pub use error::CodecError;
pub use kind::CodecKind;
pub use profile::DeviceProfile;
pub use value::{Reading, Value, ValueType};

#[derive(Debug, Clone, Copy)]
struct LppBinding {
    channel: u8,
    type_id: u8,
    field: u8,
    resource: u16,
    transform: value::Transform,
    /// `transform` is the identity on a float: skip it.
    plain: bool,
}

/// A profile compiled for one codec kind.
#[derive(Debug, Clone)]
pub struct Codec {
    kind: CodecKind,
    profile: Arc<DeviceProfile>,
    lpp: Vec<LppBinding>,
    layout: Vec<(u16, layout::Field, value::Transform)>,
    raw: Option<u16>,
    js: Option<Arc<js::JsCodec>>,
    /// JavaScript: (resource, path into `data`, transform).
    js_fields: Vec<(u16, Vec<String>, value::Transform)>,
}

/// What a decode noticed without failing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeStats {
    /// LPP values with no resource bound to their channel and type, or
    /// JavaScript `data` fields no resource takes.
    pub unmapped: u32,
    /// The JavaScript codec's warnings.
    pub warnings: u32,
}

impl Codec {
    pub fn compile(profile: Arc<DeviceProfile>, kind: CodecKind) -> Result<Self, CodecError> {
        let mut c = Codec {
            kind,
            profile: profile.clone(),
            lpp: Vec::new(),
            layout: Vec::new(),
            raw: None,
            js: None,
            js_fields: Vec::new(),
        };
        if kind == CodecKind::Javascript {
            let script = profile
                .script
                .as_ref()
                .ok_or_else(|| CodecError::NoScript {
                    profile: profile.name.clone(),
                })?;
            c.js = Some(script.codec()?);
        }
        for (i, r) in profile.device_resources.iter().enumerate() {
            let idx = i as u16;
            match kind {
                CodecKind::CayenneLpp => {
                    if let Some(b) =
                        lpp_binding(idx, &r.name, &r.attributes, r.properties.transform())?
                    {
                        c.lpp.push(b);
                    }
                }
                CodecKind::Layout => {
                    if let Some(f) = layout::Field::from_attributes(&r.name, &r.attributes)? {
                        c.layout.push((idx, f, r.properties.transform()));
                    }
                }
                CodecKind::Raw if r.properties.value_type == ValueType::Binary => {
                    c.raw = c.raw.or(Some(idx));
                }
                CodecKind::RawHex if r.properties.value_type == ValueType::String => {
                    c.raw = c.raw.or(Some(idx));
                }
                // Every resource a device reports (not the ones written by downlink).
                CodecKind::Javascript if !r.attributes.contains_key("downlinkFPort") => {
                    let path = r.attributes.get("jsPath").unwrap_or(&r.name);
                    c.js_fields.push((
                        idx,
                        path.split('.').map(str::to_owned).collect(),
                        r.properties.transform(),
                    ));
                }
                _ => {}
            }
        }
        if c.lpp.is_empty() && c.layout.is_empty() && c.raw.is_none() && c.js_fields.is_empty() {
            return Err(CodecError::NothingToDecode {
                profile: profile.name.clone(),
                codec: kind,
            });
        }
        Ok(c)
    }

    pub fn profile(&self) -> &Arc<DeviceProfile> {
        &self.profile
    }

    pub fn kind(&self) -> CodecKind {
        self.kind
    }

    /// The JavaScript codec, when it can encode downlinks.
    pub fn js_encoder(&self) -> Option<&Arc<js::JsCodec>> {
        self.js.as_ref().filter(|j| j.has_encoder)
    }

    /// Decode `payload` into `out` (cleared first). `fport`, the device's
    /// `variables` (a JSON object) and the frame's reception time
    /// (`recv_ms`, Unix ms: a JavaScript codec's `recvTime`) are for
    /// JavaScript codecs.
    pub fn decode(
        &self,
        payload: &[u8],
        fport: u8,
        variables: &str,
        recv_ms: f64,
        out: &mut Vec<Reading>,
    ) -> Result<DecodeStats, CodecError> {
        out.clear();
        let mut stats = DecodeStats::default();
        let res = &self.profile.device_resources;
        match self.kind {
            CodecKind::Javascript => {
                let js = self.js.as_ref().expect("compiled with its script");
                let d = js.decode(payload, fport, recv_ms, variables)?;
                if !d.errors.is_empty() {
                    return Err(CodecError::Refused {
                        file: js.file().to_owned(),
                        message: d.errors.join("; "),
                    });
                }
                stats.warnings = d.warnings.len() as u32;
                if let Some(w) = d.warnings.first().filter(|_| js.may_log_warning()) {
                    tracing::warn!(codec = js.file(), warning = %w, "codec warning (at most one a minute is logged; all are counted)");
                }
                stats.unmapped = js_map::readings(&d.data, &self.js_fields, res, out)?;
            }
            CodecKind::CayenneLpp => lpp::decode(payload, |v| {
                let Some(b) = self.lpp.iter().find(|b| {
                    b.channel == v.channel && b.type_id == v.type_id && b.field == v.field
                }) else {
                    stats.unmapped += 1;
                    return Ok(());
                };
                let value = if b.plain {
                    Value::Float(v.value)
                } else {
                    b.transform.apply(Value::Float(v.value)).map_err(|e| {
                        let r = &res[usize::from(b.resource)];
                        e.at(&r.name, r.properties.value_type)
                    })?
                };
                out.push(Reading {
                    resource: b.resource,
                    value,
                });
                Ok(())
            })?,
            CodecKind::Layout => {
                for (idx, field, t) in &self.layout {
                    let name = || res[usize::from(*idx)].name.as_str();
                    let raw = field
                        .read(payload)
                        .map_err(|need| CodecError::LayoutOverrun {
                            resource: name().into(),
                            need,
                            have: payload.len(),
                        })?;
                    let value = t.apply(raw).map_err(|e| e.at(name(), t.value_type()))?;
                    out.push(Reading {
                        resource: *idx,
                        value,
                    });
                }
            }
            CodecKind::Raw => out.push(Reading {
                resource: self.raw.unwrap_or(0),
                value: Value::Binary(payload.to_vec()),
            }),
            CodecKind::RawHex => out.push(Reading {
                resource: self.raw.unwrap_or(0),
                value: Value::Text(hex::encode(payload)),
            }),
        }
        Ok(stats)
    }
}

fn lpp_binding(
    resource: u16,
    name: &str,
    attrs: &std::collections::BTreeMap<String, String>,
    transform: value::Transform,
) -> Result<Option<LppBinding>, CodecError> {
    let (Some(ch), Some(ty)) = (attrs.get("lppChannel"), attrs.get("lppType")) else {
        return Ok(None);
    };
    let bad = |key: &str, message: String| CodecError::Attribute {
        resource: name.into(),
        key: key.into(),
        message,
    };
    let channel = ch
        .parse()
        .map_err(|_| bad("lppChannel", "expected 0-255".into()))?;
    let t = lpp::type_by_name_or_id(ty)
        .ok_or_else(|| bad("lppType", "not a Cayenne LPP type".into()))?;
    let field = match attrs.get("lppField") {
        None if t.fields.len() == 1 => 0,
        None => {
            return Err(bad(
                "lppField",
                format!("{} has several fields: name one", t.name),
            ))
        }
        Some(f) => t
            .fields
            .iter()
            .position(|x| x.0 == f)
            .ok_or_else(|| bad("lppField", format!("{} has no field {f}", t.name)))?,
    };
    Ok(Some(LppBinding {
        channel,
        type_id: t.id,
        field: field as u8,
        resource,
        plain: transform.is_plain_float(),
        transform,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(yaml: &str) -> Arc<DeviceProfile> {
        Arc::new(DeviceProfile::from_yaml(std::path::Path::new("t.yaml"), yaml).unwrap())
    }

    const LPP: &str = r#"
name: t
deviceResources:
  - { name: temperature, properties: { valueType: Float32, readWrite: R }, attributes: { lppChannel: 3, lppType: temperature } }
  - { name: lat, properties: { valueType: Float64, readWrite: R }, attributes: { lppChannel: 1, lppType: "136", lppField: latitude } }
  - { name: alt, properties: { valueType: Int32, readWrite: R }, attributes: { lppChannel: 1, lppType: gps, lppField: altitude } }
"#;

    #[test]
    fn lpp_fixture_into_profile_resources() {
        let c = Codec::compile(profile(LPP), CodecKind::CayenneLpp).unwrap();
        let mut out = Vec::new();
        let stats = c
            .decode(
                &hex::decode("03670110056700FF018806765ff2960a0003e8").unwrap(),
                1,
                "{}",
                0.0,
                &mut out,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![
                Reading {
                    resource: 0,
                    value: Value::Float(27.2)
                },
                Reading {
                    resource: 1,
                    value: Value::Float(42.3519)
                },
                Reading {
                    resource: 2,
                    value: Value::Int(10)
                },
            ]
        );
        assert_eq!(stats.unmapped, 2, "channel 5 temperature and the longitude");
    }

    #[test]
    fn a_codecs_double_reaches_the_reading_exactly() {
        let mut p = DeviceProfile::from_yaml(
            std::path::Path::new("t.yaml"),
            "name: t\ndeviceResources:\n  - { name: v, properties: { valueType: Float64, readWrite: R } }\n",
        )
        .unwrap();
        // A double that needs 17 significant digits to round-trip.
        let exact = 0.10003720455118613f64;
        p.script = Some(Arc::new(js::Script::new(
            "t.js".into(),
            format!("function decodeUplink(i) {{ return {{ data: {{ v: {exact:?} }} }}; }}"),
        )));
        let c = Codec::compile(Arc::new(p), CodecKind::Javascript).unwrap();
        let mut out = Vec::new();
        c.decode(&[], 1, "{}", 0.0, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let text = out[0].value.to_edgex_string(ValueType::Float64);
        let back: f64 = text.parse().unwrap();
        assert_eq!(back.to_bits(), exact.to_bits(), "{text}");
    }

    #[test]
    fn multi_field_type_needs_a_field() {
        let y = "name: t\ndeviceResources:\n  - { name: g, properties: { valueType: Float64, readWrite: R }, attributes: { lppChannel: 1, lppType: gps } }\n";
        let err = Codec::compile(profile(y), CodecKind::CayenneLpp).unwrap_err();
        assert!(err.to_string().contains("lppField"), "{err}");
    }

    #[test]
    fn raw_codecs() {
        let y = "name: t\ndeviceResources:\n  - { name: b, properties: { valueType: Binary, readWrite: R } }\n  - { name: h, properties: { valueType: String, readWrite: R } }\n";
        let mut out = Vec::new();
        Codec::compile(profile(y), CodecKind::Raw)
            .unwrap()
            .decode(&[1, 2], 1, "{}", 0.0, &mut out)
            .unwrap();
        assert_eq!(
            out[0],
            Reading {
                resource: 0,
                value: Value::Binary(vec![1, 2])
            }
        );
        Codec::compile(profile(y), CodecKind::RawHex)
            .unwrap()
            .decode(&[0xab], 1, "{}", 0.0, &mut out)
            .unwrap();
        assert_eq!(
            out[0],
            Reading {
                resource: 1,
                value: Value::Text("ab".into())
            }
        );
        assert!(Codec::compile(profile(LPP), CodecKind::Raw).is_err());
    }
}
