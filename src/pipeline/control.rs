//! What the control plane asks of the pipeline (the mailbox's messages):
//! sessions and devices from the API and EdgeX, and the handover's adopt,
//! standby, resume and state requests. Answers go back on each message's
//! channel; the pipeline's own state changes only here and on frames.

use std::sync::atomic::Ordering::Relaxed;

use super::Pipeline;
use crate::control::mailbox::{Adopted, Control};
use crate::edgex::delivered::later;
use crate::lorawan::{Eui64, FcntState};

/// A frame proves a provider hears a device only if its counter is at
/// most this many frames behind the device's last one here.
const FRESH_FRAMES: u32 = 1000;

impl Pipeline {
    pub(super) fn apply(&mut self, c: Control) -> anyhow::Result<()> {
        match c {
            Control::Session { device, session } => {
                let s = &session;
                self.registry
                    .set_session(device, s.dev_addr, &s.nwk_s_key, &s.app_s_key);
                tracing::info!(device = %self.registry.get(device).name, dev_addr = %s.dev_addr, "ABP session set");
            }
            Control::AddDevice { entry, profile } => self.add_device(entry, profile),
            Control::UpdateDevice { entry, profile } => self.update_device(entry, profile),
            Control::RemoveDevice { dev_eui } => self.remove_device(dev_eui),
            Control::Adopt { devices, done } => {
                let r = self.adopt(devices);
                let _ = done.send(r);
                // A join state that came with them may name a parked
                // frame's DevAddr.
                self.replay_parked()?;
            }
            Control::Standby { devices, done } => {
                let ids: Vec<u32> = devices
                    .into_iter()
                    .filter_map(|eui| self.registry.by_eui(eui))
                    .collect();
                // Frames this edge has already heard are its to publish,
                // without waiting for their de-duplication windows: the
                // other edge takes over from the counters this edge then
                // reports, and a frame both edges held would be lost.
                let mut heard = Vec::new();
                self.dedup
                    .take_where(|h| ids.contains(&h.device), |h| heard.push(h));
                for h in heard {
                    self.publish(h)?;
                }
                for id in ids {
                    self.standby.entry(id).or_default();
                    if self.adopted.contains(&id) {
                        // Its commands are the holder's to answer now.
                        self.devices.remove(id);
                    }
                }
                let _ = done.send(());
            }
            Control::Resume {
                after,
                joins,
                macs,
                done,
            } => {
                // Joins the other edge answered: their sessions first, so
                // the device's frames decode here again.
                for (eui, state) in joins {
                    if let Some(id) = self.registry.by_eui(eui) {
                        self.take_join_state(id, state, super::join::Whose::Holder)?;
                    }
                }
                for (eui, state) in macs {
                    if let Some(id) = self.registry.by_eui(eui) {
                        self.mac.take(id, self.registry.get(id), state)?;
                    }
                }
                let mut covered = Vec::new();
                for (eui, delivered) in after {
                    self.resume(eui, delivered, &mut covered)?;
                }
                // Frames under the sessions those joins made, heard before
                // they were known here.
                self.replay_parked()?;
                let _ = done.send(covered);
            }
            Control::Counters { devices, reply } => {
                let counters = devices
                    .into_iter()
                    .filter_map(|eui| {
                        let id = self.registry.by_eui(eui)?;
                        Some((eui, self.states[id as usize], self.store.down(eui)))
                    })
                    .collect();
                let _ = reply.send(counters);
            }
            Control::AnswerJoins {
                devices,
                answer,
                done,
            } => {
                for id in devices.into_iter().filter_map(|e| self.registry.by_eui(e)) {
                    if answer {
                        self.no_joins.remove(&id);
                    } else {
                        self.no_joins.insert(id);
                    }
                }
                let _ = done.send(());
            }
            Control::JoinStates { devices, reply } => {
                let states = devices
                    .into_iter()
                    .filter(|eui| {
                        self.registry
                            .by_eui(*eui)
                            .is_some_and(|id| self.registry.get(id).otaa.is_some())
                    })
                    .map(|eui| (eui, self.joins.get(eui)))
                    .collect();
                let _ = reply.send(states);
            }
            Control::ProveHeard { frames, reply } => {
                let proofs = frames.iter().map(|phy| self.prove_heard(phy)).collect();
                let _ = reply.send(proofs);
            }
            Control::Addresses { reply } => {
                let addrs = (0..self.registry.len() as u32)
                    .filter_map(|id| {
                        let d = self.registry.get(id);
                        let live = !d.removed && d.crypto.is_some();
                        Some((d.dev_eui, d.dev_addr.filter(|_| live)?))
                    })
                    .collect();
                let _ = reply.send(addrs);
            }
            Control::MacStates { devices, reply } => {
                let states = devices
                    .into_iter()
                    .filter_map(|eui| {
                        let id = self.registry.by_eui(eui)?;
                        Some((eui, self.mac.get(id, self.registry.get(id))?))
                    })
                    .collect();
                let _ = reply.send(states);
            }
        }
        Ok(())
    }

    /// Whether a frame under `addr`, a DevAddr no device here has, waits
    /// (see [`super::parked`]): an OTAA device is on standby here (its
    /// holder may have joined it) and `addr` is one this network's joins
    /// draw (frames of other networks' devices, which a provider's
    /// gateways hear all the time, are refused at once).
    pub(super) fn parks(&self, addr: crate::lorawan::DevAddr) -> bool {
        !self.standby.is_empty()
            && self.config.join.network().prefix.contains(addr)
            && self
                .standby
                .keys()
                .any(|id| self.registry.get(*id).otaa.is_some())
    }

    /// Decode the parked frames again (their DevAddrs may be known now);
    /// those still unknown wait on while a device is on standby, with
    /// their age.
    pub(super) fn replay_parked(&mut self) -> anyhow::Result<()> {
        if self.parked.is_empty() {
            return Ok(());
        }
        let frames = self.parked.take_all();
        tracing::debug!(frames = frames.len(), "decoding parked frames again");
        for f in frames {
            self.replaying = Some(f.at);
            let r = self.handle_phy(&f.phy, f.rx, f.source, f.ack);
            self.replaying = None;
            r?;
        }
        Ok(())
    }

    /// Remember a frame of a device this edge does not serve (when it
    /// proves coverage on a market).
    pub(super) fn heard_elsewhere(
        &self,
        dev_addr: u32,
        phy: &[u8],
        rx: &crate::pipeline::uplink::RxMeta,
    ) {
        if let Some(h) = &self.heard_elsewhere {
            let now = (super::now_ns() / 1_000_000) as u64;
            h.lock().expect("heard elsewhere").record(
                dev_addr,
                phy,
                rx.rssi,
                rx.snr,
                rx.datr.map(|d| d.to_string()),
                now,
            );
        }
    }

    /// The device whose session key authenticates `phy` (a frame a
    /// provider says its gateways heard), if its counter is recent: within
    /// [`FRESH_FRAMES`] of the last one this edge took from the device.
    fn prove_heard(&self, phy: &[u8]) -> Option<Eui64> {
        let frame = crate::lorawan::parse_uplink(phy).ok()?;
        for id in self.registry.by_addr(frame.dev_addr) {
            let d = self.registry.get(id);
            let Some(crypto) = d
                .crypto
                .as_ref()
                .filter(|_| d.dev_addr == Some(frame.dev_addr))
            else {
                continue;
            };
            let state = self.states[id as usize];
            let mut scratch = [0; crate::lorawan::crypto::MAX_PHY_PAYLOAD];
            if let Ok(auth) = crate::lorawan::verify_mic(frame, crypto, &state, &mut scratch) {
                let fresh = state
                    .last
                    .is_none_or(|l| auth.fcnt.saturating_add(FRESH_FRAMES) >= l);
                return fresh.then_some(d.dev_eui);
            }
        }
        None
    }

    /// A parked frame whose DevAddr never became known: refused as it
    /// would have been at once.
    pub(super) fn refuse_parked(&self, f: super::parked::ParkedFrame) {
        if let Ok(u) = crate::lorawan::parse_uplink(&f.phy) {
            self.heard_elsewhere(u.dev_addr.0, &f.phy, &f.rx);
        }
        let addr = crate::lorawan::parse_uplink(&f.phy).map(|u| u.dev_addr);
        let why = match addr {
            Ok(a) => format!(
                "gateway {}: no device with DevAddr {a} (waited for a handover's join state)",
                f.rx.gateway
            ),
            Err(e) => format!("gateway {}: {e}", f.rx.gateway),
        };
        self.refuse(crate::metrics::Reason::UnknownDevAddr, &why, f.ack);
    }

    /// Take handed-over devices in; new ones start in standby.
    fn adopt(&mut self, devices: Vec<Adopted>) -> Result<(), String> {
        for a in devices {
            let eui = a.entry.dev_eui;
            let known = self.registry.by_eui(eui).is_some();
            let id = self
                .registry
                .adopt(a.entry, a.profile)
                .map_err(|e| e.to_string())?;
            if !known {
                // This edge judges counters by the frames it hears itself:
                // starting from the other edge's counter would refuse frames
                // still on their way here. Only the reset epoch is taken
                // (it is part of event ids), unless this edge knows better.
                let saved = self.store.get(eui);
                let start = FcntState {
                    last: None,
                    epoch: a.up.epoch,
                };
                self.states
                    .push(if later(saved, start) { saved } else { start });
                self.standby.entry(id).or_default();
                self.adopted.insert(id);
            }
            if a.down > self.store.down(eui) {
                self.store
                    .record_down(eui, a.down - 1)
                    .map_err(|e| e.to_string())?;
            }
            if let Some(theirs) = a.join {
                self.take_join_state(id, theirs, super::join::Whose::Sync)
                    .map_err(|e| e.to_string())?;
            }
            if let Some(theirs) = a.mac {
                self.mac
                    .take(id, self.registry.get(id), theirs)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Publish device `eui` again: its held uplinks after `delivered`, then
    /// live. The counter state is not moved to `delivered`: uplinks from
    /// before it may still arrive (a broker redelivering what this edge had
    /// not acknowledged when it died), and against a raised counter they
    /// would look like a reboot. They are recognised at publish instead
    /// (see [`Pipeline::covered`]).
    fn resume(
        &mut self,
        eui: Eui64,
        delivered: FcntState,
        covered: &mut Vec<(Eui64, FcntState)>,
    ) -> anyhow::Result<()> {
        let Some(id) = self.registry.by_eui(eui) else {
            return Ok(());
        };
        if delivered.last.is_some() {
            self.covered.insert(id, delivered);
        }
        if self.adopted.contains(&id) {
            // Held here now: its GET and PUT commands are answered here.
            self.devices.put(id, self.registry.get(id));
        }
        let held = self.standby.remove(&id).unwrap_or_default();
        for h in held {
            if later(h.uplink.counter(), delivered) {
                self.metrics.handover_replayed.fetch_add(1, Relaxed);
            } else {
                covered.push((eui, h.uplink.counter()));
            }
            self.publish(h)?;
        }
        Ok(())
    }
}
