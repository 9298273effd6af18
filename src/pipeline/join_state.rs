//! What the join server keeps between a JoinRequest and its answer, and
//! the sessions joins made, given back to devices at start: the join half
//! of the pipeline without the pipeline (its struct holds these; [`super::join`]
//! drives them).

use crate::devices::Registry;
use crate::metrics::Source;
use crate::pipeline::device_state::DeviceStates;
use crate::pipeline::uplink::RxMeta;
use crate::store::joins::JoinStore;

/// A JoinAccept waiting for the de-duplication window to close, so that
/// every gateway's copy of the JoinRequest is in and the best one answers.
pub(super) struct PendingJoin {
    pub(super) device: u32,
    pub(super) accept: Vec<u8>,
    pub(super) best: RxMeta,
    pub(super) source: Source,
}

/// Give OTAA devices the sessions their joins made (derived again from the
/// AppKey): the active one, and a JoinAccept's the device has not used yet.
pub(super) fn restore_joined_sessions(
    registry: &mut Registry,
    joins: &JoinStore,
    devices: &DeviceStates,
) {
    for (eui, state) in joins.iter() {
        if let Some(id) = registry.by_eui(*eui) {
            restore_joined(registry, id, state, devices);
        }
    }
}

/// Give OTAA device `id` the sessions of `state`, and show its join state.
pub(super) fn restore_joined(
    registry: &mut Registry,
    id: u32,
    state: &crate::lorawan::otaa::JoinState,
    devices: &DeviceStates,
) {
    let Some(keys) = registry.get(id).otaa else {
        return;
    };
    // Devices adopted in a handover have no API state (see DEVELOPERS).
    let api = devices.get_opt(id);
    if let Some(d) = &api {
        *d.join.lock().expect("device state lock") =
            Some(crate::pipeline::device_state::JoinView::of(state));
    }
    if let Some(s) = state.active {
        let (nwk, app) = s.keys(&keys.app_key);
        registry.set_session(id, s.dev_addr, &nwk, &app);
        if let Some(d) = api {
            *d.dev_addr.lock().expect("device state lock") = Some(s.dev_addr);
        }
    }
    match state.pending {
        Some(s) => {
            let (nwk, app) = s.keys(&keys.app_key);
            registry.set_pending(id, s.dev_addr, &nwk, &app);
        }
        None => registry.clear_pending(id),
    }
}

/// The MType of a PHYPayload (its top three bits): 0 is a JoinRequest.
pub(super) fn is_join_request(phy: &[u8]) -> bool {
    phy.first().is_some_and(|b| b >> 5 == 0)
}
