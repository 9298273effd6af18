//! The pipeline as join server: JoinRequest → checks → durable decision →
//! JoinAccept through the best gateway, and the switch to a joined session
//! on the device's first uplink under it. The decisions are
//! `lorawan::otaa`'s; this part only finds the device, persists and sends.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::join_state::{restore_joined, PendingJoin};
use super::Pipeline;
use crate::ingest::{ack_all, Ack};
use crate::lorawan::join::{build_join_accept, parse_join_request, JoinError};
use crate::lorawan::otaa::{accept_fields, JoinRefusal};
use crate::lorawan::{DevAddr, FcntState};
use crate::metrics::{Reason, Source};
use crate::pipeline::uplink::RxMeta;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Pipeline {
    /// A JoinRequest heard by a gateway.
    pub(super) fn handle_join(
        &mut self,
        phy: &[u8],
        rx: RxMeta,
        source: Source,
        ack: Option<Ack>,
    ) -> anyhow::Result<()> {
        let key = self.joining.key_of_bytes(phy);
        if let Some(p) = self.joining.get_mut(key) {
            if rx.better_than(&p.best) {
                (p.best, p.source) = (rx, source);
            }
            self.metrics.duplicates.fetch_add(1, Relaxed);
            ack_all(ack);
            return Ok(());
        }
        let req = match parse_join_request(phy) {
            Ok(r) => r,
            Err(e) => {
                self.refuse_bad_frame(&rx, &e, ack);
                return Ok(());
            }
        };
        let Some(id) = self.registry.by_eui(req.dev_eui) else {
            self.found(req.dev_eui, req.join_eui, &rx);
            let why = format_args!("JoinRequest from unknown DevEUI {}", req.dev_eui);
            self.refuse(Reason::UnknownDevEui, &why, ack);
            return Ok(());
        };
        let device = self.registry.get(id);
        let name = device.name.clone();
        // Another edge holds this device (a handover), or a container taking
        // it over will: the holder of the current epoch answers, never both.
        // This edge still takes the same decision, silently: JoinNonce and
        // DevAddr follow from the synced join state and the request alone,
        // so it knows the session the holder gave and decodes the device's
        // frames even if the holder dies before its next sync.
        let shadow = self.standby.contains_key(&id) || self.no_joins.contains(&id);
        let Some(keys) = device.otaa else {
            let why = format_args!("device {name} sent a JoinRequest but is not an OTAA device");
            self.refuse(Reason::NotOtaa, &why, ack);
            return Ok(());
        };
        if req.join_eui != keys.join_eui {
            let why = format_args!(
                "device {name}: JoinRequest for JoinEUI {}, not its own",
                req.join_eui
            );
            self.refuse(Reason::JoinEui, &why, ack);
            return Ok(());
        }
        if let Err(JoinError::Mic) = req.verify(&keys.app_key) {
            let why =
                format_args!("device {name}: JoinRequest MIC does not verify with its AppKey");
            self.refuse(Reason::Mic, &why, ack);
            return Ok(());
        }
        let mut state = self.joins.get(req.dev_eui);
        let network = self.config.join.network();
        let registry = &self.registry;
        let draw =
            crate::lorawan::otaa::address_draws(req.dev_eui, state.next_join_nonce, req.dev_nonce);
        let decision = state.on_join_request(
            &req,
            device.mac_version,
            &network,
            unix_now(),
            draw,
            |a: DevAddr| registry.addr_in_use(a),
        );
        let session = match decision {
            Ok(d) => d.session,
            Err(_) if shadow => {
                ack_all(ack);
                return Ok(());
            }
            Err(e) => {
                let reason = match e {
                    JoinRefusal::NonceReused { .. } | JoinRefusal::NonceNotIncreasing { .. } => {
                        Reason::DevNonce
                    }
                    _ => Reason::JoinRefused,
                };
                self.refuse(
                    reason,
                    &format_args!("device {name}: JoinRequest refused: {e}"),
                    ack,
                );
                return Ok(());
            }
        };
        // Durable before anything goes out: a replay of this JoinRequest is
        // refused even after a crash, and the session is found again.
        let view = crate::pipeline::device_state::JoinView::of(&state);
        self.joins.record(req.dev_eui, state)?;
        if let Some(d) = self.devices.get_opt(id) {
            *d.join.lock().expect("device state lock") = Some(view);
        }
        ack_all(ack);
        let (nwk, app) = session.keys(&keys.app_key);
        self.registry.set_pending(id, session.dev_addr, &nwk, &app);
        if shadow {
            tracing::debug!(device = %name, dev_addr = %session.dev_addr, "JoinRequest left to the edge that holds the device; its session noted");
            return Ok(());
        }
        let device = self.registry.get(id);
        let region = self.scheduler.region_of(device.region);
        let rx_settings = device
            .rx_windows
            .over(self.config.downlink.rx_defaults(region));
        let rx2_dr = region.dr_index(rx_settings.rx2_datr, false).unwrap_or(0);
        let fields = accept_fields(
            &session,
            rx_settings.rx1_dr_offset,
            rx2_dr,
            rx_settings.rx1_delay.as_secs().clamp(1, 15) as u8,
            region.cf_list(device.mac_version),
        );
        let accept = build_join_accept(&keys.app_key, &fields);
        self.metrics.joins_accepted.fetch_add(1, Relaxed);
        tracing::info!(device = %name, dev_eui = %req.dev_eui, dev_addr = %session.dev_addr,
            dev_nonce = req.dev_nonce, join_nonce = session.join_nonce, gateway = %rx.gateway, "JoinRequest accepted");
        self.joining.insert(
            key,
            PendingJoin {
                device: id,
                accept,
                best: rx,
                source,
            },
            Instant::now(),
        );
        Ok(())
    }

    /// Send the JoinAccepts whose de-duplication window has closed.
    pub(super) fn emit_joins(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.joining.due(now, |p| due.push(p));
        for p in due {
            let device = self.registry.get(p.device);
            self.scheduler
                .on_join(p.device, device, p.accept, &p.best, p.source);
        }
    }

    /// The other edge's join state of device `id`, with its sessions, so
    /// the device never has to join again because its edge changed. From
    /// the edge that held the device (`Whose::Holder`: the release at
    /// hand-back) it is the truth and replaces this edge's: this edge only
    /// shadowed the device's joins, and a shadow can be wrong (a
    /// JoinRequest the holder never answered, one the holder answered that
    /// this edge never heard). From a session sync (`Whose::Sync`) it is
    /// taken if it is further along than this edge's (more joins answered,
    /// or the same join and its session in use where ours is still
    /// pending): a sync may be older than the shadow. Its active session's
    /// counter epoch becomes this edge's for the device when later, so both
    /// count its frames alike (event ids carry the epoch).
    pub(super) fn take_join_state(
        &mut self,
        id: u32,
        theirs: crate::lorawan::otaa::JoinState,
        whose: Whose,
    ) -> anyhow::Result<()> {
        let eui = self.registry.get(id).dev_eui;
        let ours = self.joins.get(eui);
        if theirs == ours {
            return Ok(());
        }
        if whose == Whose::Sync {
            let progress =
                |s: &crate::lorawan::otaa::JoinState| (s.next_join_nonce, s.pending.is_none());
            let addrs = |s: &crate::lorawan::otaa::JoinState| {
                (s.active.map(|a| a.dev_addr), s.pending.map(|p| p.dev_addr))
            };
            // The same join with other sessions: the other edge answered
            // it (this one shadowed it), so its sessions are the device's.
            let differs = progress(&theirs) == progress(&ours) && addrs(&theirs) != addrs(&ours);
            if progress(&theirs) < progress(&ours)
                || (progress(&theirs) == progress(&ours) && !differs)
            {
                return Ok(());
            }
        }
        self.joins.record(eui, theirs.clone())?;
        restore_joined(&mut self.registry, id, &theirs, &self.devices);
        if let Some(epoch) = theirs.active.and_then(|s| s.epoch) {
            if epoch > self.states[id as usize].epoch {
                self.store.start_session(eui, epoch)?;
                self.states[id as usize] = FcntState { last: None, epoch };
                tracing::info!(device = %self.registry.get(id).name, epoch, "joined session taken from the other edge");
            }
        }
        Ok(())
    }

    /// Device `id`'s first uplink under its pending session arrived: the
    /// session is its own now, with counters from 0 in `epoch`.
    pub(super) fn activate(&mut self, id: u32, epoch: u32) -> anyhow::Result<()> {
        let eui = self.registry.get(id).dev_eui;
        let mut state = self.joins.get(eui);
        if state.activate(epoch).is_none() || !self.registry.activate(id) {
            return Ok(());
        }
        let view = crate::pipeline::device_state::JoinView::of(&state);
        self.joins.record(eui, state)?;
        if let Some(d) = self.devices.get_opt(id) {
            *d.join.lock().expect("device state lock") = Some(view);
        }
        self.store.start_session(eui, epoch)?;
        self.states[id as usize] = FcntState { last: None, epoch };
        let device = self.registry.get(id);
        if let Some(d) = self.devices.get_opt(id) {
            *d.dev_addr.lock().expect("device state lock") = device.dev_addr;
        }
        self.metrics.sessions_activated.fetch_add(1, Relaxed);
        tracing::info!(device = %device.name, dev_addr = ?device.dev_addr, epoch, "joined session in use");
        Ok(())
    }
}

/// Where another edge's join state comes from (see
/// [`Pipeline::take_join_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Whose {
    /// The edge that held the device, handing it back: the truth.
    Holder,
    /// A session sync from the edge that holds it: may be older than this
    /// edge's shadow.
    Sync,
}
