//! What the service and the engine (or a lean build's stand-in) share: the
//! sandbox's defaults, its errors and a decode's result.

use std::time::Duration;

/// Per-call CPU budget and per-codec memory, by default.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(20);
pub const DEFAULT_MEMORY: usize = 16 << 20;

/// The FPort a legacy encoder (`Encoder`, `Encode`) is called with: EdgeX
/// commands carry no port, and those entry points return only bytes.
pub const LEGACY_ENCODER_FPORT: u8 = 1;

/// Why a script did not load or a call failed; always names the file.
#[derive(Debug, thiserror::Error, PartialEq, Clone)]
pub enum JsError {
    #[error("codec {file}: {message}")]
    Load { file: String, message: String },
    #[error("codec {file}: {message}")]
    Threw { file: String, message: String },
    #[error("codec {file}: stopped after its {ms} ms budget")]
    Budget { file: String, ms: u128 },
    #[error("codec {file}: stopped at its {mb} MB memory limit (or it threw null)")]
    Memory { file: String, mb: usize },
    #[error("codec {file}: {message}")]
    Output { file: String, message: String },
}

/// A decode's result, as the script gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub data: serde_json::Value,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}
