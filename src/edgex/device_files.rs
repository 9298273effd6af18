//! Device definition files (`Devices.DevicesDir`), the device SDK's format:
//! YAML or JSON files with a `deviceList` of core-metadata `Device` DTOs.
//! Loaded at start: each device is served (once its keys are in) and
//! registered with core-metadata, as device-sdk-go does.

use std::path::{Path, PathBuf};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum DeviceFileError {
    #[error("device definitions {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device definitions {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The devices of one file's text (`deviceList: [...]`, or a bare list),
/// each given `service` as its `serviceName` when it names none.
pub fn parse(path: &Path, text: &str, service: &str) -> Result<Vec<Value>, DeviceFileError> {
    let invalid = |message: String| DeviceFileError::Invalid {
        path: path.to_owned(),
        message,
    };
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let list = match doc {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("deviceList") {
            Some(Value::Array(a)) => a,
            _ => return Err(invalid("no `deviceList` list".into())),
        },
        _ => return Err(invalid("not a device list".into())),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, mut d)| {
            let Some(o) = d.as_object_mut() else {
                return Err(invalid(format!("deviceList[{i}] is not a device")));
            };
            if o.get("serviceName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                o.insert("serviceName".into(), service.into());
            }
            Ok(d)
        })
        .collect()
}

/// Every device of the `*.yaml`, `*.yml` and `*.json` files in `dir`.
pub fn load_dir(dir: &Path, service: &str) -> Result<Vec<Value>, DeviceFileError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DeviceFileError::Io { path, source }
    };
    let paths = crate::fsutil::definition_files(dir).map_err(io(dir))?;
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        out.extend(parse(&p, &text, service)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_list_in_yaml_or_json() {
        let yaml = "deviceList:\n  - name: a\n    profileName: P\n    protocols: { lorawan: { DevEUI: \"0000000000000001\" } }\n";
        let d = parse("d.yaml".as_ref(), yaml, "device-lorawan").unwrap();
        assert_eq!(d[0]["serviceName"], "device-lorawan");
        assert_eq!(d[0]["protocols"]["lorawan"]["DevEUI"], "0000000000000001");
        let json = r#"[{"name": "b", "serviceName": "other", "profileName": "P"}]"#;
        let d = parse("d.json".as_ref(), json, "device-lorawan").unwrap();
        assert_eq!(d[0]["serviceName"], "other");
        let e = parse("d.yaml".as_ref(), "devices: []", "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.yaml") && e.contains("deviceList"), "{e}");
    }
}
