//! Vendors' JavaScript payload codecs, run as The Things Stack and
//! ChirpStack run them (LoRa Alliance TS013 Payload Codec API):
//! `decodeUplink({bytes, fPort, recvTime, variables})` → `{data, warnings,
//! errors}` and `encodeDownlink({data, variables})` → `{bytes, fPort}`,
//! with the legacy entry points as fallbacks (TTN v2 `Decoder(bytes,
//! port)` / `Encoder(object, port)`, ChirpStack v3 `Decode(fPort, bytes,
//! variables)` / `Encode(fPort, object, variables)`), and the globals
//! vendors' codecs use (`console`, Node's `Buffer`: `prelude.js`).
//!
//! The engine is QuickJS (through `rquickjs`, as ChirpStack uses it):
//! ES2020, small (about 1 MB of code), and embeddable with an interrupt
//! hook and a memory limit, which a sandbox needs. Each script is compiled
//! once, in its own runtime and context that every call reuses.
//!
//! **Calls are isolated**, as ChirpStack's fresh runtime per call isolates
//! them, at a small part of its cost: the vendor's script is compiled as
//! the body of a function, and each call runs that body afresh, so its
//! top-level variables, functions and objects are new every call (a codec
//! that counts frames in a module-level variable sees 1 every time, not the
//! count of another device's frames). Globals a sloppy script creates by
//! assignment are deleted after each call. A fresh context per call costs
//! ~130 µs; a fresh top level a few µs.
//!
//! The sandbox: no filesystem, network, timers or module loader exist in
//! that context; every call has a CPU budget (CPU time of the calling
//! thread, so a busy machine does not fail a codec that was waiting for a
//! core: the interrupt hook stops the script past it) and the runtime a
//! memory limit. A script that throws, loops or allocates without end is
//! stopped with an error naming its file; the next call works again.
//!
//! The engine is the `js` cargo feature (a default one): a lean build
//! without it refuses a profile's script when a device first needs it, with
//! an error that says so.

use std::path::PathBuf;
use std::sync::Arc;

mod types;
pub use types::{Decoded, JsError, DEFAULT_BUDGET, DEFAULT_MEMORY, LEGACY_ENCODER_FPORT};

#[cfg(feature = "js")]
mod engine;
#[cfg(feature = "js")]
pub use engine::{eval_literal, JsCodec};
#[cfg(not(feature = "js"))]
mod no_engine;
#[cfg(not(feature = "js"))]
pub use no_engine::{eval_literal, JsCodec};

/// A profile's script beside its YAML, compiled on first use and shared by
/// every device of the profile.
#[derive(Debug)]
pub struct Script {
    pub path: PathBuf,
    pub source: String,
    compiled: std::sync::OnceLock<Result<Arc<JsCodec>, JsError>>,
}

impl PartialEq for Script {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.source == other.source
    }
}

impl Script {
    pub fn new(path: PathBuf, source: String) -> Self {
        Self {
            path,
            source,
            compiled: std::sync::OnceLock::new(),
        }
    }

    /// The compiled codec (compiled once).
    pub fn codec(&self) -> Result<Arc<JsCodec>, JsError> {
        self.compiled
            .get_or_init(|| {
                JsCodec::load(&self.path, &self.source, DEFAULT_BUDGET, DEFAULT_MEMORY)
                    .map(Arc::new)
            })
            .clone()
    }
}
