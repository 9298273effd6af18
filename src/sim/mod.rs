//! `device-lorawan simulate`: LMIC-like ABP motes heard by one or more
//! gateways, sent as a Semtech UDP packet forwarder or as a gateway bridge
//! on MQTT (protobuf or JSON), with fault injection. It reports exactly
//! which frames the service should publish, so tests can count.
//!
//! The gateways also take downlinks (PULL_RESP answered by TX_ACK, or
//! `command/down` answered on `event/ack`); the motes apply them as the
//! firmware does, and the report lists what each mote received.

mod air;
mod gateways;
pub mod station_gw;
use gateways::Transport;
pub mod lmic_mac;
pub mod mote;
use air::{deliver, SentUplink};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::lorawan::region::{Region, RegionSettings};

use crate::ingest::bridge::{GatewayUplink, WireFormat};
use crate::lorawan::Eui64;
use crate::pipeline::uplink::RxMeta;
use mote::{Mote, Sample};

/// Where simulated gateways send.
#[derive(Debug, Clone)]
pub enum Target {
    Udp(SocketAddr),
    /// Basics Station gateways: the service's `ws://host:port`.
    Station(String),
    Mqtt {
        host: String,
        port: u16,
        format: WireFormat,
        prefix: String,
    },
}

/// Probabilities (0..=1) of each fault per frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// The frame's MIC is corrupted (the counter is still spent).
    pub bad_mic: f64,
    /// A frame sent earlier by the same mote is sent again.
    pub replay: f64,
    /// A gateway sends bytes that are not a LoRaWAN frame.
    pub garbage: f64,
    /// One gateway forwards the same reception twice.
    pub duplicate: f64,
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub devices: usize,
    pub gateways: usize,
    /// Distinct frames per second, all motes together.
    pub rate: f64,
    /// Stop after this many distinct frames...
    pub frames: Option<u64>,
    /// ...or after this long, whichever comes first.
    pub duration: Option<Duration>,
    pub seed: u64,
    pub faults: Faults,
    /// A mote reboots (counter back to 0) after this many frames.
    pub reboot_every: Option<u32>,
    /// Counter of each mote's first frame (to continue an earlier run).
    pub start_fcnt: u32,
    /// Every uplink is a confirmed one.
    pub confirmed: bool,
    /// Gateways refuse RX1 transmissions (TOO_LATE), so only RX2 gets through.
    pub refuse_rx1: bool,
    /// After the last uplink, keep taking downlinks this long.
    pub linger: Duration,
    /// Where every mote listens after an uplink (its firmware's settings;
    /// unset ones are its region's defaults). Written into `--write-devices`.
    pub rx_windows: crate::devices::RxWindows,
    /// The motes' band plan: the channels and data rates they send on, and
    /// the windows they listen in.
    pub region: crate::lorawan::region::RegionName,
    /// OTAA motes besides the `devices` ABP ones (`mote::otaa_entries`):
    /// each joins first, and again after a reboot.
    pub otaa_devices: usize,
    /// The LoRaWAN version of the OTAA motes.
    pub mac_version: crate::lorawan::region::MacVersionName,
    /// Each OTAA mote misses this many JoinAccepts before it hears one (as
    /// if out of range): it asks again with a new DevNonce.
    pub lost_join_accepts: u32,
    /// An OTAA mote reboots, and so joins again, after this many frames of
    /// a session (ABP motes follow `reboot_every`).
    pub otaa_rejoin_every: Option<u32>,
    /// The ABP motes are class C: they take downlinks sent at any time on
    /// their RX2 (their entries must say `class: C` to the service).
    pub class_c: bool,
    /// The motes run ADR as LMIC does (ADR bit, ADRACKReq, stepping down,
    /// LinkADRReq taken), each at its own data rate, and a gateway hears a
    /// frame only above its rate's demodulation floor.
    pub adr: bool,
    /// The data rate the motes start at (default: the region's fastest
    /// 125 kHz rate, as the project's sketch sets). Given, the motes keep
    /// their own rate and the link model applies even without ADR.
    pub start_dr: Option<u8>,
    /// Each mote's SNR (dB) at the nearest gateway at full power, by mote
    /// index, cycled (empty: 9.5 dB for all); each further gateway hears it
    /// 4 dB lower, each TX power step 2 dB lower.
    pub link_snr: Vec<f32>,
    /// The motes' firmware refuses data rates above this (LinkADRAns NACK).
    pub refuse_dr_above: Option<u8>,
    /// Every k-th frame of a mote asks LinkCheckReq / DeviceTimeReq.
    pub link_check_every: Option<u32>,
    pub device_time_every: Option<u32>,
    /// Gateways report their GPS time of each uplink (`tmms`, `timeSinceGpsEpoch`).
    pub gateway_time: bool,
    /// A mote sends nothing for this long after an uplink, taking
    /// downlinks meanwhile: its receive windows, compressed (class A: LMIC
    /// never transmits while RX1 or RX2 may still come). Zero: no wait.
    pub class_a_wait: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            devices: 3,
            gateways: 2,
            rate: 5.0,
            frames: None,
            duration: Some(Duration::from_secs(10)),
            seed: 1,
            faults: Faults::default(),
            reboot_every: None,
            start_fcnt: 0,
            confirmed: false,
            refuse_rx1: false,
            rx_windows: Default::default(),
            region: Default::default(),
            otaa_devices: 0,
            mac_version: Default::default(),
            lost_join_accepts: 0,
            otaa_rejoin_every: None,
            class_c: false,
            linger: Duration::ZERO,
            adr: false,
            start_dr: None,
            link_snr: Vec::new(),
            refuse_dr_above: None,
            link_check_every: None,
            device_time_every: None,
            gateway_time: false,
            class_a_wait: Duration::ZERO,
        }
    }
}

/// A frame the service should publish exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub device: String,
    pub fcnt: u32,
    pub epoch: u32,
    pub sample: Sample,
}

#[derive(Debug, Default, Clone)]
pub struct SimReport {
    pub expected: Vec<Expected>,
    pub bad_mic: u64,
    pub replays: u64,
    pub garbage: u64,
    pub duplicates: u64,
    /// Messages or datagrams sent, all gateways together.
    pub copies: u64,
    /// Downlinks the motes accepted, in arrival order.
    pub downlinks: Vec<ReceivedByMote>,
    /// Transmissions the gateways refused (RX1 under `refuse_rx1`).
    pub refused: u64,
    /// Downlinks a mote dropped (MIC, counter, not addressed to any mote).
    pub downlinks_dropped: u64,
    /// Downlinks sent where or when their mote was not listening (not in
    /// its RX1 or RX2 window: another delay, channel or data rate).
    pub downlinks_missed: u64,
    /// JoinRequests sent (each counts once, whatever the gateways).
    pub join_requests: u64,
    /// JoinAccepts the OTAA motes took, in arrival order.
    pub joins: Vec<JoinedByMote>,
    /// JoinAccepts the motes missed on purpose (`lost_join_accepts`).
    pub joins_lost: u64,
    /// Answers to the motes' LinkCheckReq and DeviceTimeReq.
    pub told: Vec<Told>,
    /// Frames no gateway heard (below every gateway's demodulation floor).
    pub lost_on_air: u64,
    /// Time on air of every uplink sent (NbTrans transmissions each).
    pub airtime: Duration,
    /// Each mote's MAC state at the end.
    pub motes: Vec<MoteSummary>,
}

/// An answer the network gave a mote's question.
#[derive(Debug, Clone, PartialEq)]
pub struct Told {
    pub device: String,
    pub what: lmic_mac::Told,
    /// The GPS time (ns) of the uplink whose window carried it.
    pub uplink_gps_ns: u64,
}

/// Where a mote's MAC layer ended up.
#[derive(Debug, Clone, PartialEq)]
pub struct MoteSummary {
    pub device: String,
    pub dr: u8,
    pub tx_power: u8,
    pub nb_trans: u8,
    pub adr_taken: u32,
    pub adr_refused: u32,
    pub steps_down: u32,
    /// Extra channels NewChannelReqs defined, by index, in order.
    pub channels: Vec<u8>,
    pub rx: crate::lorawan::radio::RxSettings,
}

/// A JoinAccept one mote took.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedByMote {
    pub device: String,
    pub dev_addr: crate::lorawan::DevAddr,
    /// Transmit time minus the JoinRequest's, in µs (5 s in RX1, 6 s in RX2).
    pub delay_us: u32,
    pub frequency: u32,
    pub datr: String,
}

/// A downlink one mote accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedByMote {
    pub device: String,
    pub fcnt: u32,
    /// Confirmed data down: the mote acknowledges it in its next uplink.
    pub confirmed: bool,
    pub ack: bool,
    pub fpending: bool,
    pub fport: Option<u8>,
    pub payload: Vec<u8>,
    /// MAC commands in FOpts.
    pub fopts: Vec<u8>,
    /// Transmit time minus the uplink's, in µs (1 s for RX1, 2 s for RX2;
    /// 0 for a class C downlink sent at once).
    pub delay_us: u32,
    pub frequency: u32,
    pub datr: String,
    /// The mote's report interval after applying it.
    pub interval_s: u32,
}

/// A tiny deterministic PRNG (splitmix64), so runs are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let out = mote::splitmix(self.0);
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        out
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// How long an OTAA mote waits for its JoinAccept before it asks again
/// (LMIC waits for both join windows, 5 and 6 s; the simulator's clock is
/// compressed, the service's de-duplication window is not).
const JOIN_PATIENCE: Duration = Duration::from_secs(2);

pub(super) fn gateway_eui(i: usize) -> Eui64 {
    Eui64::from_u64(0xb827_ebff_fe00_0000 + i as u64 + 1)
}

/// Run the simulation against `target` until done or `stop` fires.
pub async fn run(
    target: Target,
    opts: SimOptions,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<SimReport> {
    let region = Region::new(RegionSettings::new(opts.region));
    let channels = region.uplink_channels();
    let mut entries = mote::entries(opts.devices, opts.seed);
    for e in &mut entries {
        e.rx_windows = opts.rx_windows;
        if opts.class_c {
            e.class = crate::devices::DeviceClass::C;
        }
    }
    entries.extend(mote::otaa_entries(
        opts.otaa_devices,
        opts.seed,
        opts.mac_version,
    ));
    let mut motes: Vec<Mote> = entries
        .iter()
        .map(|e| Mote::in_region(e, &region))
        .collect();
    for m in &mut motes {
        m.fcnt = opts.start_fcnt;
        m.confirmed = opts.confirmed;
        m.mac = lmic_mac::MoteMac::new(opts.adr, opts.start_dr.unwrap_or(region.max_adr_dr()));
        m.mac.refuse_dr_above = opts.refuse_dr_above;
    }
    // JoinAccepts each mote has yet to miss.
    let mut lost: Vec<u32> = vec![opts.lost_join_accepts; motes.len()];
    let mut history: Vec<Vec<Vec<u8>>> = vec![Vec::new(); motes.len()];
    let mut last_sent: Vec<Option<tokio::time::Instant>> = vec![None; motes.len()];
    // Each mote's recent uplinks, to check a downlink's window.
    let mut uplinks_sent: Vec<Vec<SentUplink>> = vec![Vec::new(); motes.len()];
    let (down_tx, mut down_rx) = mpsc::channel(256);
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut transport = Transport::connect(
        &target,
        opts.gateways.max(1),
        down_tx,
        &opts,
        refused.clone(),
    )
    .await?;
    let mut rng = Rng(opts.seed ^ 0x5eed);
    let mut report = SimReport::default();
    let period = Duration::from_secs_f64(1.0 / opts.rate.max(0.001));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    tokio::pin!(stop);
    let mut n: u64 = 0;
    loop {
        if opts.frames.is_some_and(|f| n >= f)
            || deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
        {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {}
            Some(t) = down_rx.recv() => {
                deliver(&mut motes, &region, &uplinks_sent, t, &mut report, &mut lost);
                continue;
            }
            _ = &mut stop => break,
        }
        let m = (n % motes.len() as u64) as usize;
        n += 1;
        if let Some(ready) = last_sent[m].map(|t| t + opts.class_a_wait) {
            while tokio::time::Instant::now() < ready {
                tokio::select! {
                    Some(t) = down_rx.recv() => deliver(&mut motes, &region, &uplinks_sent, t, &mut report, &mut lost),
                    _ = tokio::time::sleep_until(ready) => break,
                }
            }
        }
        last_sent[m] = Some(tokio::time::Instant::now());
        let mote = &mut motes[m];
        let (k, otaa) = match mote.otaa.is_some() {
            true => (opts.otaa_rejoin_every, true),
            false => (opts.reboot_every, false),
        };
        if k.is_some_and(|k| mote.fcnt >= k) && !(otaa && mote.joining()) {
            mote.reboot();
            // Replays are drawn from this boot only: a replay of an earlier
            // boot's frames is indistinguishable from a reboot under
            // reset-tolerant (see README, "Frame counters").
            history[m].clear();
        }
        let now = std::time::Instant::now();
        // An OTAA mote joins first; while its JoinAccept may still come (the
        // join windows, compressed here), it sends nothing.
        let joining = mote.must_join(now, JOIN_PATIENCE);
        if !joining && mote.joining() {
            continue;
        }
        let every = |k: Option<u32>| k.is_some_and(|k| k > 0 && mote.fcnt % k == k - 1);
        if every(opts.link_check_every) {
            mote.asks
                .push(crate::lorawan::mac::MacCommand::LinkCheckReq);
        }
        if every(opts.device_time_every) {
            mote.asks
                .push(crate::lorawan::mac::MacCommand::DeviceTimeReq);
        }
        let (fcnt, mut frame) = if joining {
            report.join_requests += 1;
            (0, mote.join_request(now))
        } else {
            mote.next_frame()
        };
        let (mote_dr, mote_power, nb_trans) = (mote.mac.dr, mote.mac.tx_power, mote.mac.nb_trans);
        let sample = mote.sample(fcnt);
        // Frames are 10 s apart in concentrator time, so a downlink (1 or 2 s
        // after its uplink) is never mistaken for the answer to another.
        // Channels in turn, and the three fastest rates the channel allows;
        // under ADR, the mote's own rate on the channels that have it.
        // A mote keeps its own rate under ADR, or when a start rate is given.
        let own_rate = opts.adr || opts.start_dr.is_some();
        let usable: Vec<_> = channels
            .iter()
            .filter(|c| !own_rate || (c.1..=c.2).contains(&mote_dr))
            .collect();
        let &(frequency, min_dr, max_dr) = usable[(n % usable.len() as u64) as usize];
        let up_dr = match own_rate {
            true => mote_dr,
            false => max_dr.saturating_sub((n % 3) as u8).max(min_dr),
        };
        let datr = region
            .data_rate(up_dr)
            .or_else(|| region.data_rate(min_dr))
            .expect("the region's uplink channels have LoRa rates");
        report.airtime += lmic_mac::time_on_air(datr, frame.len()) * u32::from(nb_trans.max(1));
        // Which gateways hear it: all, unless ADR's link model puts it
        // under a gateway's demodulation floor.
        let base_snr = opts
            .link_snr
            .get(m % opts.link_snr.len().max(1))
            .copied()
            .unwrap_or(9.5);
        let snr_at = |g: usize| {
            base_snr
                - 4.0 * g as f32
                - if opts.adr {
                    2.0 * f32::from(mote_power)
                } else {
                    0.0
                }
        };
        let floor = crate::lorawan::mac::adr::required_snr(datr.sf);
        let hearing: Vec<usize> = (0..opts.gateways.max(1))
            .filter(|&g| !own_rate || snr_at(g) >= floor)
            .collect();
        if hearing.is_empty() && !joining {
            report.lost_on_air += 1;
            continue;
        }
        if joining {
            // Not a data frame: nothing to expect, no fault injected.
        } else if rng.chance(opts.faults.bad_mic) {
            let last = frame.len() - 1;
            frame[last] ^= 0x5a;
            report.bad_mic += 1;
        } else {
            report.expected.push(Expected {
                device: mote.name.clone(),
                fcnt,
                epoch: mote.boots,
                sample,
            });
            history[m].push(frame.clone());
        }
        let unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let gps_ns = crate::lorawan::mac::state::gps_from_unix_ns(unix_ns) / 1_000_000 * 1_000_000;
        let sent = SentUplink {
            tmst: (n as u32).wrapping_mul(10_000_000),
            frequency,
            datr,
            gps_ns,
        };
        let recent = &mut uplinks_sent[m];
        if recent.len() == 8 {
            recent.remove(0);
        }
        recent.push(sent);
        for g in hearing {
            let rx = RxMeta {
                time_ns: None,
                gps_time_ns: opts.gateway_time.then_some(gps_ns),
                station: None,
                gateway: gateway_eui(g),
                rssi: -40 - 17 * g as i32 - (rng.next() % 5) as i32,
                snr: snr_at(g),
                tmst: Some(sent.tmst),
                frequency: Some(sent.frequency),
                datr: Some(sent.datr),
            };
            let up = GatewayUplink {
                phy: frame.clone(),
                rx,
            };
            transport.send(g, gateway_eui(g), &up).await?;
            report.copies += 1;
            if g == 0 && rng.chance(opts.faults.duplicate) {
                transport.send(g, gateway_eui(g), &up).await?;
                report.duplicates += 1;
                report.copies += 1;
            }
        }
        // No replay on a boot's last frame: a replay of a low frame followed
        // by a reboot whose first frame is lost is, on air, a reboot; the
        // service accepts it as one (README, "Frame counters").
        let last_of_boot = opts.reboot_every.is_some_and(|k| motes[m].fcnt >= k);
        if !last_of_boot && rng.chance(opts.faults.replay) && history[m].len() >= 2 {
            // An older frame of this mote, from well before the current one.
            let h = &history[m];
            let old = h[(rng.next() as usize) % (h.len() - 1)].clone();
            let up = GatewayUplink {
                phy: old,
                rx: RxMeta {
                    time_ns: None,
                    gps_time_ns: None,
                    station: None,
                    gateway: gateway_eui(0),
                    rssi: -30,
                    snr: 10.0,
                    tmst: None,
                    frequency: None,
                    datr: None,
                },
            };
            transport.send(0, gateway_eui(0), &up).await?;
            report.replays += 1;
            report.copies += 1;
        }
        if rng.chance(opts.faults.garbage) {
            let junk: Vec<u8> = (0..(rng.next() % 40 + 1))
                .map(|_| rng.next() as u8)
                .collect();
            match &target {
                // Garbage inside a well-formed PUSH_DATA / bridge message...
                _ if rng.chance(0.5) => {
                    let up = GatewayUplink {
                        phy: junk,
                        rx: RxMeta {
                            time_ns: None,
                            gps_time_ns: None,
                            station: None,
                            gateway: gateway_eui(0),
                            rssi: -99,
                            snr: 0.0,
                            tmst: None,
                            frequency: None,
                            datr: None,
                        },
                    };
                    transport.send(0, gateway_eui(0), &up).await?;
                }
                // ...or a raw undecodable datagram / message.
                _ => transport.send_raw(0, gateway_eui(0), junk).await?,
            }
            report.garbage += 1;
            report.copies += 1;
        }
    }
    let end = tokio::time::Instant::now() + opts.linger;
    while let Ok(Some(t)) = tokio::time::timeout_at(end, down_rx.recv()).await {
        deliver(
            &mut motes,
            &region,
            &uplinks_sent,
            t,
            &mut report,
            &mut lost,
        );
    }
    report.refused = refused.load(std::sync::atomic::Ordering::Relaxed);
    report.motes = motes
        .iter()
        .map(|m| MoteSummary {
            device: m.name.clone(),
            dr: m.mac.dr,
            tx_power: m.mac.tx_power,
            nb_trans: m.mac.nb_trans,
            adr_taken: m.mac.adr_taken,
            adr_refused: m.mac.adr_refused,
            steps_down: m.mac.steps_down,
            channels: m.mac.channels.clone(),
            rx: m.rx,
        })
        .collect();
    transport.finish().await?;
    Ok(report)
}
