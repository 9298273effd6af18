//! Secrets that arrived the EdgeX way (`POST /api/v3/secret`), kept in
//! `DataDir/secrets.yaml`: owner-only (0600), replaced atomically. A secret
//! named for a device is its session keys, merged into its entry at start;
//! any other name is kept as given (credentials for a broker, say), as the
//! device SDK keeps it. Errors never carry a key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lorawan::{AesKey, DevAddr};

const FILE: &str = "secrets.yaml";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret store {path} is damaged (not the YAML this service writes)")]
    Damaged { path: PathBuf },
    #[error("secret for {device}: {field} is not valid")]
    Invalid { device: String, field: &'static str },
}

/// One device's ABP session, as stored (hex).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Stored {
    dev_addr: String,
    nwk_s_key: String,
    app_s_key: String,
}

/// A session decoded from the store or a request.
pub struct Session {
    pub dev_addr: DevAddr,
    pub nwk_s_key: AesKey,
    pub app_s_key: AesKey,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Session {{ dev_addr: {}, keys: <redacted> }}",
            self.dev_addr
        )
    }
}

/// A stored secret: a device's session, or any other secret's data.
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Entry {
    Session(Stored),
    Other(BTreeMap<String, String>),
}

pub struct SecretStore {
    path: PathBuf,
    stored: BTreeMap<String, Entry>,
    /// Written to `path` (not in EdgeX secure mode, where the EdgeX secret
    /// store keeps them and this is only what arrived while running).
    persist: bool,
}

impl SecretStore {
    pub fn open(data_dir: &Path) -> Result<Self, SecretError> {
        let path = data_dir.join(FILE);
        let stored = match std::fs::read_to_string(&path) {
            Ok(text) => serde_yaml_ng::from_str(&text)
                .map_err(|_| SecretError::Damaged { path: path.clone() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(SecretError::Io { path, source }),
        };
        Ok(Self {
            path,
            stored,
            persist: true,
        })
    }

    /// Keep what arrives from now on in memory only (EdgeX secure mode: the
    /// secret store holds it); what the file already held is still read.
    pub fn memory_only(mut self) -> Self {
        self.persist = false;
        self
    }

    pub fn len(&self) -> usize {
        self.stored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }

    /// Store `device`'s session durably (before it is used).
    pub fn put(&mut self, device: &str, s: &Session) -> Result<(), SecretError> {
        let entry = Entry::Session(Stored {
            dev_addr: s.dev_addr.to_string(),
            nwk_s_key: hex::encode(s.nwk_s_key.expose()),
            app_s_key: hex::encode(s.app_s_key.expose()),
        });
        self.insert(device, entry)
    }

    /// Store a secret that is not a device's session, as given.
    pub fn put_other(&mut self, name: &str, data: &[(String, String)]) -> Result<(), SecretError> {
        self.insert(name, Entry::Other(data.iter().cloned().collect()))
    }

    /// Whether `device`'s session is here.
    pub fn has_session(&self, device: &str) -> bool {
        matches!(self.stored.get(device), Some(Entry::Session(_)))
    }

    /// A secret that is not a device's session (its key/value pairs).
    pub fn other(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        match self.stored.get(name)? {
            Entry::Other(m) => Some(m),
            Entry::Session(_) => None,
        }
    }

    fn insert(&mut self, name: &str, entry: Entry) -> Result<(), SecretError> {
        self.stored.insert(name.to_string(), entry);
        if !self.persist {
            return Ok(());
        }
        let io = |source| SecretError::Io {
            path: self.path.clone(),
            source,
        };
        let text = serde_yaml_ng::to_string(&self.stored).expect("secrets serialise");
        crate::fsutil::write_atomic(&self.path, text.as_bytes(), 0o600).map_err(io)
    }

    /// Every stored session, by device name.
    pub fn sessions(&self) -> Result<Vec<(String, Session)>, SecretError> {
        self.stored
            .iter()
            .filter_map(|(name, e)| match e {
                Entry::Session(s) => Some((name, s)),
                Entry::Other(_) => None,
            })
            .map(|(name, s)| {
                // Stored as a request would carry it: one parser for both.
                let data = [
                    ("DevAddr", &s.dev_addr),
                    ("NwkSKey", &s.nwk_s_key),
                    ("AppSKey", &s.app_s_key),
                ]
                .map(|(k, v)| (k.to_string(), v.clone()));
                Ok((name.clone(), session_from_secret_data(name, &data, None)?))
            })
            .collect()
    }
}

/// A session as the key/value pairs a `SecretRequest` carries: what the
/// EdgeX secret store is given, and reads back through
/// [`session_from_secret_data`].
pub fn session_data(s: &Session) -> Vec<(String, String)> {
    [
        ("DevAddr", s.dev_addr.to_string()),
        ("NwkSKey", hex::encode(s.nwk_s_key.expose())),
        ("AppSKey", hex::encode(s.app_s_key.expose())),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec()
}

/// The session in an EdgeX `SecretRequest`'s `secretData` (keys NwkSKey,
/// AppSKey and, unless the device has one, DevAddr; case-insensitive).
pub fn session_from_secret_data(
    device: &str,
    data: &[(String, String)],
    known_addr: Option<DevAddr>,
) -> Result<Session, SecretError> {
    let get = |k: &str| {
        data.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.trim())
    };
    let bad = |field| SecretError::Invalid {
        device: device.to_string(),
        field,
    };
    let key = |field: &'static str| {
        get(field)
            .ok_or(bad(field))
            .and_then(|v| AesKey::from_hex(v).map_err(|_| bad(field)))
    };
    let dev_addr = match get("DevAddr") {
        Some(v) => DevAddr::from_hex(v).map_err(|_| bad("DevAddr"))?,
        None => known_addr.ok_or(bad("DevAddr"))?,
    };
    Ok(Session {
        dev_addr,
        nwk_s_key: key("NwkSKey")?,
        app_s_key: key("AppSKey")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const NWK: &str = "2b7e151628aed2a6abf7158809cf4f3c";
    const APP: &str = "000102030405060708090a0b0c0d0e0f";

    #[test]
    fn stored_owner_only_and_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let mut store = SecretStore::open(d.path()).unwrap();
        let data = vec![
            ("nwkskey".to_string(), NWK.to_string()),
            ("AppSKey".to_string(), APP.to_string()),
            ("DevAddr".to_string(), "26011bda".to_string()),
        ];
        let s = session_from_secret_data("m1", &data, None).unwrap();
        store.put("m1", &s).unwrap();
        let mode = std::fs::metadata(d.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let store = SecretStore::open(d.path()).unwrap();
        assert_eq!(store.len(), 1);
        let sessions = store.sessions().unwrap();
        assert_eq!(sessions[0].0, "m1");
        assert_eq!(
            sessions[0].1.nwk_s_key.expose()[..],
            hex::decode(NWK).unwrap()[..]
        );
        assert_eq!(sessions[0].1.dev_addr.to_string(), "26011bda");
    }

    #[test]
    fn errors_name_the_field_never_the_value() {
        let data = vec![
            (
                "NwkSKey".to_string(),
                "zz7e151628aed2a6abf7158809cf4f3c".to_string(),
            ),
            ("AppSKey".to_string(), APP.to_string()),
        ];
        let e = session_from_secret_data("m1", &data, Some(DevAddr(1)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("NwkSKey") && !e.contains("zz7e"), "{e}");
        let e = session_from_secret_data("m1", &data[1..], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("DevAddr"), "{e}");
        let s = session_from_secret_data(
            "m1",
            &[
                ("NwkSKey".into(), NWK.into()),
                ("AppSKey".into(), APP.into()),
            ],
            Some(DevAddr(7)),
        )
        .unwrap();
        assert!(!format!("{s:?}").contains(&NWK[..8]));
    }
}
