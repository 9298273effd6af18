//! What reaches a simulated mote over the air: a downlink or a JoinAccept
//! is taken only in a receive window the mote opened (its delay, channel
//! and data rate), as LMIC listens nowhere else.

use super::mote::Mote;
use super::report::{JoinedByMote, ReceivedByMote, SimReport, Told};
use crate::downlink::Transmission;
use crate::lorawan::radio::Window;
use crate::lorawan::region::Region;

/// One uplink as its mote sent it: a downlink must come in one of the
/// windows it opens.
#[derive(Debug, Clone, Copy)]
pub(super) struct SentUplink {
    pub(super) tmst: u32,
    pub(super) frequency: u32,
    pub(super) datr: crate::lorawan::DataRate,
    /// The simulator's GPS time of the uplink (what its gateways report).
    pub(super) gps_ns: u64,
}

/// The delay (µs) of `t` after uplink `u`, if `t` comes in one of `windows`.
fn in_window(t: &Transmission, u: &SentUplink, windows: [Option<Window>; 2]) -> Option<u32> {
    let delay = t.tmst.wrapping_sub(u.tmst);
    windows
        .iter()
        .flatten()
        .any(|w| {
            u128::from(delay) == w.delay.as_micros()
                && t.frequency == w.frequency
                && t.datr == w.datr
        })
        .then_some(delay)
}

/// A JoinAccept reaches the motes: a joining mote takes it if it comes in
/// one of its join windows (JOIN_ACCEPT_DELAY1 on RX1 with no data-rate
/// offset, JOIN_ACCEPT_DELAY2 on the region's default RX2) and decrypts
/// with its AppKey.
fn deliver_join_accept(
    motes: &mut [Mote],
    region: &Region,
    sent: &[Vec<SentUplink>],
    t: Transmission,
    report: &mut SimReport,
    lost: &mut [u32],
) {
    let (d1, d2) = region.join_accept_delays();
    let rx2 = region.rx_defaults();
    for (i, mote) in motes.iter_mut().enumerate() {
        if !mote.joining() {
            continue;
        }
        // Only the windows of its latest JoinRequest: an answer to an
        // earlier one (it asked again meanwhile) comes when it no longer
        // listens, and would be opened with the wrong DevNonce.
        let heard = sent[i].last().and_then(|u| {
            let w2 = Window {
                delay: d2,
                frequency: rx2.rx2_frequency,
                datr: rx2.rx2_datr,
            };
            in_window(&t, u, [region.rx1(u.frequency, u.datr, 0, d1), Some(w2)])
        });
        let Some(delay_us) = heard else { continue };
        if lost[i] > 0 && mote.can_open(&t.phy) {
            lost[i] -= 1;
            report.joins_lost += 1;
            return;
        }
        if mote.accept(&t.phy, region) {
            report.joins.push(JoinedByMote {
                device: mote.name.clone(),
                dev_addr: mote.dev_addr,
                delay_us,
                frequency: t.frequency,
                datr: t.datr.to_string(),
            });
            return;
        }
    }
    tracing::warn!(frequency = t.frequency, datr = %t.datr, "no simulated mote took a JoinAccept");
    report.downlinks_missed += 1;
}

/// A transmission reaches the motes: the one it is addressed to takes it,
/// if it comes in a window the mote opened after one of its recent uplinks
/// (RX1: its delay, the uplink's channel, the uplink's rate lowered by its
/// RX1 offset; RX2: a second later, its RX2 channel and rate). LMIC listens
/// nowhere else, so neither does the simulated mote; a class C mote also
/// takes what is sent at once on its RX2 channel and rate.
pub(super) fn deliver(
    motes: &mut [Mote],
    region: &Region,
    sent: &[Vec<SentUplink>],
    t: Transmission,
    report: &mut SimReport,
    lost: &mut [u32],
) {
    if t.phy.first() == Some(&0x20) {
        return deliver_join_accept(motes, region, sent, t, report, lost);
    }
    let addr = t
        .phy
        .get(1..5)
        .map(|b| crate::lorawan::DevAddr::from_wire(b.try_into().expect("4 bytes")));
    let Some(i) = motes
        .iter()
        .position(|m| Some(m.dev_addr) == addr && m.otaa.as_ref().is_none_or(|o| o.joined))
    else {
        report.downlinks_dropped += 1;
        return;
    };
    let mote = &mut motes[i];
    let rx = mote.rx;
    let heard = if t.immediately {
        // Sent at once (class C): only a class C mote listens, on its RX2.
        let rx2 = rx.rx2();
        (mote.class_c && t.frequency == rx2.frequency && t.datr == rx2.datr).then_some((0, 0))
    } else {
        sent[i].iter().find_map(|u| {
            let w1 = region.rx1(u.frequency, u.datr, rx.rx1_dr_offset, rx.rx1_delay);
            in_window(&t, u, [w1, Some(rx.rx2())]).map(|d| (d, u.gps_ns))
        })
    };
    let Some((delay_us, uplink_gps_ns)) = heard else {
        tracing::warn!(device = %mote.name, frequency = t.frequency, datr = %t.datr,
            "simulated mote was not listening there or then: downlink missed");
        report.downlinks_missed += 1;
        return;
    };
    match mote.receive(&t.phy, region) {
        Ok((d, told)) => {
            for what in told {
                report.told.push(Told {
                    device: mote.name.clone(),
                    what,
                    uplink_gps_ns,
                });
            }
            report.downlinks.push(ReceivedByMote {
                device: mote.name.clone(),
                fcnt: d.fcnt,
                confirmed: d.confirmed,
                ack: d.ack,
                fpending: d.fpending,
                fport: d.fport,
                payload: d.payload,
                fopts: d.fopts,
                delay_us,
                frequency: t.frequency,
                datr: t.datr.to_string(),
                interval_s: mote.interval_s,
            })
        }
        Err(e) => {
            tracing::warn!(device = %mote.name, error = %e, "simulated mote dropped a downlink");
            report.downlinks_dropped += 1;
        }
    }
}
