//! After each published uplink: is anything due for the device (a queued
//! command, or the ACK a confirmed uplink asks for)? If so, build the frame
//! with the device's next FCntDown and hand it to the gateway that heard
//! the uplink best, for RX1; follow it to the gateway's acknowledgement,
//! falling back to RX2 when RX1 is refused.
//!
//! The downlink counter is committed only once a gateway says it sent the
//! frame, or when no answer came (the frame may have gone out: a skipped
//! counter is harmless to a mote, a reused one is not). A command leaves
//! the queue only when its frame was sent; refusals count against
//! `Downlink.MaxAttempts`.

mod network_server;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::error::TrySendError;

use super::queue::DownlinkQueue;
use super::windows::{plan, window_limit, Timing};
use super::{Transmitters, TxAck, TxRequest};
use crate::config::DownlinkConfig;
use crate::devices::{Device, DeviceClass};
use crate::lorawan::crypto::Direction;
use crate::lorawan::encode::{build_frame, FrameSpec};
use crate::lorawan::mac::commands::encode_all;
use crate::lorawan::mac::state::fit;
use crate::lorawan::mac::{Decision, DownCommand};
use crate::lorawan::radio::{RxSettings, Window};
use crate::lorawan::region::{MacVersionName, Region, RegionName};
use crate::lorawan::Eui64;
use crate::metrics::{Metrics, Source};
use crate::pipeline::uplink::{RxMeta, Uplink};
use crate::store::counters::{CounterStore, CounterStoreError};

/// The site's region and any other a device names, each built once.
pub struct Regions {
    site: Region,
    others: HashMap<RegionName, Region>,
}

impl Regions {
    pub fn new(site: Region) -> Self {
        Self {
            site,
            others: HashMap::new(),
        }
    }

    /// The region of a device naming `name` (`None`: the site's).
    pub fn get(&mut self, name: Option<RegionName>) -> &Region {
        match name {
            Some(n) if n != self.site.name() => self
                .others
                .entry(n)
                .or_insert_with(|| Region::new(crate::lorawan::region::RegionSettings::new(n))),
            _ => &self.site,
        }
    }
}

/// What a Basics Station's `dnmsg` needs, for an uplink heard by one:
/// RX1 when the plan starts there (`rx1_delay` after the uplink), and RX2.
fn station_tx(
    region: &Region,
    dev_eui: Eui64,
    up: &RxMeta,
    plan: &super::windows::Plan,
    rx2: &Window,
    rx1_delay: std::time::Duration,
) -> Option<super::StationTx> {
    let ctx = up.station?;
    let dr = |w: &Window| region.dr_index(w.datr, false);
    let rx1 = (plan.first.delay == rx1_delay)
        .then(|| Some((dr(&plan.first)?, plan.first.frequency)))
        .flatten();
    Some(super::StationTx {
        dev_eui,
        xtime: ctx.xtime,
        rctx: ctx.rctx,
        rx_delay: rx1_delay.as_secs(),
        rx1,
        rx2: (dr(rx2)?, rx2.frequency),
    })
}

/// MAC commands a gateway sent to `device` in the window of uplink `fcnt`.
#[derive(Debug)]
pub struct MacSent {
    pub device: u32,
    pub commands: Vec<DownCommand>,
    pub fcnt: u32,
}

/// A transmission waiting for its gateway's answer.
struct InFlight {
    device: u32,
    name: Arc<str>,
    dev_eui: Eui64,
    /// Its FCntDown; `None` for a JoinAccept (no counter to spend).
    fcnt: Option<u32>,
    /// The queued command carried; `None` for a bare ACK.
    seq: Option<u64>,
    /// The MAC commands carried, and the uplink whose window it is.
    mac: Option<(Vec<DownCommand>, u32)>,
    req: TxRequest,
    source: Source,
    /// RX1 was asked: the device's RX2 is left to try if it is refused.
    rx2_left: Option<Window>,
    deadline: Instant,
    /// Confirmed data down: once sent, the command waits for the device's ACK.
    confirmed: bool,
}

/// A confirmed command a gateway sent, waiting for the device's ACK (its
/// next uplink with the ACK bit; class C: by `deadline`, or it is sent again).
struct Unacked {
    seq: u64,
    name: Arc<str>,
    deadline: Option<Instant>,
}

pub struct Scheduler {
    queue: Arc<DownlinkQueue>,
    tx: Transmitters,
    cfg: DownlinkConfig,
    /// The site's region, and the others devices named (built on first use).
    regions: Regions,
    in_flight: HashMap<u32, InFlight>,
    next_id: u32,
    metrics: Arc<Metrics>,
    /// Class C devices: the best reception of their latest uplink (the
    /// gateway their commands go out through) and its protocol.
    heard: HashMap<u32, (RxMeta, Source)>,
    /// Class C commands refused or unanswered: when to try again.
    retry_at: Option<Instant>,
    /// Confirmed commands sent and not yet acknowledged, by device.
    unacked: HashMap<u32, Unacked>,
    /// Where the commands of devices heard on an application stream go.
    routes: HashMap<u32, Arc<crate::ingest::application::AppRoute>>,
    /// Commands handed to the MQTT ingest for a network server, by id.
    forwarded: HashMap<u32, network_server::Forwarded>,
}

/// How long a class C command waits after a refused or unanswered
/// transmission before the next try.
const CLASS_C_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Scheduler {
    pub fn new(
        cfg: DownlinkConfig,
        region: Region,
        queue: Arc<DownlinkQueue>,
        tx: Transmitters,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            regions: Regions::new(region),
            cfg,
            queue,
            tx,
            in_flight: HashMap::new(),
            next_id: 0,
            metrics,
            heard: HashMap::new(),
            retry_at: None,
            unacked: HashMap::new(),
            routes: HashMap::new(),
            forwarded: HashMap::new(),
        }
    }

    /// `up` of device `id` was published: send what is due for it (a
    /// queued command, the ACK of a confirmed uplink, the MAC commands of
    /// `mac`), in the windows the device listens in (`listens`: what it
    /// acknowledged; `None`: its configured windows).
    pub fn on_uplink(
        &mut self,
        id: u32,
        device: &Device,
        up: &Uplink,
        store: &CounterStore,
        mac: &Decision,
        listens: Option<RxSettings>,
    ) {
        if up.source == Source::ApplicationMqtt {
            // Its network server sends its downlinks (and acknowledges its
            // confirmed uplinks): our commands go to that server's queue.
            self.forward(id, &device.name, device.dev_eui);
            return;
        }
        if device.class == DeviceClass::C {
            self.heard.insert(id, (up.rx, up.source));
        }
        // A confirmed command sent to it: this uplink acknowledges it, or
        // says it was not received (the command goes again below).
        if let Some(u) = self.unacked.remove(&id) {
            if up.ack {
                self.metrics.downlinks_confirmed.fetch_add(1, Relaxed);
                tracing::info!(device = %u.name, command = u.seq, "the device acknowledged the confirmed downlink");
                if let Err(e) = self.queue.done(&u.name, u.seq) {
                    tracing::error!(device = %u.name, error = %e, "acknowledged command still queued");
                }
            } else {
                tracing::info!(device = %u.name, command = u.seq, "the device did not acknowledge the confirmed downlink: sending it again");
                self.refused_seq(&u.name, u.seq);
            }
        }
        let must = up.confirmed || mac.must_send;
        if !self.cfg.enabled || (!must && self.queue.is_empty()) {
            return;
        }
        if self.in_flight.values().any(|f| f.device == id) || self.unacked.contains_key(&id) {
            return; // one transmission per device at a time
        }
        let command = self.queue.front(&device.name);
        if command.is_none() && !must {
            return;
        }
        let name = &device.name;
        let (Some(crypto), Some(dev_addr)) = (device.crypto.as_ref(), device.dev_addr) else {
            tracing::debug!(device = %name, "no ABP session of ours: downlinks are the network server's");
            return;
        };
        let Some(tmst) = up.rx.tmst else {
            self.fail(
                name,
                "the uplink carried no concentrator timestamp to time RX1 from",
            );
            return;
        };
        let (mut fport, mut payload, behind, seq) = match &command {
            Some((c, behind)) => (Some(c.fport), c.payload.clone(), *behind, Some(c.seq)),
            None => (None, Vec::new(), 0, None),
        };
        let confirmed = command.as_ref().is_some_and(|(c, _)| c.confirmed);
        // Where this device listens: its region, the windows it
        // acknowledged (or its own over the defaults), and only where the
        // region allows this payload.
        let region = self.regions.get(device.region);
        let rx = listens.unwrap_or_else(|| device.rx_windows.over(self.cfg.rx_defaults(region)));
        let heard = up.rx.frequency.zip(up.rx.datr);
        let version = MacVersionName::default();
        // MAC commands ride in FOpts beside an application payload (15
        // bytes at most), or alone as an FPort 0 payload encrypted with the
        // NwkSKey, as many as the first window's rate allows.
        let (fopts, mac_sent) = if fport.is_some() {
            let room = plan(region, version, &rx, Timing::Data, heard, payload.len())
                .map_or(0, |p| {
                    window_limit(region, version, &p.first).saturating_sub(payload.len())
                });
            let sent = fit(&mac.commands, room.min(15));
            (encode_all(&sent), sent)
        } else if !mac.commands.is_empty() {
            let room = plan(region, version, &rx, Timing::Data, heard, 0)
                .map_or(0, |p| window_limit(region, version, &p.first));
            let sent = fit(&mac.commands, room);
            if !sent.is_empty() {
                fport = Some(0);
                payload = encode_all(&sent);
            }
            (Vec::new(), sent)
        } else {
            (Vec::new(), Vec::new())
        };
        let plan = match plan(
            region,
            version,
            &rx,
            Timing::Data,
            heard,
            payload.len() + fopts.len(),
        ) {
            Ok(p) => p,
            Err(e) => {
                self.fail(name, &e.to_string());
                if let Some(seq) = seq {
                    self.refused_seq(name, seq);
                }
                return;
            }
        };
        let power_dbm = self
            .cfg
            .tx_power
            .unwrap_or_else(|| region.downlink_power(plan.first.frequency));
        let fcnt = store.down(device.dev_eui);
        let spec = FrameSpec {
            dir: Direction::Down,
            confirmed,
            dev_addr,
            fcnt,
            adr: false,
            ack: up.confirmed,
            fpending: behind > 0,
            adr_ack_req: false,
            fopts: &fopts,
            fport,
        };
        let station = station_tx(
            region,
            device.dev_eui,
            &up.rx,
            &plan,
            &rx.rx2(),
            rx.rx1_delay,
        );
        let req = TxRequest {
            id: self.new_id(),
            gateway: up.rx.gateway,
            phy: build_frame(crypto, &spec, &payload),
            uplink_tmst: tmst,
            window: plan.first,
            power_dbm,
            station,
            immediately: false,
        };
        let flight = InFlight {
            device: id,
            name: name.clone(),
            dev_eui: device.dev_eui,
            fcnt: Some(fcnt),
            seq,
            mac: (!mac_sent.is_empty()).then_some((mac_sent, up.fcnt)),
            // A station tries RX2 itself.
            rx2_left: plan.fallback.filter(|_| station.is_none()),
            req,
            source: up.source,
            deadline: Instant::now(),
            confirmed,
        };
        tracing::debug!(device = %name, fcnt, command = ?seq, ack = up.confirmed, mac = ?flight.mac, "downlink scheduled");
        self.send(flight);
    }

    /// Class C device `id` has a command queued: send it now, on the RX2
    /// it listens on (`listens`: what it acknowledged; `None`: its
    /// configured windows), through the gateway that heard its latest
    /// uplink best. Nothing happens while one of its transmissions waits for
    /// a gateway's answer (the answer sends the next), or before it was
    /// first heard (a class C device listens only once it has sent).
    pub fn on_queued(
        &mut self,
        id: u32,
        device: &Device,
        store: &CounterStore,
        listens: Option<RxSettings>,
    ) {
        if !self.cfg.enabled || device.class != DeviceClass::C {
            return;
        }
        if self.in_flight.values().any(|f| f.device == id) || self.unacked.contains_key(&id) {
            return;
        }
        let Some((command, behind)) = self.queue.front(&device.name) else {
            return;
        };
        let name = &device.name;
        let (Some(crypto), Some(dev_addr)) = (device.crypto.as_ref(), device.dev_addr) else {
            return;
        };
        let Some(&(rx, source)) = self.heard.get(&id) else {
            tracing::debug!(device = %name, "class C command waits for the device's first uplink (no gateway heard it yet)");
            return;
        };
        let region = self.regions.get(device.region);
        let settings =
            listens.unwrap_or_else(|| device.rx_windows.over(self.cfg.rx_defaults(region)));
        let window = Window {
            delay: std::time::Duration::ZERO,
            ..settings.rx2()
        };
        let version = MacVersionName::default();
        if command.payload.len() > window_limit(region, version, &window) {
            self.fail(
                name,
                &format!(
                    "{} bytes do not fit RX2 at {} (class C)",
                    command.payload.len(),
                    window.datr
                ),
            );
            self.refused_seq(name, command.seq);
            return;
        }
        let power_dbm = self
            .cfg
            .tx_power
            .unwrap_or_else(|| region.downlink_power(window.frequency));
        let fcnt = store.down(device.dev_eui);
        let spec = FrameSpec {
            dir: Direction::Down,
            confirmed: command.confirmed,
            dev_addr,
            fcnt,
            adr: false,
            ack: false,
            fpending: behind > 0,
            adr_ack_req: false,
            fopts: &[],
            fport: Some(command.fport),
        };
        let station = rx.station.and_then(|ctx| {
            Some(super::StationTx {
                dev_eui: device.dev_eui,
                xtime: 0,
                rctx: ctx.rctx,
                rx_delay: 0,
                rx1: None,
                rx2: (region.dr_index(window.datr, false)?, window.frequency),
            })
        });
        let req = TxRequest {
            id: self.new_id(),
            gateway: rx.gateway,
            phy: build_frame(crypto, &spec, &command.payload),
            uplink_tmst: rx.tmst.unwrap_or(0),
            window,
            power_dbm,
            station,
            immediately: true,
        };
        tracing::debug!(device = %name, fcnt, command = command.seq, gateway = %rx.gateway, "class C downlink scheduled");
        self.send(InFlight {
            device: id,
            name: name.clone(),
            dev_eui: device.dev_eui,
            fcnt: Some(fcnt),
            seq: Some(command.seq),
            mac: None,
            rx2_left: None,
            req,
            source,
            deadline: Instant::now(),
            confirmed: command.confirmed,
        });
    }

    /// The devices with commands queued.
    pub fn waiting(&self) -> Vec<String> {
        self.queue.waiting()
    }

    /// The queue, to wait on its pushes.
    pub fn queue(&self) -> &Arc<DownlinkQueue> {
        &self.queue
    }

    /// When refused class C commands are due to be tried again.
    pub fn retry_due(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The retry time passed: the caller offers every waiting class C
    /// command again ([`Self::on_queued`]).
    pub fn retried(&mut self) {
        self.retry_at = None;
    }

    /// Send JoinAccept `phy` to device `id`, answering a JoinRequest heard
    /// as `rx` through `source`: in the region's join windows (RX1 at
    /// JOIN_ACCEPT_DELAY1 on the uplink's channel, RX2 a second later),
    /// through the gateway that heard it best.
    pub fn on_join(&mut self, id: u32, device: &Device, phy: Vec<u8>, rx: &RxMeta, source: Source) {
        let name = &device.name;
        let Some(tmst) = rx.tmst else {
            self.fail(
                name,
                "the JoinRequest carried no concentrator timestamp to time the JoinAccept from",
            );
            return;
        };
        let region = self.regions.get(device.region);
        // A joining device listens with its region's defaults.
        let defaults = region.rx_defaults();
        let heard = rx.frequency.zip(rx.datr);
        let plan = match plan(
            region,
            device.mac_version,
            &defaults,
            Timing::JoinAccept,
            heard,
            0,
        ) {
            Ok(p) => p,
            Err(e) => {
                self.fail(name, &e.to_string());
                return;
            }
        };
        let power_dbm = self
            .cfg
            .tx_power
            .unwrap_or_else(|| region.downlink_power(plan.first.frequency));
        let (d1, d2) = region.join_accept_delays();
        let rx2 = Window {
            delay: d2,
            frequency: defaults.rx2_frequency,
            datr: defaults.rx2_datr,
        };
        let station = station_tx(region, device.dev_eui, rx, &plan, &rx2, d1);
        let req = TxRequest {
            id: self.new_id(),
            gateway: rx.gateway,
            phy,
            uplink_tmst: tmst,
            window: plan.first,
            power_dbm,
            station,
            immediately: false,
        };
        tracing::debug!(device = %name, gateway = %rx.gateway, "JoinAccept scheduled");
        self.send(InFlight {
            device: id,
            name: name.clone(),
            dev_eui: device.dev_eui,
            fcnt: None,
            seq: None,
            mac: None,
            rx2_left: plan.fallback.filter(|_| station.is_none()),
            req,
            source,
            deadline: Instant::now(),
            confirmed: false,
        });
    }

    /// The region of a device naming `name` (`None`: the site's).
    pub fn region_of(&mut self, name: Option<RegionName>) -> &Region {
        self.regions.get(name)
    }

    fn new_id(&mut self) -> u32 {
        // Never 0: ChirpStack treats a zero downlink_id as unset.
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// Hand `f` to its gateway's transmitter and wait for the answer.
    fn send(&mut self, mut f: InFlight) {
        let sender = match f.source {
            Source::Udp => self.tx.udp.as_ref(),
            Source::GatewayMqtt => self.tx.mqtt.as_ref(),
            Source::BasicStation => self.tx.station.as_ref(),
            Source::ApplicationMqtt => None,
        };
        let Some(sender) = sender else {
            self.fail(
                &f.name,
                "no transmitter for the gateway the uplink came through",
            );
            if f.req.immediately {
                self.refused(&f);
            }
            return;
        };
        match sender.try_send(f.req.clone()) {
            Ok(()) => {
                self.metrics.downlinks_sent.fetch_add(1, Relaxed);
                f.deadline = Instant::now() + self.cfg.ack_timeout;
                self.in_flight.insert(f.req.id, f);
            }
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.fail(&f.name, "the gateway transmitter is not keeping up");
                if f.req.immediately {
                    self.refused(&f);
                }
            }
        }
    }

    fn fail(&self, device: &str, why: &str) {
        self.metrics.downlinks_failed.fetch_add(1, Relaxed);
        tracing::warn!(device, "downlink not sent: {why}");
    }

    /// A gateway answered transmission `ack.id`. If it sent MAC
    /// commands, they are returned: the device's requests now wait for
    /// answers.
    pub fn on_ack(
        &mut self,
        ack: TxAck,
        store: &mut CounterStore,
    ) -> Result<Option<MacSent>, CounterStoreError> {
        if self.forwarded_ack(&ack).is_some() {
            return Ok(None);
        }
        let Some(f) = self.in_flight.remove(&ack.id) else {
            tracing::debug!(
                id = ack.id,
                "acknowledgement of no pending downlink (late or foreign)"
            );
            return Ok(None);
        };
        let mut sent = None;
        match ack.result {
            Ok(()) => {
                self.metrics.downlinks_acked.fetch_add(1, Relaxed);
                if let Some(fcnt) = f.fcnt {
                    store.record_down(f.dev_eui, fcnt)?;
                }
                tracing::info!(device = %f.name, fcnt = f.fcnt, command = ?f.seq, window = %f.req.window.datr, "downlink sent by gateway {}", f.req.gateway);
                match f.seq {
                    // Confirmed: done only when the device acknowledges it.
                    Some(seq) if f.confirmed => {
                        let deadline = f
                            .req
                            .immediately
                            .then(|| Instant::now() + self.cfg.confirm_timeout);
                        self.unacked.insert(
                            f.device,
                            Unacked {
                                seq,
                                name: f.name.clone(),
                                deadline,
                            },
                        );
                    }
                    Some(seq) => {
                        if let Err(e) = self.queue.done(&f.name, seq) {
                            tracing::error!(device = %f.name, error = %e, "sent command still queued");
                        }
                    }
                    None => {}
                }
                sent = f.mac.map(|(commands, fcnt)| MacSent {
                    device: f.device,
                    commands,
                    fcnt,
                });
            }
            Err(reason) if f.rx2_left.is_some() => {
                self.metrics.downlinks_failed.fetch_add(1, Relaxed);
                tracing::info!(device = %f.name, %reason, "RX1 refused by the gateway; trying RX2");
                let req = TxRequest {
                    id: self.new_id(),
                    window: f.rx2_left.expect("guarded"),
                    ..f.req.clone()
                };
                self.send(InFlight {
                    req,
                    rx2_left: None,
                    ..f
                });
            }
            Err(reason) => {
                self.fail(&f.name, &format!("the gateway refused it ({reason})"));
                self.refused(&f);
            }
        }
        Ok(sent)
    }

    /// A refused command stays queued for the next uplink, until it has
    /// used up its attempts.
    fn refused(&mut self, f: &InFlight) {
        if let Some(seq) = f.seq {
            self.refused_seq(&f.name, seq);
            // A class C command waits for no uplink: it is tried again soon.
            if f.req.immediately {
                self.retry_at.get_or_insert(Instant::now() + CLASS_C_RETRY);
            }
        }
    }

    fn refused_seq(&self, name: &str, seq: u64) {
        match self.queue.refused(name, seq, self.cfg.max_attempts) {
            Ok(Some(c)) => {
                self.metrics.downlinks_dropped.fetch_add(1, Relaxed);
                tracing::error!(device = %name, command = c.seq, attempts = c.attempts, "downlink command dropped: every attempt was refused");
            }
            Ok(None) => {}
            Err(e) => tracing::error!(device = %name, error = %e, "downlink queue not updated"),
        }
    }

    /// When the oldest unanswered transmission times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        let unacked = self.unacked.values().filter_map(|u| u.deadline);
        self.in_flight
            .values()
            .map(|f| f.deadline)
            .chain(unacked)
            .min()
    }

    /// Give up on transmissions no gateway answered by `now`.
    pub fn expire(
        &mut self,
        now: Instant,
        store: &mut CounterStore,
    ) -> Result<(), CounterStoreError> {
        let late: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        // Class C devices that did not acknowledge a confirmed command in
        // time: it counts as an attempt and goes again.
        let silent: Vec<u32> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            let u = self.unacked.remove(&id).expect("listed");
            tracing::info!(device = %u.name, command = u.seq, "no acknowledgement of the confirmed downlink in time: sending it again");
            self.refused_seq(&u.name, u.seq);
            self.retry_at.get_or_insert(now);
        }
        for id in late {
            let f = self.in_flight.remove(&id).expect("listed");
            // It may have gone out: never reuse its counter.
            if let Some(fcnt) = f.fcnt {
                store.record_down(f.dev_eui, fcnt)?;
            }
            self.fail(
                &f.name,
                &format!("gateway {} did not acknowledge it", f.req.gateway),
            );
            self.refused(&f);
        }
        Ok(())
    }

    /// Transmissions waiting for an answer.
    pub fn pending(&self) -> usize {
        self.in_flight.len()
    }
}
