//! EdgeX device profiles (core-metadata `DeviceProfile`, v3 API), read from
//! the YAML files users already write for EdgeX.
//!
//! Only the fields device-lorawan uses are typed; the profile is kept as
//! written so it can be uploaded to core-metadata unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use super::value::ValueType;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile {path}: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("profile {profile}: {message}")]
    Invalid { profile: String, message: String },
    #[error("two profiles are named {0}")]
    Duplicate(String),
    #[error("{0}")]
    Script(#[from] super::js::JsError),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProfile {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manufacturer: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    pub device_resources: Vec<DeviceResource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_commands: Vec<serde_json::Value>,
    /// The vendor's JavaScript codec beside the YAML (`<name>.js`): local
    /// only, never sent to core-metadata.
    #[serde(skip)]
    pub script: Option<std::sync::Arc<super::js::Script>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceResource {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub is_hidden: bool,
    pub properties: ResourceProperties,
    /// Codec hints (LPP channel, byte layout). EdgeX types attribute values
    /// as strings; YAML authors often write numbers, so both are accepted
    /// and kept as strings.
    #[serde(
        default,
        deserialize_with = "string_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceProperties {
    pub value_type: ValueType,
    pub read_write: ReadWrite,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub units: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl ResourceProperties {
    /// How a raw value becomes this resource's (the device-sdk's
    /// transforms, in its order).
    pub fn transform(&self) -> super::value::Transform {
        super::value::Transform::new(
            self.value_type,
            self.mask,
            self.shift,
            self.base,
            self.scale,
            self.offset,
        )
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ReadWrite {
    R,
    W,
    RW,
    WR,
}

fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    let raw: Option<BTreeMap<String, Scalar>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::S(s) => s,
                Scalar::I(i) => i.to_string(),
                Scalar::F(f) => f.to_string(),
                Scalar::B(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

impl DeviceProfile {
    pub fn from_yaml(path: &Path, text: &str) -> Result<Self, ProfileError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let p: DeviceProfile =
            serde_path_to_error::deserialize(de).map_err(|e| ProfileError::Yaml {
                path: path.to_owned(),
                message: format!("at `{}`: {}", e.path(), e.inner()),
            })?;
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), ProfileError> {
        let invalid = |message: String| ProfileError::Invalid {
            profile: self.name.clone(),
            message,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("empty name".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for r in &self.device_resources {
            if !seen.insert(r.name.as_str()) {
                return Err(invalid(format!("resource {} is defined twice", r.name)));
            }
        }
        Ok(())
    }

    pub fn resource_index(&self, name: &str) -> Option<usize> {
        self.device_resources.iter().position(|r| r.name == name)
    }
}

/// The profile files of `dir` (`*.yaml`, `*.yml`, not `*.examples.yaml`), in name order.
pub fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        // A codec's examples live beside its profile: not a profile.
        .filter(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            !stem.ends_with(".examples")
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// Every `*.yaml` / `*.yml` profile in `dir`, by name.
pub fn load_dir(dir: &Path) -> Result<BTreeMap<String, DeviceProfile>, ProfileError> {
    let io = |source| ProfileError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = BTreeMap::new();
    for path in yaml_files(dir).map_err(io)? {
        let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Io {
            path: path.clone(),
            source,
        })?;
        let mut p = DeviceProfile::from_yaml(&path, &text)?;
        // A codec script beside it, compiled when a device first uses it
        // (building the registry at start: a broken one stops the start
        // with its file and line; unused, it costs no memory).
        let js = dir.join(format!("{}.js", p.name));
        if js.is_file() {
            let source = std::fs::read_to_string(&js).map_err(|source| ProfileError::Io {
                path: js.clone(),
                source,
            })?;
            p.script = Some(std::sync::Arc::new(super::js::Script::new(js, source)));
        }
        if out.contains_key(&p.name) {
            return Err(ProfileError::Duplicate(p.name));
        }
        out.insert(p.name.clone(), p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_yaml_names_the_path() {
        let text = "name: x\ndeviceResources:\n  - name: t\n    properties: { valueType: Float99, readWrite: R }\n";
        let err = DeviceProfile::from_yaml(Path::new("p.yaml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("deviceResources[0].properties.valueType"),
            "{err}"
        );
    }

    #[test]
    fn numeric_attributes_become_strings() {
        let text = "name: x\ndeviceResources:\n  - name: t\n    properties: { valueType: Int16, readWrite: R }\n    attributes: { offset: 0, signed: true }\n";
        let p = DeviceProfile::from_yaml(Path::new("p.yaml"), text).unwrap();
        assert_eq!(p.device_resources[0].attributes["offset"], "0");
        assert_eq!(p.device_resources[0].attributes["signed"], "true");
    }

    use crate::codec::value::Value;
    use crate::codec::CodecError;

    /// The transform of `props` applied, with the resource named in the error.
    fn transform(
        raw: Value,
        props: &ResourceProperties,
        resource: &str,
    ) -> Result<Value, CodecError> {
        props
            .transform()
            .apply(raw)
            .map_err(|e| e.at(resource, props.value_type))
    }

    fn props(vt: ValueType) -> ResourceProperties {
        serde_json::from_value(serde_json::json!({"valueType": vt.as_str(), "readWrite": "R"}))
            .unwrap()
    }

    #[test]
    fn transforms_in_sdk_order() {
        // mask 0x0ff0, shift -4, scale 0.5, offset 1: ((0x1234 & 0x0ff0) >> 4) * 0.5 + 1
        let mut p = props(ValueType::Uint16);
        p.mask = Some(0x0ff0);
        p.shift = Some(-4);
        p.scale = Some(2.0);
        p.offset = Some(1.0);
        assert_eq!(
            transform(Value::Uint(0x1234), &p, "r").unwrap(),
            Value::Uint(0x23 * 2 + 1)
        );
        let mut f = props(ValueType::Float32);
        f.scale = Some(0.01);
        f.mask = Some(0xff); // ignored on a signed/float raw value
        assert_eq!(
            transform(Value::Int(-1234), &f, "r").unwrap(),
            Value::Float(-12.34)
        );
        let mut b = props(ValueType::Uint32);
        b.base = Some(2.0);
        assert_eq!(
            transform(Value::Uint(10), &b, "r").unwrap(),
            Value::Uint(1024)
        );
    }

    #[test]
    fn integer_resources_reject_fractions_and_overflow() {
        let mut p = props(ValueType::Uint8);
        p.scale = Some(0.5);
        assert!(matches!(
            transform(Value::Uint(3), &p, "r"),
            Err(CodecError::NotIntegral { .. })
        ));
        p.scale = Some(10.0);
        assert!(matches!(
            transform(Value::Uint(30), &p, "r"),
            Err(CodecError::OutOfRange { .. })
        ));
    }
}
