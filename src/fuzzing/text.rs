//! Targets for text a user or a caller writes: API request bodies, the
//! configuration, the devices file and device profiles.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::codec::profile::DeviceProfile;
use crate::codec::{Codec, CodecKind};

/// A key-like value (16+ hex digits) that an error message repeats.
fn echoed_key(message: &str, values: &[(String, String)], name: &str) -> Option<String> {
    values
        .iter()
        .map(|(_, v)| v.trim())
        .filter(|v| v.len() >= 16 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .find(|v| message.contains(v) && !name.contains(v))
        .map(str::to_owned)
}

/// `POST /secret` and PUT command bodies: a SecretRequest into a session
/// (whose errors must never repeat a key), a SettingRequest into a downlink.
pub fn api_body(data: &[u8]) {
    if let Ok(req) = crate::control::secret::parse_request(data) {
        let pairs = req.pairs();
        if let Err(e) =
            crate::store::secrets::session_from_secret_data(&req.secret_name, &pairs, None)
        {
            let message = e.to_string();
            if let Some(v) = echoed_key(&message, &pairs, &req.secret_name) {
                panic!("a secret's error repeats the value {v}: {message}");
            }
        }
    }
    if let Ok(settings) = serde_json::from_slice::<BTreeMap<String, String>>(data) {
        thread_local! {
            static PROFILES: [DeviceProfile; 2] = [
                profile(include_str!("../../profiles/Dragino-LPP-Mote.yaml")),
                profile(include_str!("../../tests/codecs/Example-Climate-Sensor.yaml")),
            ];
        }
        PROFILES.with(|ps| {
            for p in ps {
                let _ = crate::codec::setting::encode(p, &settings);
            }
        });
    }
}

fn profile(text: &str) -> DeviceProfile {
    DeviceProfile::from_yaml("fuzz".as_ref(), text).expect("shipped profile")
}

/// The service's configuration file, checked as at start.
pub fn config_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::config::Config::from_yaml("fuzz.yaml", Some(text), |_| None);
}

/// The devices file.
pub fn devices_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = crate::devices::parse("devices.yaml".as_ref(), text) {
        // The file holds keys: its errors never quote a value.
        let message = e.to_string();
        for word in text.split(|c: char| !c.is_ascii_hexdigit()) {
            if word.len() == 32 && !word.bytes().all(|b| b == b'0') {
                assert!(
                    !message.contains(word),
                    "a devices-file error repeats {word}: {message}"
                );
            }
        }
    }
}

/// A device profile, and every codec built from it.
pub fn profile_yaml(data: &[u8]) {
    // The profile, then (after a NUL) the payloads it decodes: each byte
    // of the tail starts one, so the codecs the profile compiles see
    // payloads of every length the input offers, not one fixed frame.
    let (yaml, payload) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[0x01, 0x67, 0x01, 0x10, 0x02, 0x68, 0x50][..]),
    };
    let Ok(text) = std::str::from_utf8(yaml) else {
        return;
    };
    let Ok(p) = DeviceProfile::from_yaml("fuzz.yaml".as_ref(), text) else {
        return;
    };
    let p = Arc::new(p);
    for kind in [
        CodecKind::CayenneLpp,
        CodecKind::Layout,
        CodecKind::Raw,
        CodecKind::RawHex,
    ] {
        if let Ok(c) = Codec::compile(p.clone(), kind) {
            let mut out = Vec::new();
            for start in 0..payload.len().clamp(1, 8) {
                let _ = c.decode(
                    payload.get(start..).unwrap_or_default(),
                    1,
                    "{}",
                    0.0,
                    &mut out,
                );
            }
        }
    }
}
