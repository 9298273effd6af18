//! LoRaWAN 1.0.x, pure: no I/O, no tokio, no configuration.
//!
//! - [`keys`]: session keys (never printable), DevAddr, EUIs.
//! - [`frame`]: PHYPayload framing, via the `lorawan` crate (lora-rs).
//! - [`crypto`]: MIC and FRMPayload keystream with cached key schedules;
//!   [`aes128`]: the AES under them (AES-NI inline, or software).
//! - [`fcnt`]: 32-bit counter reconstruction and the counter policies.
//! - [`uplink`]: the named steps parse → MIC → counter → decrypt.
//! - [`encode`]: building frames: downlinks, and uplinks for the simulator and tests.
//! - [`join`], [`otaa`]: JoinRequest/JoinAccept, and the join server's
//!   decisions (DevNonce replay, session derivation) as a state machine.
//! - [`mac`]: MAC commands, the per-device MAC state machine, ADR.
//! - [`region`], [`radio`]: the Regional Parameters' channel plans, data
//!   rates and receive windows.
//!
//! Why `lorawan` 0.9 and not `lorawan-encoding` 0.6.2: it is the maintained
//! line of the same code, builds with current `aes`/`cmac`, and its framing
//! checks are what we want; we bypass its crypto only to cache key schedules.

pub mod aes128;
pub mod crypto;
pub mod encode;
pub mod fcnt;
pub mod frame;
pub mod join;
pub mod keys;
pub mod mac;
pub mod otaa;
pub mod radio;
pub mod region;
pub mod uplink;

pub use crypto::SessionCrypto;
pub use fcnt::{FcntPolicy, FcntState, Late};
pub use frame::{parse_uplink, DataFrame, FrameError};
pub use keys::{AesKey, DevAddr, Eui64};
pub use radio::DataRate;
pub use uplink::{check_counter, verify_mic, Accepted, Authenticated, PayloadBuf, UplinkError};

#[cfg(test)]
mod vectors;
