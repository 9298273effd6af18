//! LoRaWAN 1.0.x cryptography: the data-frame MIC (AES-CMAC over B0 | msg)
//! and the FRMPayload keystream (AES over the Ai blocks), LoRaWAN 1.0.4 §4.3.3
//! and §4.4.
//!
//! [`SessionCrypto`] expands both key schedules once per session: the hot path
//! clones a prepared CMAC state and never re-derives subkeys, which is where
//! most of the margin over keying AES per frame comes from.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128Enc;
use cmac::{Cmac, Mac};
use subtle::ConstantTimeEq;

use super::keys::{AesKey, DevAddr};

/// Largest PHYPayload we accept (LoRaWAN regional maxima are ≤ 255 bytes).
pub const MAX_PHY_PAYLOAD: usize = 255;
const MAX_BLOCKS: usize = MAX_PHY_PAYLOAD.div_ceil(16);

/// Direction bit of B0 and Ai.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up = 0,
    Down = 1,
}

/// Prepared ciphers for one ABP session. Building it costs two key
/// expansions and a CMAC subkey derivation; verifying a frame costs neither.
#[derive(Clone)]
pub struct SessionCrypto {
    mic: Cmac<Aes128Enc>,
    nwk_enc: Aes128Enc,
    app_enc: Aes128Enc,
}

impl std::fmt::Debug for SessionCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCrypto(<redacted>)")
    }
}

impl SessionCrypto {
    pub fn new(nwk_s_key: &AesKey, app_s_key: &AesKey) -> Self {
        let nwk = GenericArray::from_slice(nwk_s_key.expose());
        let app = GenericArray::from_slice(app_s_key.expose());
        Self {
            mic: <Cmac<Aes128Enc> as KeyInit>::new(nwk),
            nwk_enc: Aes128Enc::new(nwk),
            app_enc: Aes128Enc::new(app),
        }
    }

    /// MIC of a data frame: the first four bytes of
    /// AES-CMAC(NwkSKey, B0 | MHDR..FRMPayload), B0 carrying the full 32-bit
    /// counter (1.0.4 §4.4).
    pub fn data_mic(&self, dir: Direction, addr: DevAddr, fcnt: u32, msg: &[u8]) -> [u8; 4] {
        let mut b0 = [0u8; 16];
        b0[0] = 0x49;
        b0[5] = dir as u8;
        b0[6..10].copy_from_slice(&addr.to_wire());
        b0[10..14].copy_from_slice(&fcnt.to_le_bytes());
        b0[15] = msg.len() as u8;
        let mut mac = self.mic.clone();
        mac.update(&b0);
        mac.update(msg);
        let tag = mac.finalize().into_bytes();
        [tag[0], tag[1], tag[2], tag[3]]
    }

    /// Whether `mic` is the MIC of `msg` under this session, compared in
    /// constant time.
    pub fn mic_matches(
        &self,
        dir: Direction,
        addr: DevAddr,
        fcnt: u32,
        msg: &[u8],
        mic: &[u8; 4],
    ) -> bool {
        self.data_mic(dir, addr, fcnt, msg).ct_eq(mic).into()
    }

    /// XOR `data` with the FRMPayload keystream into `out` (encryption and
    /// decryption are the same operation). FPort 0 uses the NwkSKey, any other
    /// port the AppSKey (1.0.4 §4.3.3). `out` must be at least `data.len()`.
    pub fn crypt_frm_payload(
        &self,
        fport: u8,
        dir: Direction,
        addr: DevAddr,
        fcnt: u32,
        data: &[u8],
        out: &mut [u8],
    ) {
        let cipher = if fport == 0 {
            &self.nwk_enc
        } else {
            &self.app_enc
        };
        let n = data.len().div_ceil(16).min(MAX_BLOCKS);
        let mut blocks = [GenericArray::<u8, aes::cipher::consts::U16>::default(); MAX_BLOCKS];
        for (i, a) in blocks[..n].iter_mut().enumerate() {
            a[0] = 0x01;
            a[5] = dir as u8;
            a[6..10].copy_from_slice(&addr.to_wire());
            a[10..14].copy_from_slice(&fcnt.to_le_bytes());
            a[15] = (i + 1) as u8;
        }
        // One call lets AES-NI pipeline all the keystream blocks.
        cipher.encrypt_blocks(&mut blocks[..n]);
        for (i, (o, d)) in out.iter_mut().zip(data).enumerate() {
            *o = d ^ blocks[i / 16][i % 16];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4493 example 2: AES-CMAC of a 16-byte message.
    #[test]
    fn cmac_matches_rfc4493() {
        let key = AesKey::from_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let mut mac = <Cmac<Aes128Enc> as KeyInit>::new(GenericArray::from_slice(key.expose()));
        mac.update(&hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap());
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "070a16b46b4d4144f79bdd9dd04a287c"
        );
    }

    #[test]
    fn keystream_is_its_own_inverse() {
        let s = SessionCrypto::new(&AesKey::new([2; 16]), &AesKey::new([1; 16]));
        let plain: Vec<u8> = (0..200u8).collect();
        let mut enc = vec![0; plain.len()];
        let mut dec = vec![0; plain.len()];
        s.crypt_frm_payload(5, Direction::Up, DevAddr(7), 99, &plain, &mut enc);
        assert_ne!(enc, plain);
        s.crypt_frm_payload(5, Direction::Up, DevAddr(7), 99, &enc, &mut dec);
        assert_eq!(dec, plain);
    }
}
