//! The uplink pipeline: one task that owns all per-device state (counters,
//! de-duplication, resets waiting for confirmation, joins, MAC states,
//! handed-over devices on standby), so the per-frame path takes no locks.
//! Each input goes through named steps: dedup by bytes ([`dedup`]), decode
//! ([`uplink`]), judge resets, hold for the dedup window (held), publish to
//! the [`sink`] (the outbox first), then persist and acknowledge.
//!
//! Its parts, each a module: the join server (join, with join_state), the
//! MAC layer (mac, with mac_layer), devices added and removed at run time
//! (provisioned), the last readings the API answers GETs from
//! ([`device_state`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::codec::Reading;
use crate::config::Config;
use crate::devices::Registry;
use crate::downlink::scheduler::Scheduler;
use crate::edgex::delivered::later;
use crate::ingest::{ack_all, application::AppUplink, Ack, IngestEvent};
use crate::lorawan::fcnt::{judge_unordered, Verdict};
use crate::lorawan::{parse_uplink, Eui64, FcntState, Late};
use crate::metrics::{Metrics, Reason, Source};
use crate::pipeline::dedup::{Dedup, FrameKey};
use crate::pipeline::device_state::DeviceStates;
use crate::pipeline::sink::Sink;
use crate::pipeline::uplink::{decode_parsed, RxMeta, Uplink};
use crate::store::counters::CounterStore;

use crate::control::mailbox::Control;
use crate::store::joins::JoinStore;
use held::{Held, Tentative, MAX_HELD};
use join_state::{is_join_request, restore_joined_sessions, PendingJoin};
pub use mac_layer::{MacLayer, MacStore};

mod control;
pub mod dedup;
pub mod device_state;
mod held;
mod join;
mod join_state;
mod mac;
mod mac_layer;
mod parked;
mod provisioned;
pub mod sink;
pub mod uplink;

/// The durable state the pipeline owns from its start.
pub struct Stores {
    pub counters: CounterStore,
    pub joins: JoinStore,
    pub mac: MacLayer,
}

/// What the pipeline needs besides the config: the devices, and where
/// uplinks go.
pub struct Parts {
    pub registry: Registry,
    pub sink: Box<dyn Sink>,
    pub metrics: Arc<Metrics>,
}

pub struct Pipeline {
    config: Arc<Config>,
    registry: Registry,
    /// Counter states as judged so far (ahead of what is persisted by the
    /// uplinks still held).
    states: Vec<FcntState>,
    /// Counter resets waiting for the device's next frame to confirm them.
    tentative: HashMap<u32, Tentative>,
    store: CounterStore,
    dedup: Dedup<Held>,
    sink: Box<dyn Sink>,
    metrics: Arc<Metrics>,
    readings: Vec<Reading>,
    /// Last values for the API's GET commands.
    devices: Arc<DeviceStates>,
    /// `None` once the API has gone.
    control: Option<mpsc::UnboundedReceiver<Control>>,
    /// Class A downlinks, sent after published uplinks.
    scheduler: Scheduler,
    /// Devices another edge publishes: their uplinks are held here, oldest
    /// first, at most `Handover.BufferFrames` each.
    standby: HashMap<u32, std::collections::VecDeque<Held>>,
    /// The last uplink of a device the other edge delivered while it held
    /// the device: uplinks up to it are settled (counter saved, message
    /// acknowledged) but not published again. Cleared by the first later one.
    covered: HashMap<u32, FcntState>,
    /// OTAA join state (durable).
    joins: JoinStore,
    /// Devices whose JoinRequests another runner answers (a container
    /// taking them over).
    no_joins: std::collections::HashSet<u32>,
    /// Devices handed over by another edge's contract (not this edge's
    /// own): served by the API and commands only while this edge publishes
    /// them.
    adopted: std::collections::HashSet<u32>,
    /// JoinAccepts waiting for the de-duplication window.
    joining: Dedup<PendingJoin>,
    /// Each device's MAC state (durable).
    mac: MacLayer,
    /// Frames under a DevAddr not known yet while an OTAA device is on
    /// standby: its holder may have joined it (see [`parked`]).
    parked: parked::Parked,
    /// While parked frames are decoded again: when the one in hand was
    /// first parked (it keeps its age if parked again).
    replaying: Option<Instant>,
    /// Where frames of devices this edge does not serve are remembered
    /// (a provider on a market proves its coverage with them).
    pub heard_elsewhere: Option<Arc<std::sync::Mutex<crate::market::coverage::HeardElsewhere>>>,
    /// Where unknown DevEUIs' JoinRequests are remembered.
    pub discovery: Option<Arc<crate::edgex::discovery::DiscoveryService>>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Pipeline {
    pub fn new(
        config: Arc<Config>,
        parts: Parts,
        stores: Stores,
        devices: Arc<DeviceStates>,
        control: mpsc::UnboundedReceiver<Control>,
        scheduler: Scheduler,
    ) -> Self {
        let mut parts = parts;
        let Stores {
            counters: mut store,
            joins,
            mac,
        } = stores;
        restore_joined_sessions(&mut parts.registry, &joins, &devices);
        // A joined session's frames are counted in its epoch: counters
        // written from an older one (a container's, from what EdgeX had
        // confirmed when it started) must not count it in another.
        for (eui, state) in joins.iter() {
            if let Some(epoch) = state.active.and_then(|s| s.epoch) {
                if epoch > store.get(*eui).epoch {
                    if let Err(e) = store.start_session(*eui, epoch) {
                        tracing::error!(dev_eui = %eui, error = %e, "cannot move the counters to the joined session's epoch");
                    }
                }
            }
        }
        let states = parts
            .registry
            .iter()
            .map(|d| store.get(d.dev_eui))
            .collect();
        Self {
            // A JoinAccept must reach its gateway before RX1 (5 s): the
            // wait for other gateways' copies is capped well below that.
            joining: Dedup::new(
                config
                    .ingest
                    .dedup_window
                    .min(std::time::Duration::from_millis(500)),
            ),
            joins,
            mac,
            no_joins: Default::default(),
            adopted: Default::default(),
            dedup: Dedup::new(config.ingest.dedup_window),
            config,
            registry: parts.registry,
            states,
            tentative: HashMap::new(),
            store,
            sink: parts.sink,
            metrics: parts.metrics,
            readings: Vec::with_capacity(16),
            devices,
            control: Some(control),
            scheduler,
            standby: HashMap::new(),
            covered: HashMap::new(),
            parked: Default::default(),
            replaying: None,
            heard_elsewhere: None,
            discovery: None,
        }
    }

    /// Hold `eui`'s uplinks while another edge publishes them (its
    /// devices are handed over at start).
    pub fn stand_by(&mut self, eui: Eui64) {
        if let Some(id) = self.registry.by_eui(eui) {
            self.standby.entry(id).or_default();
        }
    }

    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<IngestEvent>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut sync = tokio::time::interval(self.config.service.sync_interval);
        let queue = self.scheduler.queue().clone();
        loop {
            let deadline = [
                self.dedup.next_deadline(),
                self.joining.next_deadline(),
                self.scheduler.next_deadline(),
                self.scheduler.retry_due(),
                self.parked.next_deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                // Decoding outruns publishing (journal, counters): past
                // MAX_HELD frames in the window, take no more until some
                // are published, so a backlog never sits in memory whole.
                ev = rx.recv(), if self.dedup.len() < MAX_HELD => match ev {
                    Some(ev) => {
                        self.handle(ev)?;
                        // Under a flood the timer branch may not win for a
                        // while (the queue is always ready): what is due
                        // goes out from here too.
                        let now = Instant::now();
                        if deadline.is_some_and(|d| d <= now) {
                            self.on_time(now)?;
                        }
                    }
                    None => break,
                },
                _ = async { tokio::time::sleep_until(deadline.expect("guarded").into()).await }, if deadline.is_some() => {
                    self.on_time(Instant::now())?;
                }
                _ = queue.pushed() => self.class_c(),
                c = async { match &mut self.control { Some(c) => c.recv().await, None => std::future::pending().await } } => match c {
                    Some(c) => self.apply(c)?,
                    None => self.control = None,
                },
                _ = sync.tick() => {
                    self.store.sync()?;
                    self.joins.sync()?;
                    self.mac.sync()?;
                    self.sink.flush()?;
                }
                _ = &mut shutdown => break,
            }
        }
        // Nothing decoded is dropped at shutdown: publish what is pending.
        // (Pending resets are not: unconfirmed, and unacknowledged, they
        // come back from the broker or the device.)
        let mut pending = Vec::new();
        self.dedup.drain(|h| pending.push(h));
        for h in pending {
            self.publish(h)?;
        }
        self.sink.flush()?;
        self.store.sync()?;
        self.joins.sync()?;
        self.mac.sync()?;
        Ok(())
    }

    /// Everything due by `now`: held uplinks, joins, unanswered and retried
    /// downlinks.
    fn on_time(&mut self, now: Instant) -> anyhow::Result<()> {
        self.emit_due(now)?;
        self.emit_joins(now);
        for f in self.parked.expired(now) {
            self.refuse_parked(f);
        }
        self.scheduler.expire(now, &mut self.store)?;
        if self.scheduler.retry_due().is_some_and(|t| t <= now) {
            self.scheduler.retried();
            self.class_c();
        }
        Ok(())
    }

    fn handle(&mut self, ev: IngestEvent) -> anyhow::Result<()> {
        match ev {
            IngestEvent::Phy {
                phy,
                rx,
                source,
                ack,
            } => self.handle_phy(&phy, rx, source, ack),
            IngestEvent::App(up, ack) => self.handle_app(up, ack),
            IngestEvent::TxAck(a) => self.tx_ack(a),
        }
    }

    /// A gateway's frame that does not parse (data or join).
    fn refuse_bad_frame(&self, rx: &RxMeta, e: &dyn std::fmt::Display, ack: Option<Ack>) {
        self.refuse(
            Reason::BadFrame,
            &format_args!("gateway {}: {e}", rx.gateway),
            ack,
        );
    }

    /// Count and log a refused input, and release its message: refusals are final.
    fn refuse(&self, reason: Reason, detail: &dyn std::fmt::Display, ack: Option<Ack>) {
        self.metrics.reject(reason, detail);
        ack_all(ack);
    }

    /// The uplink path: dedup by bytes → decode → judge resets → hold for
    /// the dedup window.
    fn handle_phy(
        &mut self,
        phy: &[u8],
        rx: RxMeta,
        source: Source,
        ack: Option<Ack>,
    ) -> anyhow::Result<()> {
        if is_join_request(phy) {
            return self.handle_join(phy, rx, source, ack);
        }
        let key = self.dedup.key_of_bytes(phy);
        let pending = match self.dedup.get_mut(key) {
            Some(h) => Some(h),
            None => self
                .tentative
                .values_mut()
                .find(|t| t.key == key)
                .map(|t| &mut t.held),
        };
        if let Some(h) = pending {
            h.add_copy(&rx, ack);
            self.metrics.duplicates.fetch_add(1, Relaxed);
            return Ok(());
        }
        let frame = match parse_uplink(phy) {
            Ok(f) => f,
            Err(e) => {
                self.refuse_bad_frame(&rx, &e, ack);
                return Ok(());
            }
        };
        let window = self.config.devices.reset_window;
        let addr = frame.dev_addr;
        // Once per frame: the codec's recvTime and the event's origin.
        let received_ns = crate::pipeline::uplink::reception_ns(rx.time_ns, now_ns());
        let mut decoded = match decode_parsed(
            &self.registry,
            &self.states,
            window,
            frame,
            received_ns as f64 / 1e6,
            &mut self.readings,
        ) {
            Ok(d) => d,
            Err((crate::pipeline::uplink::Rejection::UnknownDevAddr(a), None)) if self.parks(a) => {
                // Acknowledged now, as a refusal would be: held
                // unacknowledged, frames waiting here could stall a
                // broker's in-flight window.
                ack_all(ack);
                let at = self.replaying.unwrap_or_else(Instant::now);
                let frame = parked::ParkedFrame {
                    phy: phy.to_vec(),
                    rx,
                    source,
                    ack: None,
                    at,
                };
                if let Some(out) = self.parked.park(frame) {
                    self.refuse_parked(out);
                }
                return Ok(());
            }
            Err((rejection, spent)) => {
                // An authentic frame under a joined session is the device
                // using that session, whatever its payload.
                if let Some((id, next)) = spent.filter(|(id, _)| {
                    self.registry
                        .get(*id)
                        .pending
                        .as_ref()
                        .is_some_and(|p| p.0 == addr)
                }) {
                    self.activate(id, next.epoch)?;
                }
                // An authentic frame whose payload did not decode still spends
                // its counter (unless it would reset it: that needs confirming).
                if let Some((id, next)) =
                    spent.filter(|(id, n)| n.epoch == self.states[*id as usize].epoch)
                {
                    self.states[id as usize] = next;
                    self.persist(id, next, Late(0))?;
                }
                if let crate::pipeline::uplink::Rejection::UnknownDevAddr(a) = &rejection {
                    self.heard_elsewhere(a.0, phy, &rx);
                }
                self.refuse(
                    rejection.reason(),
                    &format_args!("gateway {}: {rejection}", rx.gateway),
                    ack,
                );
                return Ok(());
            }
        };
        let id = decoded.device;
        if decoded.activates {
            self.activate(id, decoded.next.epoch)?;
        }
        self.metrics
            .unmapped_values
            .fetch_add(u64::from(decoded.unmapped), Relaxed);
        self.metrics
            .codec_warnings
            .fetch_add(u64::from(decoded.warnings), Relaxed);
        tracing::debug!(device = %self.registry.get(id).name, fcnt = decoded.fcnt, gateway = %rx.gateway, "uplink accepted");
        let uplink = Uplink {
            counter_reset: decoded.counter_reset,
            fport: decoded.fport,
            confirmed: decoded.confirmed,
            mac_commands: std::mem::take(&mut decoded.mac_commands),
            adr: decoded.adr,
            adr_ack_req: decoded.adr_ack_req,
            ack: decoded.ack,
            ..self.new_uplink(id, decoded.fcnt, decoded.next, rx, source, received_ns)
        };
        let held = Held::new(uplink, id, decoded.next, ack);
        if decoded.counter_reset {
            return self.judge_reset(key, decoded.fcnt, held);
        }
        if let Some(t) = self.tentative.remove(&id) {
            let name = &self.registry.get(id).name;
            let why = format_args!(
                "device {name}: frame {} was a replay, not a reset: the device went on at {}",
                t.fcnt, decoded.fcnt
            );
            self.refuse(Reason::Replay, &why, None);
            ack_all(t.held.acks);
        }
        self.states[id as usize] = decoded.next;
        self.hold(key, held)
    }

    /// A frame that resets its device's counter: hold it, or confirm the
    /// one held before (see [`Tentative`]).
    fn judge_reset(&mut self, key: FrameKey, fcnt: u32, mut held: Held) -> anyhow::Result<()> {
        let id = held.device;
        let name = self.registry.get(id).name.clone();
        match self.tentative.remove(&id) {
            Some(t) if fcnt > t.fcnt => {
                // Confirmed: the device rebooted. Publish both, in order, in the new epoch.
                self.metrics.counter_resets.fetch_add(1, Relaxed);
                let epoch = t.held.persist.epoch;
                tracing::warn!(device = %name, fcnt = t.fcnt, epoch, "device reset its frame counter (rebooted)");
                self.states[id as usize] = t.held.persist;
                self.publish(t.held)?;
                let next = FcntState {
                    last: Some(fcnt),
                    epoch,
                };
                held.persist = next;
                held.uplink.epoch = epoch;
                held.uplink.counter_reset = false;
                self.states[id as usize] = next;
                self.hold(key, held)?;
            }
            Some(t) if fcnt == t.fcnt => {
                self.tentative.insert(id, t);
                let why =
                    format_args!("device {name}: frame {fcnt} again while its reset is pending");
                self.refuse(Reason::Retransmission, &why, None);
                ack_all(held.acks);
            }
            earlier => {
                if let Some(t) = earlier {
                    let why = format_args!(
                        "device {name}: pending reset at frame {} superseded by frame {fcnt}",
                        t.fcnt
                    );
                    self.refuse(Reason::Replay, &why, None);
                    ack_all(t.held.acks);
                }
                tracing::info!(device = %name, fcnt, "frame counter went back: reset pending until the next frame");
                self.tentative.insert(id, Tentative { key, fcnt, held });
            }
        }
        Ok(())
    }

    /// A new uplink of device `id`, taking the readings just decoded. The
    /// frame-specific fields are the caller's to fill in.
    fn new_uplink(
        &mut self,
        id: u32,
        fcnt: u32,
        next: FcntState,
        rx: RxMeta,
        source: Source,
        received_ns: i64,
    ) -> Uplink {
        self.metrics.decoded.fetch_add(1, Relaxed);
        crate::metrics::Latency::since(&self.metrics.latency.decode, received_ns);
        let device = self.registry.get(id);
        Uplink {
            device: device.name.clone(),
            dev_eui: device.dev_eui,
            profile: device.codec.profile().clone(),
            fcnt,
            epoch: next.epoch,
            counter_reset: false,
            fport: None,
            confirmed: false,
            readings: std::mem::replace(&mut self.readings, Vec::with_capacity(16)),
            mac_commands: Vec::new(),
            adr: false,
            adr_ack_req: false,
            ack: false,
            received_ns,
            rx,
            gateways: 1,
            source,
        }
    }

    /// An uplink a network server already verified: check the counter
    /// against redelivery, decode the payload.
    fn handle_app(&mut self, up: AppUplink, ack: Option<Ack>) -> anyhow::Result<()> {
        let Some(id) = self.registry.by_eui(up.dev_eui) else {
            self.refuse(
                Reason::UnknownDevEui,
                &format_args!("DevEUI {}", up.dev_eui),
                ack,
            );
            return Ok(());
        };
        let device = self.registry.get(id);
        if let Some(route) = &up.route {
            self.scheduler.route(id, route);
        }
        let state = self.states[id as usize];
        // The network server owns the counter; a frame it delivered before
        // is a redelivery, unless it is a reset the device's policy accepts.
        // It may deliver a device's frames out of order (ChirpStack under a
        // burst): a late frame not yet delivered is new.
        let (verdict, late) = judge_unordered(
            &state,
            self.store.late(device.dev_eui),
            device.fcnt_policy,
            up.fcnt,
            self.config.devices.reset_window,
        );
        let next = match verdict {
            Verdict::Fresh { next, .. } => next,
            Verdict::Retransmission { fcnt } => {
                let why = format_args!("device {}: frame {fcnt} again", device.name);
                self.refuse(Reason::Retransmission, &why, ack);
                return Ok(());
            }
            Verdict::Replay { fcnt, last } => {
                let why = format_args!("device {}: frame {fcnt} after {last}", device.name);
                self.refuse(Reason::Replay, &why, ack);
                return Ok(());
            }
        };
        let received_ns = crate::pipeline::uplink::reception_ns(up.rx.time_ns, now_ns());
        let decoded = match up.fport {
            Some(p) if p > 0 => device
                .codec
                .decode(
                    &up.data,
                    up.fport.unwrap_or(1),
                    &device.variables,
                    received_ns as f64 / 1e6,
                    &mut self.readings,
                )
                .map(|_| ()),
            _ => {
                self.readings.clear();
                Ok(())
            }
        };
        let name = device.name.clone();
        self.states[id as usize] = next;
        if let Err(e) = decoded {
            self.persist(id, next, late)?;
            self.refuse(
                Reason::Codec,
                &format_args!("device {name} frame {}: {e}", up.fcnt),
                ack,
            );
            return Ok(());
        }
        let uplink = Uplink {
            counter_reset: next.epoch != state.epoch,
            fport: up.fport,
            confirmed: up.confirmed,
            gateways: up.gateways.max(1),
            ..self.new_uplink(
                id,
                up.fcnt,
                next,
                up.rx,
                Source::ApplicationMqtt,
                received_ns,
            )
        };
        // The network server de-duplicated it already: no window to wait in
        // (a redelivered copy is refused above by its counter).
        let mut held = Held::new(uplink, id, next, ack);
        held.late = late;
        self.publish(held)
    }

    /// Save a device's counter state and, for an unordered stream, the late
    /// counters it delivered (`Late(0)` for a gateway stream), unless a
    /// later state is already saved: a late frame leaves the counter where
    /// it is and changes only the window.
    fn persist(&mut self, id: u32, next: FcntState, late: Late) -> anyhow::Result<()> {
        let eui = self.registry.get(id).dev_eui;
        let saved = self.store.get(eui);
        let was = (saved.epoch, saved.last);
        if (next.epoch, next.last) > was
            || ((next.epoch, next.last) == was && late != self.store.late(eui))
        {
            self.store.record_unordered(eui, next, late)?;
        }
        Ok(())
    }

    fn hold(&mut self, key: FrameKey, held: Held) -> anyhow::Result<()> {
        if self.config.ingest.dedup_window.is_zero() {
            self.publish(held)
        } else {
            self.dedup.insert(key, held, Instant::now());
            Ok(())
        }
    }

    fn emit_due(&mut self, now: Instant) -> anyhow::Result<()> {
        let mut due = Vec::new();
        self.dedup.due(now, |h| due.push(h));
        for h in due {
            self.publish(h)?;
        }
        Ok(())
    }

    /// Keep an uplink of a device the other edge publishes. Its counter is
    /// saved and its messages acknowledged as if published: the other edge
    /// answers for it, and replays stay refused here.
    fn hold_back(&mut self, mut h: Held) -> anyhow::Result<()> {
        self.persist(h.device, h.persist, h.late)?;
        ack_all(std::mem::take(&mut h.acks));
        let held = self.standby.entry(h.device).or_default();
        if held.len() >= self.config.handover.buffer_frames {
            held.pop_front();
            self.metrics.handover_buffer_dropped.fetch_add(1, Relaxed);
        }
        self.metrics.handover_buffered.fetch_add(1, Relaxed);
        held.push_back(h);
        Ok(())
    }

    /// Hand an uplink to the sinks; once they have it, save its counter and
    /// acknowledge its messages. If a sink refuses (outbox full), neither
    /// happens: the loss is counted and logged, and a restart would take
    /// the broker's redelivery.
    fn publish(&mut self, mut h: Held) -> anyhow::Result<()> {
        if !self.standby.is_empty() && self.standby.contains_key(&h.device) {
            return self.hold_back(h);
        }
        if let Some(mark) = self.covered.get(&h.device).copied() {
            if !later(h.uplink.counter(), mark) {
                self.metrics.handover_covered.fetch_add(1, Relaxed);
                self.persist(h.device, h.persist, h.late)?;
                ack_all(h.acks);
                return Ok(());
            }
            self.covered.remove(&h.device);
        }
        // The MAC layer first: a DevStatusAns adds readings to this event.
        let mac = self.mac_step(h.device, &mut h.uplink)?;
        match self.sink.publish(&h.uplink) {
            Ok(()) => {
                self.devices.record(h.device, &h.uplink);
                self.metrics.published.fetch_add(1, Relaxed);
                self.persist(h.device, h.persist, h.late)?;
                ack_all(h.acks);
                let device = self.registry.get(h.device);
                let listens = self
                    .mac
                    .rx_of(h.device, self.scheduler.region_of(device.region));
                self.scheduler
                    .on_uplink(h.device, device, &h.uplink, &self.store, &mac, listens);
            }
            Err(e) => {
                let up = &h.uplink;
                tracing::error!(device = %up.device, fcnt = up.fcnt, error = %e, "sink refused an uplink");
            }
        }
        Ok(())
    }
}
