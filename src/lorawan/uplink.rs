//! The uplink path as named steps, in the order the spec forces:
//! [`parse_uplink`](super::frame::parse_uplink) → [`verify_mic`] →
//! [`check_counter`] → [`decrypt`]. Each step returns a new type, so nothing
//! is decrypted before its MIC verified, and nothing is published before its
//! counter was judged.

use serde::Serialize;

use super::crypto::{Direction, SessionCrypto, MAX_PHY_PAYLOAD};
use super::fcnt::{candidates, judge, FcntPolicy, FcntState, Verdict};
use super::frame::DataFrame;

/// Why a well-formed data uplink was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum UplinkError {
    #[error("MIC does not verify with any plausible frame counter")]
    Mic,
    #[error("retransmission of frame {fcnt}")]
    Retransmission { fcnt: u32 },
    #[error("replayed frame counter {fcnt} (last accepted {last})")]
    Replay { fcnt: u32, last: u32 },
}

/// A frame whose MIC verified with the full counter `fcnt`.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated<'a> {
    pub frame: DataFrame<'a>,
    pub fcnt: u32,
}

/// A frame that is authentic and new: safe to decrypt and publish.
#[derive(Debug, Clone, Copy)]
pub struct Accepted<'a> {
    pub frame: DataFrame<'a>,
    pub fcnt: u32,
    /// The device's counter state once this frame is accepted.
    pub next: FcntState,
    /// The device restarted its counter to reach this frame.
    pub reset: bool,
}

/// Step 2: find the full counter under which the MIC verifies. Usually the
/// first candidate; older or reset counters cost one CMAC each.
pub fn verify_mic<'a>(
    frame: DataFrame<'a>,
    crypto: &SessionCrypto,
    state: &FcntState,
) -> Result<Authenticated<'a>, UplinkError> {
    let msg = frame.mic_input();
    candidates(state, frame.fcnt16)
        .as_slice()
        .iter()
        .find(|&&fcnt| crypto.mic_matches(Direction::Up, frame.dev_addr, fcnt, msg, &frame.mic))
        .map(|&fcnt| Authenticated { frame, fcnt })
        .ok_or(UplinkError::Mic)
}

/// Step 3: judge the verified counter against the device's history.
pub fn check_counter<'a>(
    auth: Authenticated<'a>,
    state: &FcntState,
    policy: FcntPolicy,
    reset_window: u32,
) -> Result<Accepted<'a>, UplinkError> {
    match judge(state, policy, auth.fcnt, reset_window) {
        Verdict::Fresh { fcnt, next, reset } => Ok(Accepted {
            frame: auth.frame,
            fcnt,
            next,
            reset,
        }),
        Verdict::Retransmission { fcnt } => Err(UplinkError::Retransmission { fcnt }),
        Verdict::Replay { fcnt, last } => Err(UplinkError::Replay { fcnt, last }),
    }
}

/// Buffer for a decrypted FRMPayload: on the stack, no allocation per frame.
pub type PayloadBuf = [u8; MAX_PHY_PAYLOAD];

/// Step 4: decrypt the FRMPayload into `out` and return the plaintext.
pub fn decrypt<'b>(
    acc: &Accepted<'_>,
    crypto: &SessionCrypto,
    out: &'b mut PayloadBuf,
) -> &'b [u8] {
    let data = acc.frame.frm_payload();
    let plain = &mut out[..data.len()];
    let fport = acc.frame.fport.unwrap_or(0);
    crypto.crypt_frm_payload(
        fport,
        Direction::Up,
        acc.frame.dev_addr,
        acc.fcnt,
        data,
        plain,
    );
    plain
}

/// An uplink MAC command, surfaced for logs and tags (never fatal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum MacCommand {
    DevStatusAns {
        battery: u8,
        margin: i8,
    },
    LinkCheckReq,
    DeviceTimeReq,
    /// Another known answer, by CID.
    Other {
        cid: u8,
    },
    /// Bytes that do not parse as commands (unknown CID or truncated).
    Unparsed {
        bytes: usize,
    },
}

/// Payload length of each uplink MAC command (LoRaWAN 1.0.4 §5), by CID.
fn uplink_payload_len(cid: u8) -> Option<usize> {
    Some(match cid {
        0x02 | 0x04 | 0x08 | 0x09 | 0x0d => 0, // LinkCheckReq, DutyCycleAns, RXTimingSetupAns, TXParamSetupAns, DeviceTimeReq
        0x03 | 0x05 | 0x07 | 0x0a => 1, // LinkADRAns, RXParamSetupAns, NewChannelAns, DlChannelAns
        0x06 => 2,                      // DevStatusAns
        _ => return None,
    })
}

/// MAC commands from FOpts, or from a decrypted FPort 0 payload.
///
/// Our own walk, bounds-checked at every step: `lorawan` 0.9's iterator
/// panics on a truncated command (it slices one byte past what it checked),
/// and these bytes come from the radio.
pub fn mac_commands(bytes: &[u8]) -> Vec<MacCommand> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let cid = bytes[at];
        let Some(body) = uplink_payload_len(cid).and_then(|n| bytes.get(at + 1..at + 1 + n)) else {
            out.push(MacCommand::Unparsed {
                bytes: bytes.len() - at,
            });
            break;
        };
        out.push(match cid {
            0x06 => MacCommand::DevStatusAns {
                battery: body[0],
                // 6-bit signed margin (1.0.4 §5.5).
                margin: ((body[1] << 2) as i8) >> 2,
            },
            0x02 => MacCommand::LinkCheckReq,
            0x0d => MacCommand::DeviceTimeReq,
            cid => MacCommand::Other { cid },
        });
        at += 1 + body.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_command_walk() {
        assert_eq!(
            mac_commands(&[0x06, 115, 7]),
            vec![MacCommand::DevStatusAns {
                battery: 115,
                margin: 7
            }]
        );
        assert_eq!(
            mac_commands(&[0x06, 255, 0x3f]),
            vec![MacCommand::DevStatusAns {
                battery: 255,
                margin: -1
            }]
        );
        assert_eq!(
            mac_commands(&[0x02, 0x03, 0x07, 0x0d]),
            vec![
                MacCommand::LinkCheckReq,
                MacCommand::Other { cid: 3 },
                MacCommand::DeviceTimeReq
            ]
        );
        // Truncated (the input that panics lorawan 0.9) and unknown CIDs.
        assert_eq!(
            mac_commands(&[0x06, 1]),
            vec![MacCommand::Unparsed { bytes: 2 }]
        );
        assert_eq!(
            mac_commands(&[0x02, 0x80, 1]),
            vec![MacCommand::LinkCheckReq, MacCommand::Unparsed { bytes: 2 }]
        );
        assert!(mac_commands(&[]).is_empty());
    }
}
