//! A lean build without the `js` feature: no JavaScript engine. A profile's
//! script is refused when a device first needs it, saying why.

use std::path::Path;
use std::time::Duration;

use super::types::{Decoded, JsError};

/// Never made in this build.
pub struct JsCodec {
    pub has_encoder: bool,
    never: std::convert::Infallible,
}

impl std::fmt::Debug for JsCodec {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.never {}
    }
}

const ABSENT: &str =
    "this build has no JavaScript engine (build with the cargo feature `js`, a default one)";

impl JsCodec {
    pub fn load(path: &Path, _: &str, _: Duration, _: usize) -> Result<Self, JsError> {
        Err(JsError::Load {
            file: path.display().to_string(),
            message: ABSENT.into(),
        })
    }
    pub fn decode(&self, _: &[u8], _: u8, _: f64, _: &str) -> Result<Decoded, JsError> {
        match self.never {}
    }
    pub fn encode(&self, _: &serde_json::Value, _: &str) -> Result<(Vec<u8>, u8), JsError> {
        match self.never {}
    }
    pub fn file(&self) -> &str {
        match self.never {}
    }
    pub fn console_lines(&self) -> (u64, u64) {
        match self.never {}
    }
    pub fn may_log_warning(&self) -> bool {
        match self.never {}
    }
}

/// A vendor's test file cannot be read without the engine either.
pub fn eval_literal(_: &str) -> Result<serde_json::Value, String> {
    Err(ABSENT.into())
}
