//! LoRaWAN 1.0.x cryptography: the data-frame MIC (AES-CMAC over B0 | msg)
//! and the FRMPayload keystream (AES over the Ai blocks), LoRaWAN 1.0.4 §4.3.3
//! and §4.4.
//!
//! [`SessionCrypto`] expands both key schedules and derives the CMAC subkeys
//! (RFC 4493 K1, K2) once per session. The per-frame MIC is then a chain of
//! single-block AES calls on a stack block: no key expansion, no cloned MAC
//! state, no buffering. At session setup the result is cross-checked against
//! the `cmac` crate, so a mistake here cannot go unnoticed.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128Enc;
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
type Block = GenericArray<u8, aes::cipher::consts::U16>;

#[derive(Clone)]
pub struct SessionCrypto {
    nwk_enc: Aes128Enc,
    app_enc: Aes128Enc,
    /// CMAC subkeys of the NwkSKey: K1 for a complete last block, K2 for a padded one.
    k1: [u8; 16],
    k2: [u8; 16],
}

/// RFC 4493 §2.3: double in GF(2^128).
fn dbl(b: [u8; 16]) -> [u8; 16] {
    let v = u128::from_be_bytes(b);
    let r = (v << 1) ^ if v >> 127 == 1 { 0x87 } else { 0 };
    r.to_be_bytes()
}

impl std::fmt::Debug for SessionCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCrypto(<redacted>)")
    }
}

impl SessionCrypto {
    pub fn new(nwk_s_key: &AesKey, app_s_key: &AesKey) -> Self {
        let nwk_enc = Aes128Enc::new(GenericArray::from_slice(nwk_s_key.expose()));
        let mut l = Block::default();
        nwk_enc.encrypt_block(&mut l);
        let k1 = dbl(l.into());
        let s = Self {
            nwk_enc,
            app_enc: Aes128Enc::new(GenericArray::from_slice(app_s_key.expose())),
            k1,
            k2: dbl(k1),
        };
        s.self_test(nwk_s_key);
        s
    }

    /// Our CMAC must equal the `cmac` crate's, for a complete and a padded
    /// last block. A failure is a bug in this file: stop rather than accept
    /// or reject frames wrongly.
    fn self_test(&self, nwk_s_key: &AesKey) {
        use cmac::Mac;
        for len in [32usize, 45] {
            let msg: Vec<u8> = (0..len as u8).collect();
            let mut reference = <cmac::Cmac<Aes128Enc> as KeyInit>::new(GenericArray::from_slice(
                nwk_s_key.expose(),
            ));
            reference.update(&msg);
            let want = reference.finalize().into_bytes();
            assert_eq!(
                self.cmac(&msg[..16], &msg[16..]),
                want[..],
                "CMAC self-test"
            );
        }
    }

    /// AES-CMAC(NwkSKey, first | rest), `first` being one whole block.
    /// The XORs are whole 128-bit words (a padded last block is built once
    /// on the stack), so a block costs its AES call and little else.
    fn cmac(&self, first: &[u8], rest: &[u8]) -> [u8; 16] {
        let word = |b: &[u8]| u128::from_ne_bytes(b.try_into().expect("16 bytes"));
        let mut x = Block::clone_from_slice(first);
        let (full, last) = match rest.len() {
            0 => (&rest[..0], None),
            n if n % 16 == 0 => (&rest[..n - 16], Some(&rest[n - 16..])),
            n => (&rest[..n - n % 16], Some(&rest[n - n % 16..])),
        };
        let Some(last) = last else {
            // B0 alone is the (complete) last block.
            let v = word(&x) ^ word(&self.k1);
            x.copy_from_slice(&v.to_ne_bytes());
            self.nwk_enc.encrypt_block(&mut x);
            return x.into();
        };
        self.nwk_enc.encrypt_block(&mut x);
        for chunk in full.chunks_exact(16) {
            let v = word(&x) ^ word(chunk);
            x.copy_from_slice(&v.to_ne_bytes());
            self.nwk_enc.encrypt_block(&mut x);
        }
        let mut padded = [0u8; 16];
        padded[..last.len()].copy_from_slice(last);
        let subkey = if last.len() == 16 {
            &self.k1
        } else {
            padded[last.len()] = 0x80;
            &self.k2
        };
        let v = word(&x) ^ word(&padded) ^ word(subkey);
        x.copy_from_slice(&v.to_ne_bytes());
        self.nwk_enc.encrypt_block(&mut x);
        x.into()
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
        let tag = self.cmac(&b0, msg);
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
        let mut a = [0u8; 16];
        a[0] = 0x01;
        a[5] = dir as u8;
        a[6..10].copy_from_slice(&addr.to_wire());
        a[10..14].copy_from_slice(&fcnt.to_le_bytes());
        let mut blocks = [Block::default(); MAX_BLOCKS];
        for (i, b) in blocks[..n].iter_mut().enumerate() {
            a[15] = (i + 1) as u8;
            b.copy_from_slice(&a);
        }
        // One call lets AES-NI pipeline all the keystream blocks.
        cipher.encrypt_blocks(&mut blocks[..n]);
        let out = &mut out[..data.len()];
        let (whole, tail) = data.split_at(data.len() - data.len() % 16);
        for ((o, d), k) in out
            .chunks_exact_mut(16)
            .zip(whole.chunks_exact(16))
            .zip(&blocks)
        {
            let v = u128::from_ne_bytes(d.try_into().expect("16"))
                ^ u128::from_ne_bytes(k.as_slice().try_into().expect("16"));
            o.copy_from_slice(&v.to_ne_bytes());
        }
        let k = &blocks[whole.len() / 16];
        for (i, (o, d)) in out[whole.len()..].iter_mut().zip(tail).enumerate() {
            *o = d ^ k[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4493 §4 examples 2–4 (16, 40 and 64-byte messages).
    #[test]
    fn cmac_matches_rfc4493() {
        let key = AesKey::from_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let s = SessionCrypto::new(&key, &key);
        let m = hex::decode(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        )
        .unwrap();
        assert_eq!(
            hex::encode(s.cmac(&m[..16], &[])),
            "070a16b46b4d4144f79bdd9dd04a287c"
        );
        assert_eq!(
            hex::encode(s.cmac(&m[..16], &m[16..40])),
            "dfa66747de9ae63030ca32611497c827"
        );
        assert_eq!(
            hex::encode(s.cmac(&m[..16], &m[16..])),
            "51f0bebf7e3b9d92fc49741779363cfe"
        );
    }

    /// Frames we build are read by the `lorawan` crate's own MIC check and
    /// decryption (its default crypto) at every payload length, and ours
    /// reads them back: the keystream's whole words and its tail agree.
    #[test]
    fn frames_match_the_lorawan_crate_at_every_length() {
        let nwk = AesKey::from_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let app = AesKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        let s = SessionCrypto::new(&nwk, &app);
        let addr = DevAddr::from_wire([1, 2, 3, 4]);
        for len in 0..=200usize {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut frame = super::super::encode::uplink(&s, addr, 70_000 + len as u32, 5, &plain);
            let mut out = [0u8; MAX_PHY_PAYLOAD];
            let f = super::super::parse_uplink(&frame).unwrap();
            let state = super::super::FcntState {
                last: Some(70_000 + len as u32 - 1),
                epoch: 0,
            };
            let auth = super::super::verify_mic(f, &s, &state).unwrap();
            let acc = super::super::check_counter(
                auth,
                &state,
                super::super::FcntPolicy::ResetTolerant,
                32,
            )
            .unwrap();
            assert_eq!(
                super::super::decrypt(&acc, &s, &mut out),
                &plain[..],
                "ours, length {len}"
            );
            let Ok(::lorawan::parser::PhyPayload::Data(::lorawan::parser::DataPayload::Encrypted(
                e,
            ))) = ::lorawan::parser::parse(&mut frame[..])
            else {
                panic!("lorawan parse, length {len}")
            };
            let d = e
                .decrypt_if_mic_ok(
                    &::lorawan::keys::AES128(*nwk.expose()),
                    &::lorawan::keys::AES128(*app.expose()),
                    70_000 + len as u32,
                )
                .unwrap_or_else(|_| panic!("lorawan MIC, length {len}"));
            let got = match d.frm_payload() {
                ::lorawan::parser::FRMPayload::Data(p) => p.to_vec(),
                ::lorawan::parser::FRMPayload::None => Vec::new(),
                _ => panic!("length {len}: not data"),
            };
            assert_eq!(got, plain, "lorawan, length {len}");
        }
    }

    #[test]
    fn cmac_matches_the_cmac_crate_at_every_length() {
        use cmac::Mac;
        let key = AesKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        let s = SessionCrypto::new(&key, &key);
        let msg: Vec<u8> = (0..=255u8).collect();
        for len in 16..=msg.len() {
            let mut r =
                <cmac::Cmac<Aes128Enc> as KeyInit>::new(GenericArray::from_slice(key.expose()));
            r.update(&msg[..len]);
            assert_eq!(
                s.cmac(&msg[..16], &msg[16..len]),
                r.finalize().into_bytes()[..],
                "length {len}"
            );
        }
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
