//! Proven coverage (beyond the seed): a provider is only useful if its
//! gateways hear the customer's devices, and that can be proven without a
//! key leaving the customer.
//!
//! A provider's pipeline remembers frames under DevAddrs it does not serve
//! ([`HeardElsewhere`]: per DevAddr the last few PHYPayloads with their
//! signal, a bounded number of DevAddrs, the least recently heard out
//! first), on the path that refuses them anyway. It bids with those of the
//! demand's DevAddrs. The customer's pipeline checks each frame's MIC under
//! its own session keys (and that its counter is recent); [`proven`] turns
//! the checked frames into the share of its devices heard and the best
//! signal margin.

use std::collections::{HashMap, HashSet};

use super::types::{HeardFrame, Proven};

/// DevAddrs remembered at most.
pub const MAX_ADDRS: usize = 1024;
/// Frames kept per DevAddr.
pub const PER_ADDR: usize = 4;

#[derive(Default)]
struct Heard {
    frames: std::collections::VecDeque<HeardFrame>,
    last_ms: u64,
}

/// Frames this edge's gateways heard from devices it does not serve.
#[derive(Default)]
pub struct HeardElsewhere {
    by_addr: HashMap<u32, Heard>,
}

impl HeardElsewhere {
    /// Remember `phy` under `dev_addr`.
    pub fn record(
        &mut self,
        dev_addr: u32,
        phy: &[u8],
        rssi: i32,
        snr: f32,
        datr: Option<String>,
        now_ms: u64,
    ) {
        if !self.by_addr.contains_key(&dev_addr) && self.by_addr.len() >= MAX_ADDRS {
            if let Some(oldest) = self
                .by_addr
                .iter()
                .min_by_key(|(_, h)| h.last_ms)
                .map(|(a, _)| *a)
            {
                self.by_addr.remove(&oldest);
            }
        }
        let h = self.by_addr.entry(dev_addr).or_default();
        if h.frames.len() >= PER_ADDR {
            h.frames.pop_front();
        }
        h.frames.push_back(HeardFrame {
            phy: hex::encode(phy),
            rssi,
            snr,
            datr,
            time_ms: now_ms,
        });
        h.last_ms = now_ms;
    }

    /// The frames heard of `addrs` (hex DevAddrs), newest last.
    pub fn sample(&self, addrs: &[String]) -> Vec<HeardFrame> {
        addrs
            .iter()
            .filter_map(|a| u32::from_str_radix(a, 16).ok())
            .filter_map(|a| self.by_addr.get(&a))
            .flat_map(|h| h.frames.iter().cloned())
            .collect()
    }

    /// How many of `addrs` were heard.
    pub fn heard_of(&self, addrs: &[String]) -> usize {
        addrs
            .iter()
            .filter_map(|a| u32::from_str_radix(a, 16).ok())
            .filter(|a| self.by_addr.contains_key(a))
            .count()
    }

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }
}

fn spreading_factor(datr: Option<&str>) -> u8 {
    datr.and_then(crate::lorawan::DataRate::parse)
        .map_or(12, |r| r.sf)
}

/// What a bid proved: `verified[i]` names the device (any id) frame
/// `heard[i]` authenticated as, if it did; `devices` is how many devices
/// the customer demanded cover for.
pub fn proven<T: Eq + std::hash::Hash>(
    heard: &[HeardFrame],
    verified: &[Option<T>],
    devices: usize,
) -> Proven {
    let mut seen = HashSet::new();
    let mut margin: Option<f64> = None;
    for (f, v) in heard.iter().zip(verified) {
        if let Some(d) = v {
            seen.insert(d);
            let m = f64::from(f.snr)
                - f64::from(crate::lorawan::mac::adr::required_snr(spreading_factor(
                    f.datr.as_deref(),
                )));
            margin = Some(margin.map_or(m, |x: f64| x.max(m)));
        }
    }
    Proven {
        coverage: if devices == 0 {
            0.0
        } else {
            (seen.len() as f64 / devices as f64).min(1.0)
        },
        margin_db: margin.unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_addr_and_in_addrs_the_least_recent_out() {
        let mut h = HeardElsewhere::default();
        for i in 0..10u8 {
            h.record(0x2601_0001, &[i], -80, 5.0, None, u64::from(i));
        }
        let s = h.sample(&["26010001".into()]);
        assert_eq!(s.len(), PER_ADDR);
        assert_eq!(s.last().unwrap().phy, "09");
        for a in 0..MAX_ADDRS as u32 {
            h.record(0x1000_0000 + a, &[1], -80, 5.0, None, 100 + u64::from(a));
        }
        assert_eq!(h.len(), MAX_ADDRS);
        assert_eq!(
            h.heard_of(&["26010001".into()]),
            0,
            "the least recently heard went"
        );
        assert_eq!(h.heard_of(&["10000001".into(), "ffffffff".into()]), 1);
    }

    #[test]
    fn coverage_is_the_share_of_devices_verified_and_margin_the_best() {
        let f = |snr: f32, datr: &str| HeardFrame {
            phy: String::new(),
            rssi: -100,
            snr,
            datr: Some(datr.into()),
            time_ms: 0,
        };
        let heard = [
            f(2.0, "SF7BW125"),
            f(-5.0, "SF12BW125"),
            f(9.0, "SF7BW125"),
            f(1.0, "SF9BW125"),
        ];
        // Frames 0 and 1 verified as device 1, frame 3 as device 2; frame 2 forged.
        let p = proven(&heard, &[Some(1), Some(1), None, Some(2)], 4);
        assert_eq!(p.coverage, 0.5);
        assert_eq!(p.margin_db, 15.0, "SF12 at -5 dB is 15 dB above its floor");
        assert_eq!(
            proven(&heard, &[None::<u8>, None, None, None], 4).coverage,
            0.0
        );
    }
}
