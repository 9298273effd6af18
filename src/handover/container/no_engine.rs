//! A lean build without the `container` feature: no engine client, so a
//! container takeover cannot start. The configuration check refuses
//! `Handover.Takeover: container` at start; [`Engine::connect`] says why.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("container engine {address}: this build has no container engine client (cargo feature `container`)")]
    Connect { address: String },
    #[error("image {digest}: {message}")]
    Image { digest: String, message: String },
    #[error("container {name} {what}")]
    NotReady { name: String, what: String },
    #[error("container data {path}: {source}")]
    Data {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Never made in this build.
pub struct Engine(std::convert::Infallible);

pub struct RunSpec<'a> {
    pub name: &'a str,
    pub image_id: &'a str,
    pub data_dir: &'a Path,
    pub memory_bytes: u64,
    pub cpu_millis: u32,
    pub contract: &'a str,
}

impl Engine {
    pub async fn connect(address: &str) -> Result<Self, EngineError> {
        Err(EngineError::Connect {
            address: address.to_owned(),
        })
    }

    pub fn api_version(&self) -> String {
        match self.0 {}
    }

    pub async fn ensure_image(&self, _: &Path, _: &str) -> Result<bool, EngineError> {
        match self.0 {}
    }

    pub async fn run(&self, _: &RunSpec<'_>) -> Result<String, EngineError> {
        match self.0 {}
    }

    pub async fn check_running(&self, _: &str) -> Result<(), EngineError> {
        match self.0 {}
    }

    pub async fn remove(&self, _: &str) -> Result<(), EngineError> {
        match self.0 {}
    }
}
