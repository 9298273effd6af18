//! The market contract a customer edge holds (`<DataDir>/market/contract.json`):
//! written by its market task, read by `handover status` and the API.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The market contract this edge holds (`<DataDir>/market/contract.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct State {
    pub contract_id: String,
    pub demand_id: String,
}

impl State {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("market/contract.json")
    }

    pub fn load(data_dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(Self::path(data_dir)).ok()?).ok()
    }

    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let p = Self::path(data_dir);
        std::fs::create_dir_all(p.parent().expect("a parent"))?;
        crate::fsutil::write_atomic(&p, &serde_json::to_vec_pretty(self)?, 0o600)
    }

    pub fn clear(data_dir: &Path) {
        let _ = std::fs::remove_file(Self::path(data_dir));
    }
}
