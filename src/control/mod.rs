//! The control plane: every request that is not a frame — device commands
//! (GET/PUT), secrets, discovery, status — answered the same way whichever
//! transport carried it (REST in [`crate::api`], the EdgeX message bus in
//! [`crate::edgex::requests`], the secret-store poller), and the mailbox
//! through which they and the handover reach the pipeline.
//!
//! - [`mailbox`]: the pipeline's messages ([`Control`](mailbox::Control)) and how to wait for
//!   an answer. A leaf every side imports.
//! - [`plane`]: the state commands read, built once from finished parts.
//! - [`command`]: a device's commands resolved against its profile; GET
//!   answers the last readings, PUT queues a downlink.
//! - [`secret`]: secrets the EdgeX way, a device's session among them.
//! - [`status`]: what this service adds (gateways, handover, registration,
//!   a device's session) and discovery.
//! - [`answer`]: what they all return: a status and the EdgeX DTO.

pub mod answer;
pub mod command;
pub mod mailbox;
pub mod plane;
pub mod secret;
pub mod status;
