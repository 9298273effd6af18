//! The LNS protocol's messages, pure: a station's upstream JSON (`version`,
//! `updf`, `jreq`, `propdf`, `dntxed`, `timesync`) read into typed values,
//! an uplink's exact PHYPayload rebuilt from its fields (Station sends
//! `DevAddr` and `MIC` as signed 32-bit integers), and the downstream
//! `dnmsg` and `timesync` written.

use serde::Deserialize;

use crate::lorawan::region::Region;
use crate::lorawan::Eui64;
use crate::pipeline::uplink::RxMeta;

/// Why a station's message was refused (the connection stays up).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("invalid {field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

impl MessageError {
    fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self::Field {
            field,
            message: message.into(),
        }
    }
}

/// Radio metadata of one reception (`upinfo`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct UpInfo {
    #[serde(default)]
    pub rctx: i64,
    pub xtime: i64,
    /// µs since the GPS epoch; 0 without GPS. A station with PPS but no
    /// fix sends µs since the last PPS pulse here: see `mac::state::device_time`.
    #[serde(default)]
    pub gpstime: i64,
    #[serde(default)]
    pub rssi: f64,
    #[serde(default)]
    pub snr: f64,
    /// The station's wall clock at reception (Unix s).
    #[serde(default)]
    pub rxtime: f64,
}

#[derive(Debug, Deserialize)]
#[allow(non_snake_case)]
struct Updf {
    MHdr: u8,
    DevAddr: i64,
    FCtrl: u8,
    FCnt: u32,
    #[serde(default)]
    FOpts: String,
    FPort: i32,
    #[serde(default)]
    FRMPayload: String,
    MIC: i64,
    DR: u8,
    Freq: u32,
    upinfo: UpInfo,
}

#[derive(Debug, Deserialize)]
#[allow(non_snake_case)]
struct Jreq {
    MHdr: u8,
    #[serde(alias = "AppEui")]
    JoinEui: serde_json::Value,
    DevEui: serde_json::Value,
    DevNonce: u32,
    MIC: i64,
    DR: u8,
    Freq: u32,
    upinfo: UpInfo,
}

/// A station sends both `diid` (the id we gave the `dnmsg`) and the
/// older `seqno` (the same number, kept for old servers): `diid` wins.
#[derive(Debug, Deserialize)]
struct Dntxed {
    #[serde(default)]
    diid: Option<i64>,
    #[serde(default)]
    seqno: Option<i64>,
}

/// `txtime` is the station's monotonic µs clock (`ustime`), an integer;
/// it must come back as an integer (the station's parser refuses a float).
#[derive(Debug, Deserialize)]
struct Timesync {
    txtime: serde_json::Number,
}

/// A station's message, read.
#[derive(Debug, PartialEq)]
pub enum Upstream {
    Version {
        station: String,
        protocol: i64,
    },
    /// A data or join frame: its exact PHYPayload and reception.
    Frame {
        phy: Vec<u8>,
        rx: RxMeta,
    },
    Proprietary,
    TxConfirmed {
        diid: i64,
    },
    Timesync {
        txtime: i64,
    },
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    msgtype: std::borrow::Cow<'a, str>,
}

/// Read one text message of gateway `gateway`, mapping DR and frequency
/// through `region`.
pub fn parse(text: &str, gateway: Eui64, region: &Region) -> Result<Upstream, MessageError> {
    let json = |e: serde_json::Error| MessageError::Json(e.to_string());
    let peek: Peek = serde_json::from_str(text).map_err(json)?;
    Ok(match peek.msgtype.as_ref() {
        "version" => {
            let v: serde_json::Value = serde_json::from_str(text).map_err(json)?;
            Upstream::Version {
                station: v["station"].as_str().unwrap_or("").to_string(),
                protocol: v["protocol"].as_i64().unwrap_or(0),
            }
        }
        "updf" => {
            let u: Updf = serde_json::from_str(text).map_err(json)?;
            Upstream::Frame {
                phy: updf_phy(&u)?,
                rx: rx_meta(gateway, u.DR, u.Freq, &u.upinfo, region)?,
            }
        }
        "jreq" => {
            let j: Jreq = serde_json::from_str(text).map_err(json)?;
            Upstream::Frame {
                phy: jreq_phy(&j)?,
                rx: rx_meta(gateway, j.DR, j.Freq, &j.upinfo, region)?,
            }
        }
        "propdf" => Upstream::Proprietary,
        "dntxed" => {
            let d: Dntxed = serde_json::from_str(text).map_err(json)?;
            let diid = d
                .diid
                .or(d.seqno)
                .ok_or_else(|| MessageError::field("diid", "neither diid nor seqno"))?;
            Upstream::TxConfirmed { diid }
        }
        "timesync" => {
            let t: Timesync = serde_json::from_str(text).map_err(json)?;
            // Stations send an integer; a float from another peer is
            // taken to the µs below, so the answer is always an integer.
            let txtime = t
                .txtime
                .as_i64()
                .or_else(|| {
                    t.txtime
                        .as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f as i64)
                })
                .ok_or_else(|| MessageError::field("txtime", "not a 64-bit integer"))?;
            Upstream::Timesync { txtime }
        }
        other => return Err(MessageError::UnknownType(other.chars().take(32).collect())),
    })
}

/// A 32-bit field Station writes as a signed integer (or, from others, unsigned).
fn u32_of(v: i64, field: &'static str) -> Result<u32, MessageError> {
    if (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&v) {
        Ok(v as u32)
    } else {
        Err(MessageError::field(
            field,
            format!("{v} is not a 32-bit value"),
        ))
    }
}

fn hex_field(text: &str, field: &'static str) -> Result<Vec<u8>, MessageError> {
    hex::decode(text).map_err(|_| MessageError::field(field, "not hex"))
}

/// MHDR | DevAddr | FCtrl | FCnt | FOpts | FPort | FRMPayload | MIC, as on air.
fn updf_phy(u: &Updf) -> Result<Vec<u8>, MessageError> {
    let fopts = hex_field(&u.FOpts, "FOpts")?;
    let payload = hex_field(&u.FRMPayload, "FRMPayload")?;
    if fopts.len() != usize::from(u.FCtrl & 0x0f) {
        return Err(MessageError::field(
            "FOpts",
            format!("{} bytes where FCtrl says {}", fopts.len(), u.FCtrl & 0x0f),
        ));
    }
    let fcnt = u16::try_from(u.FCnt)
        .map_err(|_| MessageError::field("FCnt", format!("{} exceeds 16 bits", u.FCnt)))?;
    let port = match u.FPort {
        -1 if payload.is_empty() => None,
        p @ 0..=255 => Some(p as u8),
        p => {
            return Err(MessageError::field(
                "FPort",
                format!("{p} with {} payload bytes", payload.len()),
            ))
        }
    };
    let mut phy = Vec::with_capacity(13 + fopts.len() + payload.len());
    phy.push(u.MHdr);
    phy.extend_from_slice(&u32_of(u.DevAddr, "DevAddr")?.to_le_bytes());
    phy.push(u.FCtrl);
    phy.extend_from_slice(&fcnt.to_le_bytes());
    phy.extend_from_slice(&fopts);
    phy.extend(port);
    phy.extend_from_slice(&payload);
    phy.extend_from_slice(&u32_of(u.MIC, "MIC")?.to_le_bytes());
    if phy.len() > 255 {
        return Err(MessageError::field(
            "FRMPayload",
            "the frame exceeds 255 bytes",
        ));
    }
    Ok(phy)
}

/// MHDR | JoinEUI | DevEUI | DevNonce | MIC (EUIs little-endian on air).
fn jreq_phy(j: &Jreq) -> Result<Vec<u8>, MessageError> {
    let join = eui_of(&j.JoinEui).ok_or_else(|| MessageError::field("JoinEui", "not an EUI"))?;
    let dev = eui_of(&j.DevEui).ok_or_else(|| MessageError::field("DevEui", "not an EUI"))?;
    let nonce = u16::try_from(j.DevNonce)
        .map_err(|_| MessageError::field("DevNonce", format!("{} exceeds 16 bits", j.DevNonce)))?;
    let mut phy = Vec::with_capacity(23);
    phy.push(j.MHdr);
    phy.extend(join.0.iter().rev());
    phy.extend(dev.0.iter().rev());
    phy.extend_from_slice(&nonce.to_le_bytes());
    phy.extend_from_slice(&u32_of(j.MIC, "MIC")?.to_le_bytes());
    Ok(phy)
}

fn rx_meta(
    gateway: Eui64,
    dr: u8,
    freq: u32,
    up: &UpInfo,
    region: &Region,
) -> Result<RxMeta, MessageError> {
    let datr = region.data_rate(dr).ok_or_else(|| {
        MessageError::field(
            "DR",
            format!("DR{dr} is not a LoRa rate of {}", region.name()),
        )
    })?;
    Ok(RxMeta {
        gateway,
        rssi: up.rssi as i32,
        snr: up.snr as f32,
        // The low 32 bits of xtime count µs like a concentrator's tmst.
        tmst: Some(up.xtime as u32),
        frequency: Some(freq),
        datr: Some(datr),
        time_ns: (up.rxtime.is_finite() && up.rxtime > 0.0).then_some((up.rxtime * 1e9) as i64),
        gps_time_ns: (up.gpstime > 0).then(|| up.gpstime as u64 * 1000),
        station: Some(crate::pipeline::uplink::StationCtx {
            xtime: up.xtime,
            rctx: up.rctx,
        }),
    })
}

/// An EUI as Station and its LNS peers write one: `"00-00-…"`,
/// `"00:00:…"`, 16 hex digits, an ID6 (`"b827:ebff:fe00:1"`, `"::1"`), or a number.
pub fn eui_of(v: &serde_json::Value) -> Option<Eui64> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_i64().map(|i| i as u64))
            .map(Eui64::from_u64),
        serde_json::Value::String(s) => eui_of_text(s),
        _ => None,
    }
}

/// [`eui_of`] for text.
pub fn eui_of_text(s: &str) -> Option<Eui64> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Eui64::from_hex(&hex).ok();
    }
    let bytes: Vec<&str> = s.split(':').collect();
    if bytes.len() == 8 && bytes.iter().all(|b| b.len() == 2) {
        return Eui64::from_hex(&bytes.concat()).ok();
    }
    // ID6: four 16-bit groups, `::` standing for the zero groups left out.
    let groups = |part: &str| -> Option<Vec<u16>> {
        if part.is_empty() {
            return Some(Vec::new());
        }
        part.split(':')
            .map(|g| {
                (g.len() <= 4)
                    .then(|| u16::from_str_radix(g, 16).ok())
                    .flatten()
            })
            .collect()
    };
    let words = match s.split_once("::") {
        Some((l, r)) => {
            let (l, r) = (groups(l)?, groups(r)?);
            if l.len() + r.len() > 3 {
                return None;
            }
            let mut w = l;
            w.resize(4 - r.len(), 0);
            w.extend(r);
            w
        }
        None => groups(s).filter(|w| w.len() == 4)?,
    };
    Some(Eui64::from_u64(
        words.iter().fold(0u64, |acc, w| acc << 16 | u64::from(*w)),
    ))
}

/// An EUI as Station writes one.
pub fn eui_text(e: Eui64) -> String {
    e.0.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join("-")
}

/// The `updf` or `jreq` a station sends for `phy` heard as `rx` (the
/// simulator's Station gateways): the frame split as Station's lora.c does.
/// `None` for bytes no station would forward.
pub fn upstream(phy: &[u8], rx: &RxMeta, region: &Region) -> Option<String> {
    let dr = region.dr_index(rx.datr?, true)?;
    let ctx = rx.station.unwrap_or(crate::pipeline::uplink::StationCtx {
        xtime: i64::from(rx.tmst.unwrap_or(0)),
        rctx: 0,
    });
    // Without a GPS fix, what station 2.0.6 with PPS sends (see
    // tests/peers/recorded/): µs that are not GPS time.
    let gpstime = rx
        .gps_time_ns
        .map_or(1_000_000 + (mux_time().fract() * 1e6) as u64, |n| n / 1000);
    let info = serde_json::json!({
        "rctx": ctx.rctx, "xtime": ctx.xtime, "gpstime": gpstime,
        "fts": -1, "rssi": rx.rssi, "snr": rx.snr, "rxtime": mux_time(),
    });
    let n = phy.len();
    let i32_at = |at: usize| i32::from_le_bytes([phy[at], phy[at + 1], phy[at + 2], phy[at + 3]]);
    let m = match phy.first()? >> 5 {
        0 if n == 23 => {
            let eui = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&phy[at..at + 8]);
                b.reverse();
                eui_text(Eui64(b))
            };
            serde_json::json!({
                "msgtype": "jreq", "MHdr": phy[0], "JoinEui": eui(1), "DevEui": eui(9),
                "DevNonce": u16::from_le_bytes([phy[17], phy[18]]), "MIC": i32_at(19),
            })
        }
        2 | 4 if n >= 12 => {
            let port_at = 8 + usize::from(phy[5] & 0x0f);
            if port_at > n - 4 {
                return None;
            }
            let (port, payload) = match port_at < n - 4 {
                true => (i32::from(phy[port_at]), &phy[port_at + 1..n - 4]),
                false => (-1, &[][..]),
            };
            serde_json::json!({
                "msgtype": "updf", "MHdr": phy[0], "DevAddr": i32_at(1), "FCtrl": phy[5],
                "FCnt": u16::from_le_bytes([phy[6], phy[7]]), "FOpts": hex::encode(&phy[8..port_at]),
                "FPort": port, "FRMPayload": hex::encode(payload), "MIC": i32_at(n - 4),
            })
        }
        _ => return None,
    };
    let mut m = m;
    m["DR"] = dr.into();
    m["Freq"] = rx.frequency.unwrap_or(0).into();
    m["RefTime"] = 0.0.into();
    m["upinfo"] = info;
    Some(m.to_string())
}

/// Unix seconds now, as `MuxTime`.
pub fn mux_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A downlink as `dnmsg`: class A (`dC` 0) with the uplink's `xtime` and
/// both windows, or class C (`dC` 2, `req.immediately`): no `xtime`, RX2
/// only, which the station sends as soon as it can.
pub fn dnmsg(req: &crate::downlink::TxRequest, s: &crate::downlink::StationTx) -> String {
    if req.immediately {
        return serde_json::json!({
            "msgtype": "dnmsg",
            "DevEui": eui_text(s.dev_eui),
            "dC": 2,
            "diid": req.id,
            "pdu": hex::encode(&req.phy),
            "RxDelay": 0,
            "RX2DR": s.rx2.0,
            "RX2Freq": s.rx2.1,
            "priority": 0,
            "rctx": s.rctx,
            "MuxTime": mux_time(),
        })
        .to_string();
    }
    let mut m = serde_json::json!({
        "msgtype": "dnmsg",
        "DevEui": eui_text(s.dev_eui),
        "dC": 0,
        "diid": req.id,
        "pdu": hex::encode(&req.phy),
        "RxDelay": s.rx_delay,
        "RX2DR": s.rx2.0,
        "RX2Freq": s.rx2.1,
        "priority": 0,
        "xtime": s.xtime,
        "rctx": s.rctx,
        "MuxTime": mux_time(),
    });
    if let Some((dr, freq)) = s.rx1 {
        m["RX1DR"] = dr.into();
        m["RX1Freq"] = freq.into();
    }
    m.to_string()
}

/// The answer to a station's `timesync`: our GPS time in µs, with the
/// station's `txtime` echoed as the integer it sent.
pub fn timesync(txtime: i64) -> String {
    let gps_us = crate::lorawan::mac::state::gps_from_unix_ns(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    ) / 1000;
    serde_json::json!({
        "msgtype": "timesync",
        "txtime": txtime,
        "gpstime": gps_us,
        "MuxTime": mux_time(),
    })
    .to_string()
}

#[cfg(test)]
mod tests;
