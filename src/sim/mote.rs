//! A simulated LMIC ABP mote: real keys, a real 32-bit uplink counter that
//! restarts at 0 on reboot, and the Cayenne LPP payload of the
//! `Dragino-LPP-Mote` profile (temperature ch 1, humidity ch 2, GPS ch 3,
//! battery voltage ch 4).

use crate::codec::lpp;
use crate::devices::DeviceEntry;
use crate::lorawan::crypto::Direction;
use crate::lorawan::encode::{DownlinkError, ReceivedDownlink};
use crate::lorawan::region::MacVersionName;
use crate::lorawan::{encode, AesKey, DevAddr, Eui64, FcntPolicy, SessionCrypto};

/// Mote profile name in `profiles/`.
pub const PROFILE: &str = "Dragino-LPP-Mote";
/// LMIC sends on port 1 by default.
pub const FPORT: u8 = 1;

/// The splitmix64 output function of `x + γ`: keys here, the simulator's RNG in `sim`.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn key(seed: u64, i: u64, which: u64) -> AesKey {
    let a = splitmix(seed ^ (i << 8) ^ which);
    let b = splitmix(a);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    AesKey::new(k)
}

/// The devices-file entries of `n` simulated motes derived from `seed`.
pub fn entries(n: usize, seed: u64) -> Vec<DeviceEntry> {
    (0..n as u64)
        .map(|i| DeviceEntry {
            dev_addr: Some(DevAddr(0x2601_0000 + i as u32 + 1)),
            nwk_s_key: Some(key(seed, i, 1)),
            app_s_key: Some(key(seed, i, 2)),
            fcnt_policy: FcntPolicy::ResetTolerant,
            ..DeviceEntry::new(
                format!("sim-mote-{}", i + 1),
                Eui64::from_u64(0x70b3_d57e_d000_0000 + i + 1),
                PROFILE,
            )
        })
        .collect()
}

/// The devices-file entries of `n` simulated OTAA motes (LMIC-like: random
/// DevNonces, LoRaWAN `version`), their AppKeys derived from `seed`.
pub fn otaa_entries(n: usize, seed: u64, version: MacVersionName) -> Vec<DeviceEntry> {
    (0..n as u64)
        .map(|i| DeviceEntry {
            fcnt_policy: FcntPolicy::Strict,
            activation: crate::devices::Activation::Otaa,
            join_eui: Some(JOIN_EUI),
            app_key: Some(key(seed, i, 3)),
            mac_version: version,
            ..DeviceEntry::new(
                format!("sim-otaa-{}", i + 1),
                Eui64::from_u64(0x70b3_d57e_d001_0000 + i + 1),
                PROFILE,
            )
        })
        .collect()
}

/// The JoinEUI of the simulated OTAA motes.
pub const JOIN_EUI: Eui64 = Eui64([0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0x00, 0x00, 0x00]);

/// What an OTAA mote keeps to join (LMIC's `os_getArtEui`, `os_getDevKey`).
pub struct OtaaMote {
    pub join_eui: Eui64,
    app_key: AesKey,
    /// The DevNonce of the next JoinRequest (a per-mote counter from a
    /// random start: never repeats, and increases as 1.0.4 wants).
    next_nonce: u16,
    /// The DevNonce of the JoinRequest in flight, and when it went out.
    pub waiting: Option<(u16, std::time::Instant)>,
    /// A session from a JoinAccept is in use.
    pub joined: bool,
}

/// The devices file text for `entries` (keys in hex: the file is secret).
pub fn devices_yaml(entries: &[DeviceEntry]) -> String {
    format!(
        "# Simulated ABP motes. Holds session keys: keep this file mode 0600.\n{}",
        crate::devices::to_yaml(entries)
    )
}

pub struct Mote {
    pub name: String,
    pub dev_eui: Eui64,
    pub dev_addr: DevAddr,
    crypto: SessionCrypto,
    /// The counter of the next uplink.
    pub fcnt: u32,
    /// Reboots so far: the service's epoch should follow it.
    pub boots: u32,
    /// Report interval in seconds (what the interval downlink changes).
    pub interval_s: u32,
    /// Uplinks are confirmed: the network must ACK each in a downlink.
    pub confirmed: bool,
    /// The last FCntDown accepted (LMIC's `seqnoDn - 1`).
    pub fcnt_down: Option<u32>,
    /// Where it listens after an uplink (LMIC `rxDelay`, `rx1DrOffset`,
    /// `dn2Freq`, `dn2Dr`).
    pub rx: crate::lorawan::radio::RxSettings,
    /// OTAA motes: their join keys and state. `boots` counts their joins.
    pub otaa: Option<OtaaMote>,
    /// Its MAC layer as LMIC runs it (ADR, answers to MAC commands).
    pub mac: super::lmic_mac::MoteMac,
    /// MAC requests to add to the next uplink (LinkCheckReq, DeviceTimeReq).
    pub asks: Vec<crate::lorawan::mac::MacCommand>,
    /// Class C (its entry's `class`): it listens on RX2 whenever it is not
    /// sending, so it takes downlinks sent at any time there.
    pub class_c: bool,
    /// It took a confirmed downlink: its next uplink sets the ACK bit.
    pub ack_next: bool,
}

/// The one downlink the firmware understands (firmware/lorawan-mote/payload.h):
/// FPort 2, a big-endian uint16 of seconds in 10..=3600.
pub const INTERVAL_PORT: u8 = 2;

/// The sensor values a mote reports in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub temperature: f64,
    pub humidity: f64,
    pub latitude: f64,
    pub longitude: f64,
    pub altitude: f64,
    pub battery: f64,
}

impl Mote {
    /// A mote of `e` on EU868.
    pub fn new(e: &DeviceEntry) -> Self {
        let eu868 = crate::lorawan::region::RegionSettings::new(Default::default());
        Self::in_region(e, &crate::lorawan::region::Region::new(eu868))
    }

    /// A mote of `e` listening with `region`'s default windows, unless its
    /// entry sets its own.
    pub fn in_region(e: &DeviceEntry, region: &crate::lorawan::region::Region) -> Self {
        let otaa = e
            .join_eui
            .zip(e.app_key)
            .map(|(join_eui, app_key)| OtaaMote {
                join_eui,
                app_key,
                next_nonce: (splitmix(e.dev_eui.as_u64()) as u16) & 0x7fff,
                waiting: None,
                joined: false,
            });
        // An OTAA mote has no session until it joins.
        let none = AesKey::new([0; 16]);
        Self {
            name: e.name.clone(),
            dev_eui: e.dev_eui,
            dev_addr: e.dev_addr.unwrap_or(DevAddr(0)),
            crypto: SessionCrypto::new(&e.nwk_s_key.unwrap_or(none), &e.app_s_key.unwrap_or(none)),
            otaa,
            fcnt: 0,
            boots: 0,
            interval_s: 60,
            confirmed: false,
            fcnt_down: None,
            rx: e.rx_windows.over(region.rx_defaults()),
            mac: super::lmic_mac::MoteMac::new(false, region.max_adr_dr()),
            asks: Vec::new(),
            class_c: e.class == crate::devices::DeviceClass::C,
            ack_next: false,
        }
    }

    /// Deterministic readings for counter `fcnt`, at LPP resolution.
    pub fn sample(&self, fcnt: u32) -> Sample {
        let i = self.dev_eui.as_u64() & 0xff;
        let t = f64::from(fcnt % 200);
        Sample {
            temperature: 18.0 + (t * 0.1) + i as f64 * 0.1,
            humidity: 40.0 + f64::from(fcnt % 40) * 0.5,
            latitude: 51.5072 + i as f64 * 0.0001,
            longitude: -0.1276,
            altitude: 35.0 + f64::from(fcnt % 10),
            battery: 3.3 - f64::from(fcnt % 30) * 0.01,
        }
    }

    pub fn payload(&self, s: &Sample) -> Vec<u8> {
        let mut p = Vec::with_capacity(24);
        lpp::encode(&mut p, 1, 103, &[s.temperature]);
        lpp::encode(&mut p, 2, 104, &[s.humidity]);
        lpp::encode(&mut p, 3, 136, &[s.latitude, s.longitude, s.altitude]);
        lpp::encode(&mut p, 4, 116, &[s.battery]);
        p
    }

    /// The next uplink frame; advances the counter.
    pub fn next_frame(&mut self) -> (u32, Vec<u8>) {
        let fcnt = self.fcnt;
        let asks = std::mem::take(&mut self.asks);
        let (adr, adr_ack_req, fopts) = self.mac.uplink(&asks);
        let spec = encode::FrameSpec {
            dir: Direction::Up,
            confirmed: self.confirmed,
            dev_addr: self.dev_addr,
            fcnt,
            adr,
            ack: std::mem::take(&mut self.ack_next),
            fpending: false,
            adr_ack_req,
            fopts: &fopts,
            fport: Some(FPORT),
        };
        let frame = encode::build_frame(&self.crypto, &spec, &self.payload(&self.sample(fcnt)));
        self.fcnt += 1;
        self.mac.sent();
        (fcnt, frame)
    }

    /// Receive a downlink as LMIC does: check it, keep its counter, and
    /// apply an interval command (ignored, as the firmware ignores it, when
    /// its port, length or range is wrong).
    pub fn receive(
        &mut self,
        phy: &[u8],
        region: &crate::lorawan::region::Region,
    ) -> Result<(ReceivedDownlink, Vec<super::lmic_mac::Told>), DownlinkError> {
        let d = encode::open_downlink(&self.crypto, self.dev_addr, self.fcnt_down, phy)?;
        self.fcnt_down = Some(d.fcnt);
        self.ack_next |= d.confirmed;
        let macs = match d.fport {
            Some(0) => &d.payload,
            _ => &d.fopts,
        };
        let commands = crate::lorawan::mac::commands::read_down(macs);
        let battery = 1 + (self.dev_eui.as_u64() % 250) as u8;
        let told = self
            .mac
            .on_downlink(&commands, region, &mut self.rx, battery);
        if d.fport == Some(INTERVAL_PORT) && d.payload.len() == 2 {
            let v = u16::from_be_bytes([d.payload[0], d.payload[1]]);
            if (10..=3600).contains(&v) {
                self.interval_s = u32::from(v);
            }
        }
        Ok((d, told))
    }

    /// What LMIC does on power-up: with a hard-coded ABP session, start
    /// again at 0; an OTAA mote joins again.
    pub fn reboot(&mut self) {
        self.fcnt = 0;
        self.fcnt_down = None;
        match &mut self.otaa {
            Some(o) => {
                o.joined = false;
                o.waiting = None;
            }
            None => self.boots += 1,
        }
    }

    /// An OTAA mote without a session, not waiting for an answer (or given
    /// up on it after `patience`): it should send a JoinRequest.
    pub fn must_join(&self, now: std::time::Instant, patience: std::time::Duration) -> bool {
        self.otaa
            .as_ref()
            .is_some_and(|o| !o.joined && o.waiting.is_none_or(|(_, at)| now >= at + patience))
    }

    /// Waiting for a JoinAccept.
    pub fn joining(&self) -> bool {
        self.otaa.as_ref().is_some_and(|o| o.waiting.is_some())
    }

    /// The next JoinRequest (LMIC's `LMIC_startJoining`).
    pub fn join_request(&mut self, now: std::time::Instant) -> Vec<u8> {
        let o = self.otaa.as_mut().expect("an OTAA mote");
        let nonce = o.next_nonce;
        o.next_nonce = o.next_nonce.wrapping_add(1);
        o.waiting = Some((nonce, now));
        crate::lorawan::join::build_join_request(&o.app_key, o.join_eui, self.dev_eui, nonce)
    }

    /// Whether `phy` is a JoinAccept for this (joining) mote.
    pub fn can_open(&self, phy: &[u8]) -> bool {
        self.otaa.as_ref().is_some_and(|o| {
            o.waiting.is_some() && crate::lorawan::join::open_join_accept(&o.app_key, phy).is_some()
        })
    }

    /// Take a JoinAccept as LMIC does: decrypt, check the MIC, derive the
    /// session and start counting at 0, listening where it says. `false` if
    /// it is not for this mote.
    pub fn accept(&mut self, phy: &[u8], region: &crate::lorawan::region::Region) -> bool {
        let Some(o) = self.otaa.as_mut() else {
            return false;
        };
        let Some((nonce, _)) = o.waiting else {
            return false;
        };
        let Some(f) = crate::lorawan::join::open_join_accept(&o.app_key, phy) else {
            return false;
        };
        let (nwk, app) =
            crate::lorawan::join::session_keys(&o.app_key, f.join_nonce, f.net_id, nonce);
        o.waiting = None;
        o.joined = true;
        self.dev_addr = f.dev_addr;
        self.crypto = SessionCrypto::new(&nwk, &app);
        self.fcnt = 0;
        self.fcnt_down = None;
        self.boots += 1;
        self.rx.rx1_dr_offset = f.rx1_dr_offset;
        self.rx.rx1_delay = std::time::Duration::from_secs(u64::from(f.rx_delay.max(1)));
        if let Some(dr) = region.data_rate(f.rx2_dr) {
            self.rx.rx2_datr = dr;
        }
        true
    }
}
