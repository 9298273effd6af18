//! The uplink path as named steps, in the order the spec forces:
//! [`parse_uplink`](super::frame::parse_uplink) → [`verify_mic`] →
//! [`check_counter`] → [`Accepted::payload`]. Each step returns a new type,
//! so no plaintext is handed out before its MIC verified and its counter
//! was judged.
//!
//! The FRMPayload is decrypted during the MIC check, in the same AES pass
//! ([`SessionCrypto::mic_and_crypt`]): the keystream's blocks ride beside
//! the MIC's first block, so decryption costs no AES latency of its own.
//! The plaintext stays inside [`Authenticated`] and [`Accepted`] (private
//! fields) until [`Accepted::payload`] hands it out.

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

/// A frame whose MIC verified with the full counter `fcnt`, its
/// FRMPayload decrypted under that counter (not yet handed out).
#[derive(Debug, Clone, Copy)]
pub struct Authenticated<'a, 'b> {
    pub frame: DataFrame<'a>,
    pub fcnt: u32,
    plain: &'b [u8],
}

/// A frame that is authentic and new: safe to publish.
#[derive(Debug, Clone, Copy)]
pub struct Accepted<'a, 'b> {
    pub frame: DataFrame<'a>,
    pub fcnt: u32,
    /// The device's counter state once this frame is accepted.
    pub next: FcntState,
    /// The device restarted its counter to reach this frame.
    pub reset: bool,
    plain: &'b [u8],
}

impl<'b> Accepted<'_, 'b> {
    /// Step 4: the decrypted FRMPayload (FPort 0: MAC commands, under the
    /// NwkSKey; any other port: the application's payload, under the
    /// AppSKey; 1.0.4 §4.3.3). Empty when the frame carries none.
    pub fn payload(&self) -> &'b [u8] {
        self.plain
    }
}

/// Buffer for a decrypted FRMPayload: on the stack, no allocation per frame.
pub type PayloadBuf = [u8; MAX_PHY_PAYLOAD];

/// Step 2: find the full counter under which the MIC verifies, decrypting
/// the FRMPayload into `out` under the same counter in the same pass.
/// Usually the first candidate; older or reset counters cost one pass each.
pub fn verify_mic<'a, 'b>(
    frame: DataFrame<'a>,
    crypto: &SessionCrypto,
    state: &FcntState,
    out: &'b mut PayloadBuf,
) -> Result<Authenticated<'a, 'b>, UplinkError> {
    let msg = frame.mic_input();
    let data = frame.frm_payload();
    let fport = frame.fport.unwrap_or(0);
    for &fcnt in candidates(state, frame.fcnt16).as_slice() {
        if crypto.mic_and_crypt(
            Direction::Up,
            frame.dev_addr,
            fcnt,
            msg,
            &frame.mic,
            fport,
            data,
            &mut out[..],
        ) {
            return Ok(Authenticated {
                frame,
                fcnt,
                plain: &out[..data.len()],
            });
        }
    }
    Err(UplinkError::Mic)
}

/// Step 3: judge the verified counter against the device's history.
pub fn check_counter<'a, 'b>(
    auth: Authenticated<'a, 'b>,
    state: &FcntState,
    policy: FcntPolicy,
    reset_window: u32,
) -> Result<Accepted<'a, 'b>, UplinkError> {
    match judge(state, policy, auth.fcnt, reset_window) {
        Verdict::Fresh { fcnt, next, reset } => Ok(Accepted {
            frame: auth.frame,
            fcnt,
            next,
            reset,
            plain: auth.plain,
        }),
        Verdict::Retransmission { fcnt } => Err(UplinkError::Retransmission { fcnt }),
        Verdict::Replay { fcnt, last } => Err(UplinkError::Replay { fcnt, last }),
    }
}

pub use super::mac::commands::{mac_commands, MacCommand};
