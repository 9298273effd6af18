//! Generated from `proto/handover.proto` (tonic).
#![allow(clippy::all, missing_docs)]
include!(concat!(env!("OUT_DIR"), "/handover.rs"));

impl std::fmt::Debug for DeviceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceSession {{ name: {:?}, dev_eui: {:016x}, dev_addr: {:08x}, keys: <redacted> }}",
            self.name, self.dev_eui, self.dev_addr
        )
    }
}
