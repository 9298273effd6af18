//! Building data frames: downlinks for the service, uplinks for the
//! simulator, the benchmarks and tests; and reading a downlink the way a
//! mote does ([`open_downlink`]), so the simulator can apply commands.

use super::crypto::{Direction, SessionCrypto, MAX_PHY_PAYLOAD};
use super::keys::DevAddr;

/// The header fields of a data frame to build.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpec<'a> {
    pub dir: Direction,
    pub confirmed: bool,
    pub dev_addr: DevAddr,
    /// The full 32-bit counter: its low 16 bits go on air, all 32 into the MIC.
    pub fcnt: u32,
    pub adr: bool,
    pub ack: bool,
    /// Downlinks: more are queued for the device (FCtrl bit 4).
    pub fpending: bool,
    /// Uplinks: the device asks for a downlink (ADRACKReq, FCtrl bit 6).
    pub adr_ack_req: bool,
    /// Plaintext MAC commands, at most 15 bytes.
    pub fopts: &'a [u8],
    pub fport: Option<u8>,
}

/// Encrypt `payload`, add the MIC, and return the PHYPayload.
///
/// Panics if the frame would exceed 255 bytes or FOpts 15: callers build
/// frames from their own constants, never from input.
pub fn build_frame(crypto: &SessionCrypto, spec: &FrameSpec<'_>, payload: &[u8]) -> Vec<u8> {
    assert!(spec.fopts.len() <= 15, "FOpts holds at most 15 bytes");
    let mtype = match (spec.dir, spec.confirmed) {
        (Direction::Up, false) => 0x40,
        (Direction::Up, true) => 0x80,
        (Direction::Down, false) => 0x60,
        (Direction::Down, true) => 0xa0,
    };
    let mut out = Vec::with_capacity(13 + spec.fopts.len() + payload.len());
    out.push(mtype);
    out.extend_from_slice(&spec.dev_addr.to_wire());
    let fpending = spec.dir == Direction::Down && spec.fpending;
    let adr_ack_req = spec.dir == Direction::Up && spec.adr_ack_req;
    let fctrl = (u8::from(spec.adr) << 7)
        | (u8::from(adr_ack_req) << 6)
        | (u8::from(spec.ack) << 5)
        | (u8::from(fpending) << 4)
        | spec.fopts.len() as u8;
    out.push(fctrl);
    out.extend_from_slice(&(spec.fcnt as u16).to_le_bytes());
    out.extend_from_slice(spec.fopts);
    if let Some(port) = spec.fport {
        out.push(port);
        let start = out.len();
        out.resize(start + payload.len(), 0);
        crypto.crypt_frm_payload(
            port,
            spec.dir,
            spec.dev_addr,
            spec.fcnt,
            payload,
            &mut out[start..],
        );
    }
    let mic = crypto.data_mic(spec.dir, spec.dev_addr, spec.fcnt, &out);
    out.extend_from_slice(&mic);
    assert!(out.len() <= MAX_PHY_PAYLOAD, "PHYPayload over 255 bytes");
    out
}

/// An unconfirmed uplink with no FOpts: the common case.
pub fn uplink(
    crypto: &SessionCrypto,
    dev_addr: DevAddr,
    fcnt: u32,
    fport: u8,
    payload: &[u8],
) -> Vec<u8> {
    let spec = FrameSpec {
        dir: Direction::Up,
        confirmed: false,
        dev_addr,
        fcnt,
        adr: false,
        ack: false,
        fpending: false,
        adr_ack_req: false,
        fopts: &[],
        fport: Some(fport),
    };
    build_frame(crypto, &spec, payload)
}

/// A downlink as a mote reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedDownlink {
    /// The full 32-bit FCntDown.
    pub fcnt: u32,
    pub confirmed: bool,
    /// The network acknowledges the mote's last confirmed uplink.
    pub ack: bool,
    pub fpending: bool,
    pub fport: Option<u8>,
    /// The decrypted FRMPayload.
    pub payload: Vec<u8>,
    /// MAC commands in FOpts.
    pub fopts: Vec<u8>,
}

/// Why a mote drops a downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DownlinkError {
    #[error("not a data downlink")]
    NotDataDown,
    #[error("frame of {0} bytes is malformed")]
    Malformed(usize),
    #[error("addressed to another device")]
    OtherDevice,
    #[error("MIC mismatch")]
    Mic,
    #[error("frame counter {fcnt} is not above the last one, {last}")]
    Replay { fcnt: u32, last: u32 },
}

/// Check and decrypt a downlink addressed to `dev_addr`, given the last
/// FCntDown this mote accepted (`None` before the first): what LMIC does,
/// with the 16 bits on air extended to 32 by the last counter.
pub fn open_downlink(
    crypto: &SessionCrypto,
    dev_addr: DevAddr,
    last: Option<u32>,
    phy: &[u8],
) -> Result<ReceivedDownlink, DownlinkError> {
    let confirmed = match phy.first() {
        Some(0x60) => false,
        Some(0xa0) => true,
        _ => return Err(DownlinkError::NotDataDown),
    };
    let n = phy.len();
    if !(12..=MAX_PHY_PAYLOAD).contains(&n) {
        return Err(DownlinkError::Malformed(n));
    }
    let addr = DevAddr::from_wire(phy[1..5].try_into().expect("4 bytes"));
    if addr != dev_addr {
        return Err(DownlinkError::OtherDevice);
    }
    let fctrl = phy[5];
    let fopts_end = 8 + usize::from(fctrl & 0x0f);
    if fopts_end > n - 4 {
        return Err(DownlinkError::Malformed(n));
    }
    let low = u32::from(u16::from_le_bytes([phy[6], phy[7]]));
    let fcnt = match last {
        None => low,
        Some(l) if low >= l & 0xffff => (l & 0xffff_0000) | low,
        Some(l) => (l & 0xffff_0000).wrapping_add(0x1_0000) | low,
    };
    let mic: [u8; 4] = phy[n - 4..].try_into().expect("4 bytes");
    if !crypto.mic_matches(Direction::Down, dev_addr, fcnt, &phy[..n - 4], &mic) {
        return Err(DownlinkError::Mic);
    }
    if let Some(l) = last.filter(|l| fcnt <= *l) {
        return Err(DownlinkError::Replay { fcnt, last: l });
    }
    let (fport, payload) = if fopts_end < n - 4 {
        let port = phy[fopts_end];
        let data = &phy[fopts_end + 1..n - 4];
        let mut out = vec![0; data.len()];
        crypto.crypt_frm_payload(port, Direction::Down, dev_addr, fcnt, data, &mut out);
        (Some(port), out)
    } else {
        (None, Vec::new())
    };
    Ok(ReceivedDownlink {
        fcnt,
        confirmed,
        ack: fctrl & 0x20 != 0,
        fpending: fctrl & 0x10 != 0,
        fport,
        payload,
        fopts: phy[8..fopts_end].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lorawan::AesKey;

    fn spec(fcnt: u32, fport: Option<u8>) -> FrameSpec<'static> {
        FrameSpec {
            dir: Direction::Down,
            confirmed: false,
            dev_addr: DevAddr(0x2601_1234),
            fcnt,
            adr: false,
            ack: true,
            fpending: true,
            adr_ack_req: false,
            fopts: &[],
            fport,
        }
    }

    #[test]
    fn downlinks_open_like_a_mote_reads_them() {
        let k = AesKey::new([7; 16]);
        let c = SessionCrypto::new(&k, &AesKey::new([9; 16]));
        let addr = DevAddr(0x2601_1234);
        let phy = build_frame(&c, &spec(0x1_0005, Some(2)), &[0x01, 0x2c]);
        let got = open_downlink(&c, addr, Some(0x1_0004), &phy).unwrap();
        assert_eq!(
            got,
            ReceivedDownlink {
                fcnt: 0x1_0005,
                confirmed: false,
                ack: true,
                fpending: true,
                fport: Some(2),
                payload: vec![0x01, 0x2c],
                fopts: vec![],
            }
        );
        // The 16 bits on air roll over into the next 64 Ki.
        let phy2 = build_frame(&c, &spec(0x2_0001, None), &[]);
        assert_eq!(
            open_downlink(&c, addr, Some(0x1_fff0), &phy2).unwrap().fcnt,
            0x2_0001
        );
        assert_eq!(
            open_downlink(&c, addr, Some(0x1_0005), &phy),
            Err(DownlinkError::Replay {
                fcnt: 0x1_0005,
                last: 0x1_0005
            }),
        );
        let mut bad = phy.clone();
        bad[9] ^= 1;
        assert_eq!(open_downlink(&c, addr, None, &bad), Err(DownlinkError::Mic));
        assert_eq!(
            open_downlink(&c, DevAddr(1), None, &phy),
            Err(DownlinkError::OtherDevice)
        );
        assert_eq!(
            open_downlink(&c, addr, None, &phy[..5]),
            Err(DownlinkError::Malformed(5))
        );
        let up = uplink(&c, addr, 1, 1, &[1]);
        assert_eq!(
            open_downlink(&c, addr, None, &up),
            Err(DownlinkError::NotDataDown)
        );
    }
}
