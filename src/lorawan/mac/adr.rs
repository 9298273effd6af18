//! Adaptive data rate: the default algorithm of the established network
//! servers (ChirpStack's `default` ADR, after Semtech's recommendation),
//! pure. From the best SNR of the device's last frames, the SNR its data
//! rate needs and an installation margin, count 3 dB steps of headroom;
//! spend them raising the data rate up to the maximum, then lowering the
//! transmit power; a negative count raises the power back (never lowers the
//! data rate: the device does that itself when it stops hearing us, by
//! ADRACKReq). NbTrans follows the packet loss seen in the history. One
//! change from ChirpStack's: the best SNR is taken over the frames sent at
//! the device's current power only (see [`decide`]).

use serde::{Deserialize, Serialize};

/// Frames of history the algorithm looks at (ChirpStack: 20).
pub const HISTORY: usize = 20;

/// One received frame, as ADR remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Heard {
    pub fcnt: u32,
    /// Best SNR over the gateways that heard it.
    pub max_snr: f32,
    /// The TX power index the device used (as far as it acknowledged).
    pub tx_power: u8,
}

/// The SNR (dB) a LoRa spreading factor demodulates down to (SX127x
/// datasheet; the table ChirpStack uses).
pub fn required_snr(sf: u8) -> f32 {
    match sf {
        5 => -2.5,
        6 => -5.0,
        7 => -7.5,
        8 => -10.0,
        9 => -12.5,
        10 => -15.0,
        11 => -17.5,
        _ => -20.0,
    }
}

/// What the algorithm is asked about one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Input {
    /// The data rate index of the frame just heard, and its spreading factor.
    pub dr: u8,
    pub sf: u8,
    pub tx_power: u8,
    pub nb_trans: u8,
    /// The highest data rate of the region's (125 kHz) uplink channels.
    pub max_dr: u8,
    /// The region's highest TX power index (lowest power).
    pub max_tx_power: u8,
    /// dB kept in reserve (ChirpStack's default: 10).
    pub installation_margin: f32,
}

/// What the device should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub dr: u8,
    pub tx_power: u8,
    pub nb_trans: u8,
}

/// Packet loss in percent over `history` (frames missing between the
/// first and the last counter); 0 until the history is full.
pub fn packet_loss(history: &[Heard]) -> f32 {
    if history.len() < HISTORY {
        return 0.0;
    }
    let (first, last) = (history[0].fcnt, history[history.len() - 1].fcnt);
    let span = last.wrapping_sub(first) as f32 + 1.0;
    let lost = (span - history.len() as f32).max(0.0);
    lost * 100.0 / span
}

/// NbTrans from packet loss and the current NbTrans (ChirpStack's table).
fn nb_trans(current: u8, loss: f32) -> u8 {
    const TABLE: [[u8; 3]; 4] = [[1, 1, 2], [1, 2, 3], [2, 3, 3], [3, 3, 3]];
    let row = match loss {
        l if l < 5.0 => 0,
        l if l < 10.0 => 1,
        l if l < 30.0 => 2,
        _ => 3,
    };
    TABLE[row][usize::from(current.clamp(1, 3) - 1)]
}

/// The data rate, power and NbTrans the device should use after `history`
/// (oldest first; the frame just heard is the last).
pub fn decide(input: Input, history: &[Heard]) -> Output {
    let mut out = Output {
        dr: input.dr,
        tx_power: input.tx_power,
        nb_trans: nb_trans(input.nb_trans, packet_loss(history)),
    };
    if input.dr > input.max_dr {
        // Faster than the site allows (a 250 kHz rate, say): come back.
        out.dr = input.max_dr;
        return out;
    }
    // Only frames sent at the current power say what the link has now:
    // counting louder ones would lower the power again and again until
    // the device is lost.
    let now = || history.iter().filter(|h| h.tx_power == input.tx_power);
    let Some(snr_max) = now().map(|h| h.max_snr).reduce(f32::max) else {
        return out;
    };
    let margin = snr_max - required_snr(input.sf) - input.installation_margin;
    let mut steps = (margin / 3.0) as i32;
    // Raising the power on a short history would flap up and down: wait
    // for a full history at the current power.
    let at_power = now().count();
    if steps < 0 && at_power < HISTORY {
        return out;
    }
    while steps > 0 {
        if out.dr < input.max_dr {
            out.dr += 1;
        } else if out.tx_power < input.max_tx_power {
            out.tx_power += 1;
        } else {
            break;
        }
        steps -= 1;
    }
    while steps < 0 && out.tx_power > 0 {
        out.tx_power -= 1;
        steps += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(dr: u8, sf: u8, tx_power: u8) -> Input {
        Input {
            dr,
            sf,
            tx_power,
            nb_trans: 1,
            max_dr: 5,
            max_tx_power: 7,
            installation_margin: 10.0,
        }
    }

    fn heard(n: u32, snr: f32, tx_power: u8) -> Vec<Heard> {
        (0..n)
            .map(|fcnt| Heard {
                fcnt,
                max_snr: snr,
                tx_power,
            })
            .collect()
    }

    #[test]
    fn headroom_raises_the_rate_then_lowers_the_power() {
        // SF12 (needs -20 dB) heard at 9.5: 19.5 dB over the margin, 6 steps.
        let out = decide(input(0, 12, 0), &heard(1, 9.5, 0));
        assert_eq!((out.dr, out.tx_power, out.nb_trans), (5, 1, 1));
        // Already at DR5 (SF7, -7.5): 7 dB, 2 steps of power.
        let out = decide(input(5, 7, 1), &heard(5, 9.5, 1));
        assert_eq!((out.dr, out.tx_power), (5, 3));
        // Power stops at the region's lowest.
        let out = decide(input(5, 7, 6), &heard(5, 30.0, 6));
        assert_eq!(out.tx_power, 7);
    }

    #[test]
    fn a_far_device_keeps_its_rate() {
        // SF12 heard at -12 dB: -2 dB of margin, no step.
        let out = decide(input(0, 12, 0), &heard(20, -12.0, 0));
        assert_eq!((out.dr, out.tx_power), (0, 0));
    }

    #[test]
    fn power_comes_back_only_on_a_full_history() {
        // DR5 at power index 3 heard at -10: -12.5 dB, 4 steps down in power.
        let out = decide(input(5, 7, 3), &heard(19, -10.0, 3));
        assert_eq!(out.tx_power, 3, "19 frames are not enough");
        let out = decide(input(5, 7, 3), &heard(20, -10.0, 3));
        assert_eq!((out.dr, out.tx_power), (5, 0), "never the rate");
        // Frames at another power do not count.
        let mut h = heard(20, -10.0, 2);
        h[19].tx_power = 3;
        assert_eq!(decide(input(5, 7, 3), &h).tx_power, 3);
    }

    #[test]
    fn a_rate_over_the_maximum_comes_back() {
        let out = decide(input(6, 7, 0), &heard(1, 10.0, 0));
        assert_eq!(out.dr, 5);
    }

    #[test]
    fn nb_trans_follows_packet_loss() {
        // 20 frames over counters 0..=25: 6 of 26 lost (23 %).
        let mut h = heard(20, 0.0, 0);
        for (i, x) in h.iter_mut().enumerate() {
            x.fcnt = if i < 14 { i as u32 } else { i as u32 + 6 };
        }
        assert!((packet_loss(&h) - 23.08).abs() < 0.1);
        assert_eq!(decide(input(5, 7, 0), &h).nb_trans, 2);
        let with = |n| {
            decide(
                Input {
                    nb_trans: n,
                    ..input(5, 7, 0)
                },
                &h,
            )
            .nb_trans
        };
        assert_eq!((with(2), with(3)), (3, 3));
        // No loss: back down towards one.
        assert_eq!(
            decide(
                Input {
                    nb_trans: 3,
                    ..input(5, 7, 0)
                },
                &heard(20, 0.0, 0)
            )
            .nb_trans,
            2
        );
        assert_eq!(packet_loss(&heard(19, 0.0, 0)), 0.0, "not full yet");
    }
}
