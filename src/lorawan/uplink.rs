//! The uplink path as named steps, in the order the spec forces:
//! [`parse_uplink`](super::frame::parse_uplink) → [`verify_mic`] →
//! [`check_counter`] → [`decrypt`]. Each step returns a new type, so nothing
//! is decrypted before its MIC verified, and nothing is published before its
//! counter was judged.

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

pub use super::mac::commands::{mac_commands, MacCommand};
