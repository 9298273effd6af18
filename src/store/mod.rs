//! Durable state, each store a file (or folder) under `Service.DataDir`,
//! each written so a crash at any byte leaves the last good state:
//!
//! - [`counters`]: every device's frame counters (a crash never lets a
//!   counter go back, so a replayed frame is never accepted).
//! - [`joins`]: OTAA join state (DevNonces seen, the session a join made).
//! - [`state_log`]: the record log under both, and under the MAC state.
//! - [`secrets`]: sessions and secrets that arrived through the API
//!   (owner-only file), unless EdgeX secure mode keeps them.
//! - [`outbox`]: the hash-chained journal events wait in for EdgeX.
//! - [`data_dir`]: the directory itself, claimed by one service at a time.

pub mod counters;
pub mod data_dir;
pub mod joins;
pub mod outbox;
pub mod secrets;
pub mod state_log;
