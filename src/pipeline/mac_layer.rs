//! Every device's MAC state, kept durable (`DataDir/mac.log`), and what
//! this network server wants of each device (ADR, RX settings, DevStatus,
//! class C): the MAC half of the pipeline without the pipeline, so the
//! pipeline's struct holds it and [`super::mac`] drives it per uplink.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use crate::codec::{Reading, Value};
use crate::config::{DownlinkConfig, MacConfig};
use crate::devices::Device;
use crate::lorawan::mac::state::{device_time, Outcome, TimeSource};
use crate::lorawan::mac::{
    Decision, DownCommand, MacCommand, MacState, RxParams, UplinkMac, Wanted,
};
use crate::lorawan::radio::RxSettings;
use crate::lorawan::region::Region;
use crate::metrics::Metrics;
use crate::pipeline::uplink::Uplink;
use crate::store::state_log::{Logged, StateLog, StateLogError};

impl Logged for MacState {
    const FILE: &'static str = "mac.log";
    const WHAT: &'static str = "MAC state store";
}

impl Default for MacState {
    fn default() -> Self {
        MacState::new(
            0,
            RxParams {
                rx1_delay: 1,
                rx1_dr_offset: 0,
                rx2_dr: 0,
                rx2_frequency: 0,
            },
            0,
        )
    }
}

/// The profile resources DevStatusAns values are published as.
pub const BATTERY_RESOURCE: &str = "DevStatusBattery";
pub const MARGIN_RESOURCE: &str = "DevStatusMargin";

pub type MacStore = StateLog<MacState>;

/// Every device's MAC state, by device id, and what is wanted of it.
pub struct MacLayer {
    cfg: MacConfig,
    log: MacStore,
    states: HashMap<u32, MacState>,
    wanted: HashMap<u32, Wanted>,
}

/// A device's receive windows in the region's terms.
pub(crate) fn rx_params(region: &Region, rx: &RxSettings) -> RxParams {
    RxParams {
        rx1_delay: rx.rx1_delay.as_secs().clamp(1, 15) as u8,
        rx1_dr_offset: rx.rx1_dr_offset,
        rx2_dr: region.dr_index(rx.rx2_datr, false).unwrap_or(0),
        rx2_frequency: rx.rx2_frequency,
    }
}

/// The receive windows of `p`; `None` if the region has no such RX2 rate.
pub(crate) fn rx_settings(region: &Region, p: &RxParams) -> Option<RxSettings> {
    Some(RxSettings {
        rx1_delay: std::time::Duration::from_secs(u64::from(p.rx1_delay.max(1))),
        rx1_dr_offset: p.rx1_dr_offset,
        rx2_frequency: p.rx2_frequency,
        rx2_datr: region.data_rate(p.rx2_dr)?,
    })
}

impl MacLayer {
    pub fn new(cfg: MacConfig, log: MacStore) -> Self {
        Self {
            cfg,
            log,
            states: HashMap::new(),
            wanted: HashMap::new(),
        }
    }

    fn wanted(
        &mut self,
        id: u32,
        device: &Device,
        region: &Region,
        down: &DownlinkConfig,
    ) -> &Wanted {
        let cfg = &self.cfg;
        self.wanted.entry(id).or_insert_with(|| Wanted {
            adr: cfg.adr && device.adr,
            installation_margin: cfg.installation_margin,
            max_dr: cfg
                .max_data_rate
                .map_or(region.max_adr_dr(), |m| m.min(region.max_adr_dr())),
            max_tx_power: region.max_tx_power_index(),
            channel_masks: region.adr_channel_masks(),
            rx: rx_params(region, &device.rx_windows.over(down.rx_defaults(region))),
            dev_status_every: Some(cfg.dev_status_interval.as_secs()).filter(|s| *s > 0),
            extra_channels: region.extra_channels(),
        })
    }

    /// The device's state for the session of `epoch`: a new session (a
    /// join, a reboot) starts from what its activation set, `want`.
    fn state<'a>(
        states: &'a mut HashMap<u32, MacState>,
        log: &mut MacStore,
        id: u32,
        device: &Device,
        region: &Region,
        (epoch, now): (u32, u64),
        want: RxParams,
    ) -> &'a mut MacState {
        let current = |s: &MacState| s.epoch == epoch;
        if !states.get(&id).is_some_and(current) {
            let s = match log.find(device.dev_eui).filter(|s| current(s)) {
                Some(saved) => saved.clone(),
                None => {
                    // A JoinAccept sets RX1 and the RX2 rate, not the RX2
                    // channel: that stays the region's until an
                    // RXParamSetupReq moves it.
                    let rx = match device.otaa {
                        Some(_) => RxParams {
                            rx2_frequency: region.rx_defaults().rx2_frequency,
                            ..want
                        },
                        None => want,
                    };
                    let mut fresh = MacState::new(epoch, rx, now);
                    // A JoinAccept's CFList gave it the first extra channels.
                    if device.otaa.is_some() {
                        fresh.channels = region.cf_list_channels(device.mac_version);
                    }
                    if let Err(e) = log.record(device.dev_eui, fresh.clone()) {
                        tracing::error!(device = %device.name, error = %e, "MAC state not saved");
                    }
                    fresh
                }
            };
            states.insert(id, s);
        }
        states.get_mut(&id).expect("inserted")
    }

    /// Where the device listens now (what it acknowledged), for the scheduler.
    pub(crate) fn rx_of(&self, id: u32, region: &Region) -> Option<RxSettings> {
        self.states
            .get(&id)
            .and_then(|s| rx_settings(region, &s.rx))
    }

    /// Uplink `up` of device `id` is about to be published: read its MAC
    /// commands, add DevStatus readings, decide what to send back.
    pub(crate) fn on_uplink(
        &mut self,
        id: u32,
        device: &Device,
        region: &Region,
        down: &DownlinkConfig,
        up: &mut Uplink,
        metrics: &Metrics,
    ) -> Result<Decision, StateLogError> {
        let now_ns = u64::try_from(up.received_ns).unwrap_or(0);
        self.wanted(id, device, region, down);
        let want = &self.wanted[&id];
        let now = now_ns / 1_000_000_000;
        let state = Self::state(
            &mut self.states,
            &mut self.log,
            id,
            device,
            region,
            (up.epoch, now),
            want.rx,
        );
        let dr = up
            .rx
            .datr
            .and_then(|d| Some((region.dr_index(d, true)?, d.sf)));
        let (gps_time_ns, time_source) = device_time(up.rx.gps_time_ns, now_ns);
        if up
            .mac_commands
            .iter()
            .any(|c| matches!(c, MacCommand::DeviceTimeReq))
        {
            let counter = match time_source {
                TimeSource::Gateway => &metrics.device_time_gateway,
                TimeSource::Reception => &metrics.device_time_reception,
            };
            counter.fetch_add(1, Relaxed);
            tracing::debug!(device = %device.name, source = ?time_source, gateway_gps_ns = ?up.rx.gps_time_ns, "DeviceTimeAns");
        }
        let d = state.on_uplink(
            &UplinkMac {
                fcnt: up.fcnt,
                adr: up.adr,
                adr_ack_req: up.adr_ack_req,
                dr,
                max_snr: up.rx.snr,
                gateways: up.gateways,
                commands: &up.mac_commands,
                now: now_ns / 1_000_000_000,
                gps_time_ns,
            },
            want,
        );
        let changed = !d.outcomes.is_empty() || d.status.is_some();
        for o in &d.outcomes {
            match o {
                Outcome::AdrApplied(a) => {
                    metrics.adr_changes.fetch_add(1, Relaxed);
                    tracing::info!(device = %device.name, dr = a.dr, tx_power = a.tx_power, nb_trans = a.nb_trans, "device took its LinkADRReq");
                }
                Outcome::RxParamsApplied(p) => {
                    tracing::info!(device = %device.name, rx = ?p, "device moved its receive windows")
                }
                Outcome::AdrRefused {
                    asked,
                    power,
                    data_rate,
                    channel_mask,
                } => {
                    metrics.mac_refused.fetch_add(1, Relaxed);
                    tracing::warn!(device = %device.name, dr = asked.dr, tx_power = asked.tx_power, power, data_rate, channel_mask, "device refused a LinkADRReq: ADR capped and backing off");
                }
                Outcome::ChannelAdded(i) => {
                    tracing::info!(device = %device.name, channel = i, "device took its NewChannelReq")
                }
                Outcome::ChannelRefused(i) => {
                    metrics.mac_refused.fetch_add(1, Relaxed);
                    tracing::warn!(device = %device.name, channel = i, "device refused a NewChannelReq: not asked again");
                }
                Outcome::RxParamsRefused(p) => {
                    metrics.mac_refused.fetch_add(1, Relaxed);
                    tracing::warn!(device = %device.name, rx = ?p, "device refused an RXParamSetupReq: not asked again for these settings");
                }
                Outcome::Unanswered(what) => {
                    metrics.mac_unanswered.fetch_add(1, Relaxed);
                    tracing::info!(device = %device.name, "no answer to {what} (downlink lost?)");
                }
            }
        }
        if let Some(s) = d.status {
            metrics
                .dev_status
                .lock()
                .expect("metrics lock")
                .insert(device.name.clone(), (s.battery, s.margin));
            let profile = &up.profile;
            for (name, value) in [
                (BATTERY_RESOURCE, Value::Uint(u64::from(s.battery))),
                (MARGIN_RESOURCE, Value::Int(i64::from(s.margin))),
            ] {
                if let Some(i) = profile.resource_index(name) {
                    up.readings.push(Reading {
                        resource: i as u16,
                        value,
                    });
                }
            }
        }
        if changed {
            let s = self.states[&id].clone();
            self.log.record(device.dev_eui, s)?;
        }
        Ok(d)
    }

    /// A gateway sent `commands` in the window of device `id`'s uplink `fcnt`.
    pub(crate) fn on_sent(
        &mut self,
        id: u32,
        device: &Device,
        commands: &[DownCommand],
        fcnt: u32,
        metrics: &Metrics,
    ) -> Result<(), StateLogError> {
        let answers = commands.iter().filter(|c| c.is_answer()).count();
        let requests = commands.len() - answers;
        metrics.mac_answers.fetch_add(answers as u64, Relaxed);
        metrics.mac_requests.fetch_add(requests as u64, Relaxed);
        let Some(s) = self.states.get_mut(&id) else {
            return Ok(());
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        s.on_sent(commands, fcnt, now);
        if requests > 0 {
            self.log.record(device.dev_eui, s.clone())?;
        }
        Ok(())
    }

    pub(crate) fn sync(&mut self) -> Result<(), StateLogError> {
        self.log.sync()
    }

    /// A device's MAC state, if it has one (handover sync).
    pub(crate) fn get(&self, id: u32, device: &Device) -> Option<MacState> {
        self.states
            .get(&id)
            .or_else(|| self.log.find(device.dev_eui))
            .cloned()
    }

    /// The MAC state another edge ran the device with replaces ours: it
    /// held the device since (or, at a sync, it holds it).
    pub(crate) fn take(
        &mut self,
        id: u32,
        device: &Device,
        state: MacState,
    ) -> Result<(), StateLogError> {
        self.log.record(device.dev_eui, state.clone())?;
        self.states.insert(id, state);
        Ok(())
    }
}
