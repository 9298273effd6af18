//! Device discovery the device-sdk way. A JoinRequest from a DevEUI no
//! device has is a discovered device ([`found`]); a discovery matches what
//! was found against the provision watchers ([`watcher`]) and adds each
//! match, with the watcher's profile and admin state, to the service and to
//! core-metadata. The device joins once its AppKey arrives as a secret.
//!
//! Pure: the service runs it (`service::discovery`).

pub mod found;
pub mod watcher;

pub use found::{Found, FoundDevice};
pub use watcher::{ProvisionWatcher, WatcherError};

/// The devices of `found` that a watcher admits and that `known` does not
/// have yet, each with the first watcher (by name) that admits it.
pub fn matches<'a>(
    found: &'a [FoundDevice],
    watchers: &'a [ProvisionWatcher],
    known: impl Fn(&FoundDevice) -> bool,
) -> Vec<(&'a FoundDevice, &'a ProvisionWatcher)> {
    found
        .iter()
        .filter(|d| !known(d))
        .filter_map(|d| {
            let props = d.properties();
            watchers.iter().find(|w| w.admits(&props)).map(|w| (d, w))
        })
        .collect()
}
