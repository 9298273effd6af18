//! The join server's decisions, as a state machine without I/O: a verified
//! JoinRequest and a device's [`JoinState`] in, a new pending session (or a
//! refusal) out. The pipeline persists the state before it sends the
//! JoinAccept, and activates the pending session on the first uplink that
//! verifies under it (LoRaWAN 1.0.4 §6.2.6: until then the device may still
//! be on its old session, if the JoinAccept was lost).
//!
//! DevNonce replay protection (§6.2.4):
//! - 1.0.4 devices count their DevNonce up: each must be above the last
//!   one accepted.
//! - 1.0.2/1.0.3 devices (LMIC) draw it at random: a nonce already accepted
//!   is refused. The last [`USED_NONCES`] accepted nonces are kept per
//!   device (2 KiB); at the bound the oldest is forgotten, so a replay of a
//!   JoinRequest older than that many joins would be answered. What it
//!   gets is a pending session no one can use (the attacker has no AppKey)
//!   and the device's own session keeps working, so the cost is one
//!   JoinNonce and one DevAddr until the device's next join.

use std::collections::VecDeque;

use super::join::{session_keys, AcceptFields, JoinRequest};
use super::keys::{AesKey, DevAddr, Eui64};
use super::region::MacVersionName;

/// Accepted random DevNonces kept per 1.0.2/1.0.3 device.
pub const USED_NONCES: usize = 1024;
/// JoinNonce is 24 bits: a device can join this many times.
pub const JOIN_NONCE_LIMIT: u32 = 1 << 24;

/// One session a join made: enough to derive its keys again from the
/// AppKey, so no session key is ever written to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinedSession {
    pub dev_addr: DevAddr,
    pub dev_nonce: u16,
    pub join_nonce: u32,
    pub net_id: u32,
    /// When the JoinRequest was accepted (Unix seconds).
    pub joined_at: u64,
    /// The counter epoch its frames are counted in, once the device uses
    /// it (event ids carry it: both edges of a handover must agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
}

impl JoinedSession {
    /// NwkSKey and AppSKey (LoRaWAN 1.0.x).
    pub fn keys(&self, app_key: &AesKey) -> (AesKey, AesKey) {
        session_keys(app_key, self.join_nonce, self.net_id, self.dev_nonce)
    }
}

/// What the join server remembers of one OTAA device (durable).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinState {
    /// The JoinNonce of the next JoinAccept (only increases).
    pub next_join_nonce: u32,
    /// 1.0.4: the last DevNonce accepted.
    pub last_dev_nonce: Option<u16>,
    /// 1.0.2/1.0.3: DevNonces accepted, oldest first, at most [`USED_NONCES`].
    pub used_dev_nonces: VecDeque<u16>,
    /// The session the device is known to use.
    pub active: Option<JoinedSession>,
    /// Sent in a JoinAccept, not yet used by the device.
    pub pending: Option<JoinedSession>,
}

/// Why a JoinRequest was refused (after its MIC verified).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    #[error("DevNonce {nonce:#06x} was already used")]
    NonceReused { nonce: u16 },
    #[error(
        "DevNonce {nonce:#06x} is not above the last one, {last:#06x} (LoRaWAN 1.0.4 counts them)"
    )]
    NonceNotIncreasing { nonce: u16, last: u16 },
    #[error("the device used every JoinNonce")]
    JoinNoncesExhausted,
    #[error("no free DevAddr in {0}")]
    NoAddress(AddrPrefix),
}

/// The network's part of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub net_id: u32,
    /// Where DevAddrs are drawn from (the NetID's, or a configured one).
    pub prefix: AddrPrefix,
}

/// A verified JoinRequest, and the state it changes.
pub struct Decision {
    pub session: JoinedSession,
}

impl JoinState {
    /// Decide on a JoinRequest whose MIC verified. `now` is Unix seconds;
    /// `draw` gives random 32-bit values for the DevAddr; `taken` says
    /// whether a DevAddr is already in a live session. On success the
    /// state holds the new pending session: persist it, then answer.
    pub fn on_join_request(
        &mut self,
        req: &JoinRequest,
        version: MacVersionName,
        net: &Network,
        now: u64,
        mut draw: impl FnMut() -> u32,
        taken: impl Fn(DevAddr) -> bool,
    ) -> Result<Decision, JoinRefusal> {
        let nonce = req.dev_nonce;
        match version {
            MacVersionName::V1_0_4 => {
                if let Some(last) = self.last_dev_nonce.filter(|l| nonce <= *l) {
                    return Err(JoinRefusal::NonceNotIncreasing { nonce, last });
                }
            }
            _ if self.used_dev_nonces.contains(&nonce) => {
                return Err(JoinRefusal::NonceReused { nonce })
            }
            _ => {}
        }
        if self.next_join_nonce >= JOIN_NONCE_LIMIT {
            return Err(JoinRefusal::JoinNoncesExhausted);
        }
        // A fresh address: a device's old one is refused too, so an uplink
        // under the old session can never be mistaken for the new one.
        let old: Vec<DevAddr> = self
            .active
            .iter()
            .chain(&self.pending)
            .map(|s| s.dev_addr)
            .collect();
        let dev_addr = (0..64)
            .map(|_| net.prefix.address(draw()))
            .find(|a| !taken(*a) && !old.contains(a))
            .ok_or(JoinRefusal::NoAddress(net.prefix))?;
        match version {
            MacVersionName::V1_0_4 => self.last_dev_nonce = Some(nonce),
            _ => {
                if self.used_dev_nonces.len() >= USED_NONCES {
                    self.used_dev_nonces.pop_front();
                }
                self.used_dev_nonces.push_back(nonce);
            }
        }
        let session = JoinedSession {
            dev_addr,
            dev_nonce: nonce,
            join_nonce: self.next_join_nonce,
            net_id: net.net_id,
            joined_at: now,
            epoch: None,
        };
        self.next_join_nonce += 1;
        self.pending = Some(session);
        Ok(Decision { session })
    }

    /// The device sent its first uplink under the pending session: it is
    /// the active one now, counted in `epoch`.
    pub fn activate(&mut self, epoch: u32) -> Option<JoinedSession> {
        let mut s = self.pending.take()?;
        s.epoch = Some(epoch);
        self.active = Some(s);
        Some(s)
    }
}

/// The DevAddrs a join tries, in order: a function of the device, the
/// JoinNonce and the DevNonce only, so that two edges with the same join
/// state take the same decision (a handover's standby edge shadows the
/// holder's joins this way). SplitMix64 of a counter from that seed.
pub fn address_draws(eui: Eui64, join_nonce: u32, dev_nonce: u16) -> impl FnMut() -> u32 {
    let seed = eui.as_u64() ^ (u64::from(join_nonce) << 16) ^ u64::from(dev_nonce);
    let mut attempt = 0u64;
    move || {
        attempt += 1;
        let mut x = (seed ^ attempt.rotate_left(48)).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (x ^ (x >> 31)) as u32
    }
}

/// The JoinAccept fields for `session` with the device's windows.
pub fn accept_fields(
    session: &JoinedSession,
    rx1_dr_offset: u8,
    rx2_dr: u8,
    rx_delay_s: u8,
    cf_list: Option<[u8; 16]>,
) -> AcceptFields {
    AcceptFields {
        join_nonce: session.join_nonce,
        net_id: session.net_id,
        dev_addr: session.dev_addr,
        rx1_dr_offset,
        rx2_dr,
        rx_delay: rx_delay_s,
        cf_list,
    }
}

/// A DevAddr prefix: the top `bits` bits of `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrPrefix {
    pub value: u32,
    pub bits: u8,
}

impl std::fmt::Display for AddrPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}/{}", self.value, self.bits)
    }
}

impl std::str::FromStr for AddrPrefix {
    type Err = String;
    /// `26000000/7`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (v, b) = s.split_once('/').ok_or("want hex/bits, like 26000000/7")?;
        let bits: u8 = b.parse().map_err(|_| "the prefix length must be 1..=31")?;
        let value = u32::from_str_radix(v, 16).map_err(|_| "the prefix must be 8 hex digits")?;
        if v.len() != 8 || !(1..=31).contains(&bits) {
            return Err("want 8 hex digits and a length of 1..=31, like 26000000/7".into());
        }
        let mask = u32::MAX << (32 - u32::from(bits));
        Ok(Self {
            value: value & mask,
            bits,
        })
    }
}

impl AddrPrefix {
    /// The DevAddr prefix a NetID's network allocates from (LoRaWAN
    /// Backend Interfaces §13: the type's prefix, then the NwkID).
    pub fn of_net_id(net_id: u32) -> Self {
        let kind = (net_id >> 21) & 0x7;
        // (type prefix length, NwkID bits) for types 0..7.
        let (len, nwkid_bits) = [
            (1, 6),
            (2, 6),
            (3, 9),
            (4, 11),
            (5, 12),
            (6, 13),
            (7, 15),
            (8, 17),
        ][kind as usize];
        let type_bits = ((1u32 << len) - 2) << (32 - len);
        let nwkid = net_id & ((1 << nwkid_bits) - 1);
        Self {
            value: type_bits | (nwkid << (32 - len - nwkid_bits)),
            bits: (len + nwkid_bits) as u8,
        }
    }

    /// The address with this prefix and the low bits of `random`.
    pub fn address(&self, random: u32) -> DevAddr {
        let mask = u32::MAX << (32 - u32::from(self.bits));
        DevAddr(self.value | (random & !mask))
    }

    pub fn contains(&self, a: DevAddr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.bits));
        a.0 & mask == self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lorawan::join::{build_join_request, parse_join_request};

    fn request(nonce: u16) -> JoinRequest {
        let k = AesKey::new([7; 16]);
        parse_join_request(&build_join_request(
            &k,
            Eui64::from_u64(1),
            Eui64::from_u64(2),
            nonce,
        ))
        .unwrap()
    }

    const TTN: Network = Network {
        net_id: 0x13,
        prefix: AddrPrefix {
            value: 0x2600_0000,
            bits: 7,
        },
    };

    #[test]
    fn random_nonces_are_refused_once_used() {
        let mut s = JoinState::default();
        let mut n = 0u32;
        let mut draw = || {
            n += 1;
            n
        };
        let d = s
            .on_join_request(
                &request(0x1234),
                MacVersionName::V1_0_3,
                &TTN,
                10,
                &mut draw,
                |_| false,
            )
            .unwrap();
        assert_eq!(d.session.join_nonce, 0);
        assert!(TTN.prefix.contains(d.session.dev_addr));
        assert_eq!(s.pending, Some(d.session));
        assert_eq!(
            s.on_join_request(
                &request(0x1234),
                MacVersionName::V1_0_3,
                &TTN,
                11,
                &mut draw,
                |_| false
            )
            .err(),
            Some(JoinRefusal::NonceReused { nonce: 0x1234 })
        );
        // A lower one is fine for random nonces; the JoinNonce goes on.
        let d2 = s
            .on_join_request(
                &request(0x0001),
                MacVersionName::V1_0_3,
                &TTN,
                12,
                &mut draw,
                |_| false,
            )
            .unwrap();
        assert_eq!(d2.session.join_nonce, 1);
        assert_ne!(d2.session.dev_addr, d.session.dev_addr);
        let active = s.activate(4).unwrap();
        assert_eq!(
            (active.dev_addr, active.epoch),
            (d2.session.dev_addr, Some(4))
        );
        assert_eq!((s.active, s.pending), (Some(active), None));
    }

    #[test]
    fn counted_nonces_must_increase() {
        let mut s = JoinState::default();
        let v = MacVersionName::V1_0_4;
        s.on_join_request(&request(5), v, &TTN, 0, || 9, |_| false)
            .unwrap();
        assert_eq!(
            s.on_join_request(&request(5), v, &TTN, 0, || 9, |_| false)
                .err(),
            Some(JoinRefusal::NonceNotIncreasing { nonce: 5, last: 5 })
        );
        assert!(s
            .on_join_request(&request(4), v, &TTN, 0, || 9, |_| false)
            .is_err());
        s.on_join_request(&request(6), v, &TTN, 0, || 10, |_| false)
            .unwrap();
    }

    #[test]
    fn the_used_nonce_log_is_bounded_oldest_first() {
        let mut s = JoinState::default();
        for (n, nonce) in (0..(USED_NONCES as u16 + 1)).enumerate() {
            let n = n as u32 + 1;
            s.on_join_request(
                &request(nonce),
                MacVersionName::V1_0_2,
                &TTN,
                0,
                || n,
                |_| false,
            )
            .unwrap();
        }
        assert_eq!(s.used_dev_nonces.len(), USED_NONCES);
        assert_eq!(s.used_dev_nonces.front(), Some(&1), "nonce 0 was forgotten");
        assert!(s
            .on_join_request(
                &request(5),
                MacVersionName::V1_0_2,
                &TTN,
                0,
                || 1 << 20,
                |_| false
            )
            .is_err());
    }

    #[test]
    fn addresses_are_free_and_exhaustion_is_refused() {
        let mut s = JoinState::default();
        let taken = |a: DevAddr| a.0 & 1 == 0; // every even address is in use
        let mut n = 10;
        let d = s
            .on_join_request(
                &request(1),
                MacVersionName::V1_0_3,
                &TTN,
                0,
                || {
                    n += 1;
                    n
                },
                taken,
            )
            .unwrap();
        assert_eq!(d.session.dev_addr.0 & 1, 1);
        assert_eq!(
            s.on_join_request(&request(2), MacVersionName::V1_0_3, &TTN, 0, || 2, |_| true)
                .err(),
            Some(JoinRefusal::NoAddress(TTN.prefix))
        );
        s.next_join_nonce = JOIN_NONCE_LIMIT;
        assert_eq!(
            s.on_join_request(
                &request(3),
                MacVersionName::V1_0_3,
                &TTN,
                0,
                || 3,
                |_| false
            )
            .err(),
            Some(JoinRefusal::JoinNoncesExhausted)
        );
    }

    #[test]
    fn address_draws_are_the_same_on_every_edge() {
        let a: Vec<u32> = std::iter::repeat_with(address_draws(Eui64::from_u64(7), 3, 9))
            .take(4)
            .collect();
        let b: Vec<u32> = std::iter::repeat_with(address_draws(Eui64::from_u64(7), 3, 9))
            .take(4)
            .collect();
        assert_eq!(a, b);
        let c: Vec<u32> = std::iter::repeat_with(address_draws(Eui64::from_u64(7), 4, 9))
            .take(4)
            .collect();
        assert_ne!(a, c, "another JoinNonce, other addresses");
        assert!(a.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn net_id_prefixes_agree_with_lrwn() {
        for net_id in [
            0x000000u32,
            0x000013,
            0x60002d,
            0xc00053,
            0xe0003f,
            0x3fffff,
        ] {
            let ours = AddrPrefix::of_net_id(net_id);
            let b = net_id.to_be_bytes();
            let theirs = lrwn::NetID::from_be_bytes([b[1], b[2], b[3]]).dev_addr_prefix();
            assert_eq!(ours.to_string(), theirs.to_string(), "NetID {net_id:06x}");
        }
        assert_eq!(AddrPrefix::of_net_id(0x13).to_string(), "26000000/7");
        let p: AddrPrefix = "26011b00/24".parse().unwrap();
        assert!(p.contains(p.address(0xffff_ffff)));
        assert_eq!(p.address(0x0000_00da), DevAddr(0x26011bda));
        assert!("26011b00".parse::<AddrPrefix>().is_err());
    }
}
