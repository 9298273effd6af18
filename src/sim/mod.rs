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
pub mod lmic_mac;
pub mod mote;
pub mod options;
pub mod report;
pub mod station_gw;

use air::{deliver, SentUplink};
use gateways::Transport;
pub use options::{gateway_eui, Faults, SimOptions, Target};
pub use report::{Expected, JoinedByMote, MoteSummary, ReceivedByMote, SimReport, Told};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::lorawan::region::{Region, RegionSettings};

use crate::ingest::bridge::GatewayUplink;
use crate::pipeline::uplink::RxMeta;
use mote::Mote;

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
            // reset-tolerant (see docs/configuration.md, "Frame counters").
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
        // service accepts it as one (docs/configuration.md, "Frame counters").
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
