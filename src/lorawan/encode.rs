//! Building data frames: what a mote does. Used by the simulator, the
//! benchmarks and tests; the service itself only ever decodes uplinks.

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
    let fctrl = (u8::from(spec.adr) << 7) | (u8::from(spec.ack) << 5) | spec.fopts.len() as u8;
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
        fopts: &[],
        fport: Some(fport),
    };
    build_frame(crypto, &spec, payload)
}
