//! LoRaWAN 1.0.x cryptography: the data-frame MIC (AES-CMAC over B0 | msg)
//! and the FRMPayload keystream (AES over the Ai blocks), LoRaWAN 1.0.4 §4.3.3
//! and §4.4.
//!
//! [`SessionCrypto`] expands both key schedules and derives the CMAC subkeys
//! (RFC 4493 K1, K2) once per session. The per-frame MIC is then a chain of
//! AES blocks on the stack, run as one job compiled for the CPU's AES
//! instructions (`super::aes128`): no key expansion, no cloned MAC state,
//! no buffering. At session setup the result is cross-checked against the
//! `cmac` crate, so a mistake here cannot go unnoticed.

use super::aes128::{Backend, Block, Encrypt, Job, SessionKeys};
use super::keys::{AesKey, DevAddr};

/// Largest PHYPayload we accept (LoRaWAN regional maxima are ≤ 255 bytes).
pub const MAX_PHY_PAYLOAD: usize = 255;

/// Direction bit of B0 and Ai.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up = 0,
    Down = 1,
}

/// Prepared ciphers for one session. Building it costs two key expansions
/// and a CMAC subkey derivation; verifying a frame costs neither. On a CPU
/// with AES-NI it is 400 bytes (two round-key schedules and the subkeys):
/// most of what a device costs in memory (`super::aes128`).
#[derive(Clone)]
pub struct SessionCrypto {
    keys: SessionKeys,
    /// CMAC subkeys of the NwkSKey: K1 for a complete last block, K2 for a padded one.
    k1: Block,
    k2: Block,
}

/// RFC 4493 §2.3: double in GF(2^128).
fn dbl(b: Block) -> Block {
    let v = u128::from_be_bytes(b);
    let r = (v << 1) ^ if v >> 127 == 1 { 0x87 } else { 0 };
    r.to_be_bytes()
}

#[inline(always)]
fn word(b: &[u8]) -> u128 {
    u128::from_ne_bytes(b.try_into().expect("16 bytes"))
}

impl std::fmt::Debug for SessionCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCrypto(<redacted>)")
    }
}

/// L = AES(NwkSKey, 0), the CMAC subkeys' seed.
struct SubkeySeed;
impl Job for SubkeySeed {
    type Out = Block;
    #[inline(always)]
    fn run<E: Encrypt>(self, nwk: &E, _: &E) -> Block {
        let mut l = [0u8; 16];
        nwk.encrypt(&mut l);
        l
    }
}

/// AES-CMAC(NwkSKey, first | rest), `first` being one whole block. The
/// XORs are whole 128-bit words (a padded last block is built once on the
/// stack), so a block costs its AES rounds and little else.
struct Cmac<'a> {
    k1: &'a Block,
    k2: &'a Block,
    first: &'a [u8],
    rest: &'a [u8],
}

impl Job for Cmac<'_> {
    type Out = Block;
    #[inline(always)]
    fn run<E: Encrypt>(self, nwk: &E, _: &E) -> Block {
        let mut x: Block = self.first.try_into().expect("one block");
        if self.rest.is_empty() {
            // B0 alone is the (complete) last block.
            x = (word(&x) ^ word(self.k1)).to_ne_bytes();
            nwk.encrypt(&mut x);
            return x;
        }
        nwk.encrypt(&mut x);
        self.after_first(nwk, x)
    }
}

impl Cmac<'_> {
    /// The chain on from `x`, the first block already encrypted; `rest`
    /// is not empty.
    #[inline(always)]
    fn after_first<E: Encrypt>(&self, nwk: &E, mut x: Block) -> Block {
        let rest = self.rest;
        let n = rest.len();
        let whole = if n % 16 == 0 { n - 16 } else { n - n % 16 };
        let (full, last) = rest.split_at(whole);
        for chunk in full.chunks_exact(16) {
            x = (word(&x) ^ word(chunk)).to_ne_bytes();
            nwk.encrypt(&mut x);
        }
        let mut padded = [0u8; 16];
        padded[..last.len()].copy_from_slice(last);
        let subkey = if last.len() == 16 {
            self.k1
        } else {
            padded[last.len()] = 0x80;
            self.k2
        };
        x = (word(&x) ^ word(&padded) ^ word(subkey)).to_ne_bytes();
        nwk.encrypt(&mut x);
        x
    }
}

/// `data` XOR the FRMPayload keystream into `out`.
struct Keystream<'a> {
    /// FPort 0: the NwkSKey's stream; any other port: the AppSKey's.
    nwk_stream: bool,
    a: Block,
    /// Ai blocks already used (the stream starts at A(i+1)).
    i: u8,
    data: &'a [u8],
    out: &'a mut [u8],
}

/// Up to 64 bytes of keystream at a time: four Ai blocks, enough for the
/// AES unit's pipeline, and no stack array for the largest frame to fill
/// on every call.
const CHUNK: usize = 64;

impl Keystream<'_> {
    /// The next `n` (≤ 4) Ai blocks. Ai's counter is one byte (1.0.4 §4.3.3).
    #[inline(always)]
    fn next_blocks(&mut self, n: usize) -> [Block; 4] {
        let mut blocks = [[0u8; 16]; 4];
        for b in &mut blocks[..n] {
            self.i = self.i.wrapping_add(1);
            self.a[15] = self.i;
            *b = self.a;
        }
        blocks
    }
}

/// `o` = `d` XOR `stream` (`d` at most [`CHUNK`] bytes, covered by `stream`).
#[inline(always)]
fn xor_chunk(o: &mut [u8], d: &[u8], stream: &[Block; 4]) {
    let whole = d.len() - d.len() % 16;
    for ((o, d), k) in o[..whole]
        .chunks_exact_mut(16)
        .zip(d[..whole].chunks_exact(16))
        .zip(stream)
    {
        o.copy_from_slice(&(word(d) ^ word(k)).to_ne_bytes());
    }
    if let Some(k) = stream.get(whole / 16) {
        for ((o, d), k) in o[whole..].iter_mut().zip(&d[whole..]).zip(k) {
            *o = d ^ k;
        }
    }
}

impl Job for Keystream<'_> {
    type Out = ();
    #[inline(always)]
    fn run<E: Encrypt>(mut self, nwk: &E, app: &E) {
        let cipher = if self.nwk_stream { nwk } else { app };
        let (data, out) = (self.data, std::mem::take(&mut self.out));
        let out = &mut out[..data.len()];
        for (o, d) in out.chunks_mut(CHUNK).zip(data.chunks(CHUNK)) {
            let n = d.len().div_ceil(16);
            let mut blocks = self.next_blocks(n);
            cipher.encrypt_blocks(&mut blocks[..n]);
            xor_chunk(o, d, &blocks);
        }
    }
}

/// A data frame's MIC and its FRMPayload's keystream under one counter, in
/// one pass: the first keystream blocks are encrypted beside B0, so a short
/// frame's decryption costs no AES latency of its own (it was a third of
/// the decode path's time).
struct MicAndStream<'a> {
    mic: Cmac<'a>,
    stream: Keystream<'a>,
}

impl Job for MicAndStream<'_> {
    type Out = Block;
    #[inline(always)]
    fn run<E: Encrypt>(self, nwk: &E, app: &E) -> Block {
        let MicAndStream { mic, mut stream } = self;
        if mic.rest.is_empty() {
            // Not a data frame's shape (its MHDR..FRMPayload is never
            // empty): the two jobs one after the other.
            let tag = mic.run(nwk, app);
            stream.run(nwk, app);
            return tag;
        }
        let cipher = if stream.nwk_stream { nwk } else { app };
        let cut = stream.data.len().min(CHUNK);
        let (d, data) = stream.data.split_at(cut);
        let (o, out) = std::mem::take(&mut stream.out).split_at_mut(cut);
        let n = d.len().div_ceil(16);
        let mut blocks = stream.next_blocks(n);
        let mut x: Block = mic.first.try_into().expect("one block");
        nwk.encrypt_beside(&mut x, cipher, &mut blocks[..n]);
        let tag = mic.after_first(nwk, x);
        xor_chunk(o, d, &blocks);
        if !data.is_empty() {
            Keystream {
                data,
                out,
                ..stream
            }
            .run(nwk, app);
        }
        tag
    }
}

impl SessionCrypto {
    pub fn new(nwk_s_key: &AesKey, app_s_key: &AesKey) -> Self {
        Self::with_backend(nwk_s_key, app_s_key, Backend::detect())
    }

    /// As [`Self::new`], on the given AES implementation (tests run both).
    pub fn with_backend(nwk_s_key: &AesKey, app_s_key: &AesKey, backend: Backend) -> Self {
        let keys = SessionKeys::new(nwk_s_key.expose(), app_s_key.expose(), backend);
        let k1 = dbl(keys.run(SubkeySeed));
        let s = Self {
            keys,
            k1,
            k2: dbl(k1),
        };
        s.self_test(nwk_s_key);
        s
    }

    /// Our CMAC must equal the `cmac` crate's, for a complete and a padded
    /// last block. A failure is a bug in this file or in `aes128`: stop
    /// rather than accept or reject frames wrongly.
    fn self_test(&self, nwk_s_key: &AesKey) {
        use aes::cipher::{generic_array::GenericArray, KeyInit};
        use cmac::Mac;
        for len in [32usize, 45] {
            let msg: Vec<u8> = (0..len as u8).collect();
            let mut reference = <cmac::Cmac<aes::Aes128Enc> as KeyInit>::new(
                GenericArray::from_slice(nwk_s_key.expose()),
            );
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
    fn cmac(&self, first: &[u8], rest: &[u8]) -> Block {
        self.keys.run(Cmac {
            k1: &self.k1,
            k2: &self.k2,
            first,
            rest,
        })
    }

    /// MIC of a data frame: the first four bytes of
    /// AES-CMAC(NwkSKey, B0 | MHDR..FRMPayload), B0 carrying the full 32-bit
    /// counter (1.0.4 §4.4).
    pub fn data_mic(&self, dir: Direction, addr: DevAddr, fcnt: u32, msg: &[u8]) -> [u8; 4] {
        let tag = self.cmac(&b0(dir, addr, fcnt, msg), msg);
        [tag[0], tag[1], tag[2], tag[3]]
    }

    /// Whether `mic` is the MIC of `msg` under this session, compared in
    /// constant time (`same_mic`).
    pub fn mic_matches(
        &self,
        dir: Direction,
        addr: DevAddr,
        fcnt: u32,
        msg: &[u8],
        mic: &[u8; 4],
    ) -> bool {
        same_mic(&self.cmac(&b0(dir, addr, fcnt, msg), msg), mic)
    }

    /// [`Self::mic_matches`] and [`Self::crypt_frm_payload`] under the same
    /// counter, in one AES pass (`MicAndStream`). `out` (at least
    /// `data.len()`) is written whether or not the MIC matched: a caller
    /// hands it on only if it did (`super::uplink::verify_mic`).
    #[allow(clippy::too_many_arguments)]
    pub fn mic_and_crypt(
        &self,
        dir: Direction,
        addr: DevAddr,
        fcnt: u32,
        msg: &[u8],
        mic: &[u8; 4],
        fport: u8,
        data: &[u8],
        out: &mut [u8],
    ) -> bool {
        let tag = self.keys.run(MicAndStream {
            mic: Cmac {
                k1: &self.k1,
                k2: &self.k2,
                first: &b0(dir, addr, fcnt, msg),
                rest: msg,
            },
            stream: Keystream {
                nwk_stream: fport == 0,
                a: a0(dir, addr, fcnt),
                i: 0,
                data,
                out,
            },
        });
        same_mic(&tag, mic)
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
        self.keys.run(Keystream {
            nwk_stream: fport == 0,
            a: a0(dir, addr, fcnt),
            i: 0,
            data,
            out,
        })
    }
}

/// B0, the MIC's first block (1.0.4 §4.4).
fn b0(dir: Direction, addr: DevAddr, fcnt: u32, msg: &[u8]) -> Block {
    let mut b0 = [0u8; 16];
    b0[0] = 0x49;
    b0[5] = dir as u8;
    b0[6..10].copy_from_slice(&addr.to_wire());
    b0[10..14].copy_from_slice(&fcnt.to_le_bytes());
    b0[15] = msg.len() as u8;
    b0
}

/// Ai with its counter byte still 0 (1.0.4 §4.3.3).
fn a0(dir: Direction, addr: DevAddr, fcnt: u32) -> Block {
    let mut a = [0u8; 16];
    a[0] = 0x01;
    a[5] = dir as u8;
    a[6..10].copy_from_slice(&addr.to_wire());
    a[10..14].copy_from_slice(&fcnt.to_le_bytes());
    a
}

/// Whether a CMAC's first four bytes are `mic`, compared in constant time:
/// one comparison of the four bytes as a word, so no early exit tells an
/// attacker how many bytes were right (`subtle`'s byte-wise `ct_eq` cost 5%
/// of a frame's decode for the same promise).
#[inline(always)]
fn same_mic(tag: &Block, mic: &[u8; 4]) -> bool {
    u32::from_ne_bytes([tag[0], tag[1], tag[2], tag[3]]) == u32::from_ne_bytes(*mic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{generic_array::GenericArray, KeyInit};

    /// Every AES implementation this CPU runs: the software one always, the
    /// hardware one where the CPU has it.
    fn sessions(nwk: &AesKey, app: &AesKey) -> Vec<SessionCrypto> {
        let mut all = vec![SessionCrypto::with_backend(nwk, app, Backend::Software)];
        if Backend::detect() == Backend::Hardware {
            let hw = SessionCrypto::with_backend(nwk, app, Backend::Hardware);
            assert_eq!(hw.keys.backend(), Backend::Hardware);
            all.push(hw);
        }
        all
    }

    /// RFC 4493 §4 examples 2–4 (16, 40 and 64-byte messages).
    #[test]
    fn cmac_matches_rfc4493() {
        let key = AesKey::from_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        for s in sessions(&key, &key) {
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
    }

    /// Frames we build are read by the `lorawan` crate's own MIC check and
    /// decryption (its default crypto) at every payload length, and ours
    /// reads them back: the keystream's whole words and its tail agree.
    #[test]
    fn frames_match_the_lorawan_crate_at_every_length() {
        let nwk = AesKey::from_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let app = AesKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        for s in sessions(&nwk, &app) {
            let addr = DevAddr::from_wire([1, 2, 3, 4]);
            for len in 0..=200usize {
                let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
                let mut frame =
                    super::super::encode::uplink(&s, addr, 70_000 + len as u32, 5, &plain);
                let mut out = [0u8; MAX_PHY_PAYLOAD];
                let f = super::super::parse_uplink(&frame).unwrap();
                let state = super::super::FcntState {
                    last: Some(70_000 + len as u32 - 1),
                    epoch: 0,
                };
                let auth = super::super::verify_mic(f, &s, &state, &mut out).unwrap();
                let acc = super::super::check_counter(
                    auth,
                    &state,
                    super::super::FcntPolicy::ResetTolerant,
                    32,
                )
                .unwrap();
                assert_eq!(acc.payload(), &plain[..], "ours, length {len}");
                let Ok(::lorawan::parser::PhyPayload::Data(
                    ::lorawan::parser::DataPayload::Encrypted(e),
                )) = ::lorawan::parser::parse(&mut frame[..])
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
    }

    #[test]
    fn cmac_matches_the_cmac_crate_at_every_length() {
        use cmac::Mac;
        let key = AesKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        for s in sessions(&key, &key) {
            let msg: Vec<u8> = (0..=255u8).collect();
            for len in 16..=msg.len() {
                let mut r = <cmac::Cmac<aes::Aes128Enc> as KeyInit>::new(GenericArray::from_slice(
                    key.expose(),
                ));
                r.update(&msg[..len]);
                assert_eq!(
                    s.cmac(&msg[..16], &msg[16..len]),
                    r.finalize().into_bytes()[..],
                    "length {len}"
                );
            }
        }
    }

    /// The fused pass equals the MIC check and the keystream run apart, on
    /// both keys' streams (FPort 0 and 5), at every length (across the
    /// 64-byte chunk the first blocks ride beside B0 in), and answers
    /// `false` for a wrong MIC.
    #[test]
    fn mic_and_crypt_equals_the_two_apart() {
        let (nwk, app) = (AesKey::new([2; 16]), AesKey::new([1; 16]));
        for s in sessions(&nwk, &app) {
            let addr = DevAddr(0x0102_0304);
            for len in 0..=200usize {
                let data: Vec<u8> = (0..len).map(|i| (i * 5 + 3) as u8).collect();
                let msg: Vec<u8> = [&[0x40u8; 9][..], &data].concat();
                let mic = s.data_mic(Direction::Up, addr, 77, &msg);
                for fport in [0u8, 5] {
                    let mut want = vec![0; len];
                    s.crypt_frm_payload(fport, Direction::Up, addr, 77, &data, &mut want);
                    let mut got = [0u8; MAX_PHY_PAYLOAD];
                    assert!(s.mic_and_crypt(
                        Direction::Up,
                        addr,
                        77,
                        &msg,
                        &mic,
                        fport,
                        &data,
                        &mut got
                    ));
                    assert_eq!(got[..len], want[..], "length {len}, FPort {fport}");
                    let wrong = [mic[0] ^ 1, mic[1], mic[2], mic[3]];
                    assert!(!s.mic_and_crypt(
                        Direction::Up,
                        addr,
                        77,
                        &msg,
                        &wrong,
                        fport,
                        &data,
                        &mut got
                    ));
                }
            }
        }
    }

    #[test]
    fn keystream_is_its_own_inverse() {
        for s in sessions(&AesKey::new([2; 16]), &AesKey::new([1; 16])) {
            let plain: Vec<u8> = (0..200u8).collect();
            let mut enc = vec![0; plain.len()];
            let mut dec = vec![0; plain.len()];
            s.crypt_frm_payload(5, Direction::Up, DevAddr(7), 99, &plain, &mut enc);
            assert_ne!(enc, plain);
            s.crypt_frm_payload(5, Direction::Up, DevAddr(7), 99, &enc, &mut dec);
            assert_eq!(dec, plain);
        }
    }
}
