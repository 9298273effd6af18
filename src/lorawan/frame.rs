//! PHYPayload framing: from raw bytes to a [`DataFrame`] whose every field
//! was bounds-checked once, here.
//!
//! The framing checks are the `lorawan` crate's (lora-rs, the maintained
//! successor of `lorawan-encoding`); we read its validated header into a
//! plain struct so that later steps are infallible accessors. We deliberately
//! do not use its crypto (it keys AES per call): see [`super::crypto`].

use lorawan::keys::{CryptoFactory, Decrypter, Encrypter, Mac, AES128};
use lorawan::parser::{DataHeader, EncryptedDataPayload, MType, MHDR};

use super::keys::DevAddr;

/// The block type `lorawan`'s crypto traits use (generic-array 0.14, shared with `aes`).
type Block = aes::cipher::generic_array::GenericArray<u8, aes::cipher::consts::U16>;

/// LoRaWAN header sizes (1.0.4 §4).
const MHDR_LEN: usize = 1;
const FHDR_MIN: usize = 7;
const MIC_LEN: usize = 4;

/// Why bytes are not a LoRaWAN 1.0.x data uplink.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum FrameError {
    #[error("frame of {0} bytes is too short for a data frame")]
    TooShort(usize),
    #[error("frame of {0} bytes exceeds the 255-byte PHYPayload maximum")]
    TooLong(usize),
    #[error("unsupported LoRaWAN major version")]
    UnsupportedMajor,
    #[error("not a data uplink (message type {0:?})")]
    NotDataUplink(MTypeName),
    #[error("FOpts length {0} overruns the frame")]
    FOptsOverrun(usize),
    #[error("MAC commands both in FOpts and in an FPort 0 payload")]
    FOptsWithPortZero,
}

/// Message type names for errors and counters (Copy, unlike `lorawan`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MTypeName {
    JoinRequest,
    JoinAccept,
    DataDown,
    Proprietary,
    Rfu,
}

/// A validated data uplink, borrowing the received bytes.
#[derive(Debug, Clone, Copy)]
pub struct DataFrame<'a> {
    bytes: &'a [u8],
    pub dev_addr: DevAddr,
    pub fctrl: u8,
    /// The 16 low bits of the frame counter, as sent.
    pub fcnt16: u16,
    pub confirmed: bool,
    pub fport: Option<u8>,
    fopts_end: usize,
    payload_start: usize,
    pub mic: [u8; 4],
}

impl<'a> DataFrame<'a> {
    /// MHDR..FRMPayload: what the MIC covers.
    pub fn mic_input(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len() - MIC_LEN]
    }
    /// The FOpts field (MAC commands piggy-backed in the header, plaintext in 1.0.x).
    pub fn fopts(&self) -> &'a [u8] {
        &self.bytes[MHDR_LEN + FHDR_MIN..self.fopts_end]
    }
    /// The encrypted FRMPayload (empty when absent).
    pub fn frm_payload(&self) -> &'a [u8] {
        &self.bytes[self.payload_start..self.bytes.len() - MIC_LEN]
    }
}

/// Parse `bytes` as a LoRaWAN 1.0.x data uplink.
pub fn parse_uplink(bytes: &[u8]) -> Result<DataFrame<'_>, FrameError> {
    if bytes.len() > super::crypto::MAX_PHY_PAYLOAD {
        return Err(FrameError::TooLong(bytes.len()));
    }
    if bytes.len() < MHDR_LEN + FHDR_MIN + MIC_LEN {
        return Err(FrameError::TooShort(bytes.len()));
    }
    let mhdr = MHDR::new(bytes[0]);
    if mhdr.major() != lorawan::parser::Major::LoRaWANR1 {
        return Err(FrameError::UnsupportedMajor);
    }
    let confirmed = match mhdr.mtype() {
        MType::UnconfirmedDataUp => false,
        MType::ConfirmedDataUp => true,
        MType::JoinRequest => return Err(FrameError::NotDataUplink(MTypeName::JoinRequest)),
        MType::JoinAccept => return Err(FrameError::NotDataUplink(MTypeName::JoinAccept)),
        MType::UnconfirmedDataDown | MType::ConfirmedDataDown => {
            return Err(FrameError::NotDataUplink(MTypeName::DataDown))
        }
        MType::Proprietary => return Err(FrameError::NotDataUplink(MTypeName::Proprietary)),
        MType::RFU => return Err(FrameError::NotDataUplink(MTypeName::Rfu)),
    };
    let fopts_len = usize::from(bytes[5] & 0x0f);
    let frame = EncryptedDataPayload::new_with_factory(bytes, NoSharedCrypto)
        .map_err(|_| FrameError::FOptsOverrun(fopts_len))?;
    let fhdr = frame.fhdr();
    let fopts_end = MHDR_LEN + FHDR_MIN + fopts_len;
    // `lorawan` reports no FPort when the FRMPayload is empty, but the spec
    // (and vector 6) allow an FPort with an empty payload: read it ourselves.
    let (fport, payload_start) = if fopts_end < bytes.len() - MIC_LEN {
        (Some(bytes[fopts_end]), fopts_end + 1)
    } else {
        (None, fopts_end)
    };
    if fport == Some(0) && fopts_len > 0 {
        return Err(FrameError::FOptsWithPortZero);
    }
    let n = bytes.len();
    Ok(DataFrame {
        bytes,
        dev_addr: DevAddr::from_wire(fhdr.dev_addr().as_ref().try_into().expect("4 bytes")),
        fctrl: fhdr.fctrl().raw_value(),
        fcnt16: fhdr.fcnt(),
        confirmed,
        fport,
        fopts_end,
        payload_start,
        mic: [bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]],
    })
}

/// `lorawan`'s parser is generic over a crypto factory; framing never calls
/// it. This one computes nothing and answers zeros, so a mistaken call can
/// only ever fail a MIC check, never accept one.
struct NoSharedCrypto;

struct Zero;
impl Encrypter for Zero {
    fn encrypt_block(&self, _: &mut Block) {}
}
impl Decrypter for Zero {
    fn decrypt_block(&self, _: &mut Block) {}
}
impl Mac for Zero {
    fn input(&mut self, _: &[u8]) {}
    fn reset(&mut self) {}
    fn result(self) -> Block {
        Default::default()
    }
}
impl CryptoFactory for NoSharedCrypto {
    type E = Zero;
    type D = Zero;
    type M = Zero;
    fn new_enc(&self, _: &AES128) -> Zero {
        Zero
    }
    fn new_dec(&self, _: &AES128) -> Zero {
        Zero
    }
    fn new_mac(&self, _: &AES128) -> Zero {
        Zero
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_long_and_non_data() {
        assert_eq!(
            parse_uplink(&[0x40; 5]).unwrap_err(),
            FrameError::TooShort(5)
        );
        assert_eq!(
            parse_uplink(&[0x40; 256]).unwrap_err(),
            FrameError::TooLong(256)
        );
        let join = [0u8; 23];
        assert_eq!(
            parse_uplink(&join).unwrap_err(),
            FrameError::NotDataUplink(MTypeName::JoinRequest)
        );
        let down = hex::decode("a00403020180ff2a2a0af1a36a05d0125f885d881d49e1").unwrap();
        assert_eq!(
            parse_uplink(&down).unwrap_err(),
            FrameError::NotDataUplink(MTypeName::DataDown)
        );
        let mut major =
            hex::decode("4004030201800100 01a694642615d6c3b582".replace(' ', "")).unwrap();
        major[0] |= 0x01;
        assert_eq!(
            parse_uplink(&major).unwrap_err(),
            FrameError::UnsupportedMajor
        );
    }

    #[test]
    fn fopts_that_overrun_are_rejected() {
        // FCtrl claims 15 bytes of FOpts in a 12-byte frame.
        let f = [0x40, 1, 2, 3, 4, 0x0f, 0, 0, 1, 2, 3, 4];
        assert!(matches!(
            parse_uplink(&f),
            Err(FrameError::FOptsOverrun(15))
        ));
    }

    #[test]
    fn reads_fport_of_an_empty_payload() {
        let f = hex::decode("40F17DBE49000300012A3518AF").unwrap();
        let frame = parse_uplink(&f).unwrap();
        assert_eq!(frame.fport, Some(1));
        assert!(frame.frm_payload().is_empty());
        assert_eq!(frame.fcnt16, 3);
    }
}
