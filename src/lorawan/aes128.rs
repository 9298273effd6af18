//! AES-128 encryption for the per-frame path, with round keys this file owns.
//!
//! Why not the `aes` crate's `Aes128Enc` alone, which we used before:
//! - it chooses AES-NI at run time behind calls the compiler cannot inline
//!   (`#[target_feature]` functions), so a frame's MIC and keystream were a
//!   dozen opaque calls, half of the decode path's time;
//! - each cipher keeps room for both its AES-NI and its software key
//!   schedule, 720 bytes, and a session has two: most of a device's memory.
//!
//! Here, on a CPU with AES instructions (x86-64 AES-NI; ARMv8's
//! cryptographic extension, e.g. a Raspberry Pi 5's Cortex-A76), a key is
//! its 11 round keys (176 bytes) and the caller's whole job (a CMAC, a
//! keystream) runs in one function compiled for those instructions
//! ([`SessionKeys::run`]), the rounds inline. Elsewhere (a Raspberry Pi 4's
//! Cortex-A72 has no AES instructions) the `aes` crate's constant-time
//! software cipher, boxed so that it costs no room on CPUs that do not use
//! it. Only encryption: LoRaWAN's MIC and keystreams need no AES decryption
//! on this path.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128Enc;

/// One AES block.
pub type Block = [u8; 16];

/// What a job may do with a key.
pub trait Encrypt {
    /// Encrypt one block in place.
    fn encrypt(&self, block: &mut Block);
    /// Encrypt independent blocks in place (a keystream): interleaved, so
    /// the AES unit works on several at once.
    fn encrypt_blocks(&self, blocks: &mut [Block]);
    /// Encrypt `block` with this key and `blocks` with `other`, interleaved:
    /// a chain's first block (a MIC's B0) and a keystream cost the AES
    /// unit's latency once rather than twice. At most four `blocks` ride
    /// beside `block`; more are encrypted after it.
    fn encrypt_beside(&self, block: &mut Block, other: &Self, blocks: &mut [Block]) {
        self.encrypt(block);
        other.encrypt_blocks(blocks);
    }
}

/// A job run with a session's two ciphers: generic over the cipher, so that
/// [`SessionKeys::run`] compiles it once per backend.
pub trait Job {
    type Out;
    fn run<E: Encrypt>(self, nwk: &E, app: &E) -> Self::Out;
}

/// Which implementation a session's keys use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The CPU's AES instructions (x86-64 AES-NI, ARMv8 AES), when it has them.
    Hardware,
    /// The `aes` crate's software cipher.
    Software,
}

impl Backend {
    /// The fastest this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if ni::available() {
            return Backend::Hardware;
        }
        #[cfg(target_arch = "aarch64")]
        if armv8::available() {
            return Backend::Hardware;
        }
        Backend::Software
    }
}

/// A session's NwkSKey and AppSKey, expanded.
// Inline round keys on purpose: the hardware variant is the one in use
// wherever it exists, and boxing it would cost a pointer chase per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum SessionKeys {
    #[cfg(target_arch = "x86_64")]
    Ni {
        nwk: ni::RoundKeys,
        app: ni::RoundKeys,
    },
    #[cfg(target_arch = "aarch64")]
    Armv8 {
        nwk: armv8::RoundKeys,
        app: armv8::RoundKeys,
    },
    Soft(Box<[Aes128Enc; 2]>),
}

impl SessionKeys {
    /// Expands both keys for `backend` (`Hardware` on a CPU without AES
    /// instructions falls back to `Software`).
    pub fn new(nwk: &Block, app: &Block, backend: Backend) -> Self {
        #[cfg(target_arch = "x86_64")]
        if backend == Backend::Hardware {
            if let (Some(nwk), Some(app)) = (ni::RoundKeys::new(nwk), ni::RoundKeys::new(app)) {
                return SessionKeys::Ni { nwk, app };
            }
        }
        #[cfg(target_arch = "aarch64")]
        if backend == Backend::Hardware {
            if let (Some(nwk), Some(app)) = (armv8::RoundKeys::new(nwk), armv8::RoundKeys::new(app))
            {
                return SessionKeys::Armv8 { nwk, app };
            }
        }
        let _ = backend;
        let soft = |k: &Block| Aes128Enc::new(GenericArray::from_slice(k));
        SessionKeys::Soft(Box::new([soft(nwk), soft(app)]))
    }

    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(target_arch = "x86_64")]
            SessionKeys::Ni { .. } => Backend::Hardware,
            #[cfg(target_arch = "aarch64")]
            SessionKeys::Armv8 { .. } => Backend::Hardware,
            SessionKeys::Soft(_) => Backend::Software,
        }
    }

    /// Runs `job` with the NwkSKey's and AppSKey's ciphers.
    #[inline]
    pub fn run<J: Job>(&self, job: J) -> J::Out {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `RoundKeys` exist only where the CPU has AES-NI and
            // SSE2 (`RoundKeys::new` checks), which is all `run_ni` needs.
            SessionKeys::Ni { nwk, app } => unsafe { ni::run(nwk, app, job) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: `RoundKeys` exist only where the CPU has the AES
            // extension (`RoundKeys::new` checks).
            SessionKeys::Armv8 { nwk, app } => unsafe { armv8::run(nwk, app, job) },
            SessionKeys::Soft(k) => job.run(&k[0], &k[1]),
        }
    }
}

/// A hardware backend's one primitive, from which its [`Encrypt`] follows:
/// the `N` blocks of `x` under this key and the `M` of `y` under `other`,
/// round by round (the blocks are independent, so the AES unit pipelines
/// them: a MIC's B0 beside a keystream's blocks, or a keystream's four).
trait Rounds {
    /// # Safety
    /// The CPU has the backend's instructions (its key type proves it).
    unsafe fn rounds<const N: usize, const M: usize>(
        &self,
        x: &mut [Block; N],
        other: &Self,
        y: &mut [Block; M],
    );
}

impl<R: Rounds> Encrypt for R {
    #[inline(always)]
    fn encrypt(&self, block: &mut Block) {
        // SAFETY: a backend's keys exist only where its instructions do.
        unsafe { self.rounds::<1, 0>(std::array::from_mut(block), self, &mut []) }
    }

    #[inline(always)]
    fn encrypt_blocks(&self, blocks: &mut [Block]) {
        let mut chunks = blocks.chunks_exact_mut(4);
        for four in &mut chunks {
            let four: &mut [Block; 4] = four.try_into().expect("4 blocks");
            // SAFETY: as in `encrypt`.
            unsafe { self.rounds::<4, 0>(four, self, &mut []) }
        }
        for b in chunks.into_remainder() {
            self.encrypt(b);
        }
    }

    #[inline(always)]
    fn encrypt_beside(&self, block: &mut Block, other: &Self, blocks: &mut [Block]) {
        let (now, later) = blocks.split_at_mut(blocks.len().min(4));
        let one = std::array::from_mut(block);
        // SAFETY: as in `encrypt`; each arm's `now` has the length it names.
        unsafe {
            match now.len() {
                0 => self.rounds::<1, 0>(one, other, &mut []),
                1 => self.rounds::<1, 1>(one, other, now.try_into().expect("1")),
                2 => self.rounds::<1, 2>(one, other, now.try_into().expect("2")),
                3 => self.rounds::<1, 3>(one, other, now.try_into().expect("3")),
                _ => self.rounds::<1, 4>(one, other, now.try_into().expect("4")),
            }
        }
        other.encrypt_blocks(later);
    }
}

impl Encrypt for Aes128Enc {
    #[inline]
    fn encrypt(&self, block: &mut Block) {
        self.encrypt_block(GenericArray::from_mut_slice(block));
    }
    #[inline]
    fn encrypt_blocks(&self, blocks: &mut [Block]) {
        // Four blocks per call (what the keystream passes), so the crate's
        // software cipher works on a batch rather than block by block.
        for chunk in blocks.chunks_mut(4) {
            let mut batch = [GenericArray::default(); 4];
            for (g, b) in batch.iter_mut().zip(chunk.iter()) {
                g.copy_from_slice(b);
            }
            BlockEncrypt::encrypt_blocks(self, &mut batch[..chunk.len()]);
            for (g, b) in batch.iter().zip(chunk.iter_mut()) {
                b.copy_from_slice(g);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod ni {
    //! AES-128 with x86-64 AES-NI (Intel's white paper "Intel Advanced
    //! Encryption Standard (AES) New Instructions Set", key expansion §4.1).

    use crate::lorawan::aes128::{Block, Job, Rounds};
    use std::arch::x86_64::*;

    /// Whether this CPU has what the functions here are compiled for.
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("sse2")
    }

    /// The 11 round keys of one AES-128 key.
    #[derive(Clone, Copy)]
    pub struct RoundKeys([__m128i; 11]);

    impl RoundKeys {
        /// `None` when the CPU lacks AES-NI or SSE2: a `RoundKeys` is the
        /// proof that [`run`] may be called.
        pub fn new(key: &Block) -> Option<Self> {
            if !available() {
                return None;
            }
            // SAFETY: the features were just detected.
            Some(unsafe { expand(key) })
        }
    }

    #[target_feature(enable = "aes,sse2")]
    unsafe fn expand(key: &Block) -> RoundKeys {
        #[inline(always)]
        unsafe fn step(k: __m128i, assist: __m128i) -> __m128i {
            let t = _mm_shuffle_epi32::<0xff>(assist);
            let mut k = k;
            k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
            k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
            k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
            _mm_xor_si128(k, t)
        }
        let mut rk = [_mm_setzero_si128(); 11];
        rk[0] = _mm_loadu_si128(key.as_ptr().cast());
        macro_rules! round {
            ($i:literal, $rcon:literal) => {
                rk[$i] = step(rk[$i - 1], _mm_aeskeygenassist_si128::<$rcon>(rk[$i - 1]));
            };
        }
        round!(1, 0x01);
        round!(2, 0x02);
        round!(3, 0x04);
        round!(4, 0x08);
        round!(5, 0x10);
        round!(6, 0x20);
        round!(7, 0x40);
        round!(8, 0x80);
        round!(9, 0x1b);
        round!(10, 0x36);
        RoundKeys(rk)
    }

    /// The job compiled for AES-NI: its `encrypt` calls inline here.
    ///
    /// # Safety
    /// The CPU has AES-NI and SSE2 (a [`RoundKeys`] proves it).
    #[target_feature(enable = "aes,sse2")]
    pub unsafe fn run<J: Job>(nwk: &RoundKeys, app: &RoundKeys, job: J) -> J::Out {
        job.run(nwk, app)
    }

    impl Rounds for RoundKeys {
        #[inline(always)]
        unsafe fn rounds<const N: usize, const M: usize>(
            &self,
            x: &mut [Block; N],
            other: &Self,
            y: &mut [Block; M],
        ) {
            let mut a = [_mm_setzero_si128(); N];
            for (a, x) in a.iter_mut().zip(x.iter()) {
                *a = _mm_xor_si128(_mm_loadu_si128(x.as_ptr().cast()), self.0[0]);
            }
            let mut b = [_mm_setzero_si128(); M];
            for (b, y) in b.iter_mut().zip(y.iter()) {
                *b = _mm_xor_si128(_mm_loadu_si128(y.as_ptr().cast()), other.0[0]);
            }
            for r in 1..10 {
                for a in &mut a {
                    *a = _mm_aesenc_si128(*a, self.0[r]);
                }
                for b in &mut b {
                    *b = _mm_aesenc_si128(*b, other.0[r]);
                }
            }
            for (a, x) in a.iter().zip(x.iter_mut()) {
                _mm_storeu_si128(x.as_mut_ptr().cast(), _mm_aesenclast_si128(*a, self.0[10]));
            }
            for (b, y) in b.iter().zip(y.iter_mut()) {
                _mm_storeu_si128(y.as_mut_ptr().cast(), _mm_aesenclast_si128(*b, other.0[10]));
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod armv8 {
    //! AES-128 with ARMv8's cryptographic extension (Arm ARM, AESE/AESMC):
    //! AESE is AddRoundKey, SubBytes and ShiftRows, AESMC MixColumns, so a
    //! round key goes in one step earlier than in FIPS-197's order and the
    //! last one is a plain XOR. Not testable on an x86-64 machine except
    //! under emulation (`qemu-aarch64 -cpu max`: docs/tests.md).

    use crate::lorawan::aes128::{Block, Job, Rounds};
    use std::arch::aarch64::*;

    /// Whether this CPU has what the functions here are compiled for.
    pub fn available() -> bool {
        std::arch::is_aarch64_feature_detected!("aes")
    }

    /// The 11 round keys of one AES-128 key.
    #[derive(Clone, Copy)]
    pub struct RoundKeys([uint8x16_t; 11]);

    impl RoundKeys {
        /// `None` when the CPU lacks the AES extension: a `RoundKeys` is
        /// the proof that [`run`] may be called.
        pub fn new(key: &Block) -> Option<Self> {
            if !available() {
                return None;
            }
            // SAFETY: the feature was just detected.
            Some(unsafe { expand(key) })
        }
    }

    /// FIPS-197 §5.2's key expansion, SubWord by AESE itself (with a zero
    /// round key and the word in all four columns, ShiftRows moves nothing):
    /// no lookup table indexed by key bytes.
    #[target_feature(enable = "aes")]
    unsafe fn expand(key: &Block) -> RoundKeys {
        const RCON: [u32; 10] = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36];
        let sub_word = |w: u32| {
            let v = vreinterpretq_u8_u32(vdupq_n_u32(w));
            vgetq_lane_u32::<0>(vreinterpretq_u32_u8(vaeseq_u8(v, vdupq_n_u8(0))))
        };
        let mut w = [0u32; 44];
        for (i, c) in key.chunks_exact(4).enumerate() {
            w[i] = u32::from_le_bytes(c.try_into().expect("4 bytes"));
        }
        for i in 4..44 {
            let mut t = w[i - 1];
            if i % 4 == 0 {
                // RotWord on little-endian words is a right rotation.
                t = sub_word(t).rotate_right(8) ^ RCON[i / 4 - 1];
            }
            w[i] = w[i - 4] ^ t;
        }
        let mut rk = [vdupq_n_u8(0); 11];
        for (r, k) in rk.iter_mut().enumerate() {
            let mut b = [0u8; 16];
            for (j, word) in w[4 * r..4 * r + 4].iter().enumerate() {
                b[4 * j..4 * j + 4].copy_from_slice(&word.to_le_bytes());
            }
            *k = vld1q_u8(b.as_ptr());
        }
        RoundKeys(rk)
    }

    /// The job compiled for the AES extension: its `encrypt` calls inline here.
    ///
    /// # Safety
    /// The CPU has the AES extension (a [`RoundKeys`] proves it).
    #[target_feature(enable = "aes")]
    pub unsafe fn run<J: Job>(nwk: &RoundKeys, app: &RoundKeys, job: J) -> J::Out {
        job.run(nwk, app)
    }

    impl Rounds for RoundKeys {
        #[inline(always)]
        unsafe fn rounds<const N: usize, const M: usize>(
            &self,
            x: &mut [Block; N],
            other: &Self,
            y: &mut [Block; M],
        ) {
            interleaved(self, x, other, y);
        }
    }

    /// [`Rounds::rounds`] compiled for the AES extension itself (the
    /// intrinsics inline only into such a function), and inlined into
    /// [`run`]'s job, which is too.
    ///
    /// # Safety
    /// As [`run`].
    #[inline]
    #[target_feature(enable = "aes")]
    unsafe fn interleaved<const N: usize, const M: usize>(
        key: &RoundKeys,
        x: &mut [Block; N],
        other: &RoundKeys,
        y: &mut [Block; M],
    ) {
        let mut a = [vdupq_n_u8(0); N];
        for (a, x) in a.iter_mut().zip(x.iter()) {
            *a = vld1q_u8(x.as_ptr());
        }
        let mut b = [vdupq_n_u8(0); M];
        for (b, y) in b.iter_mut().zip(y.iter()) {
            *b = vld1q_u8(y.as_ptr());
        }
        for r in 0..9 {
            for a in &mut a {
                *a = vaesmcq_u8(vaeseq_u8(*a, key.0[r]));
            }
            for b in &mut b {
                *b = vaesmcq_u8(vaeseq_u8(*b, other.0[r]));
            }
        }
        for (a, x) in a.iter().zip(x.iter_mut()) {
            vst1q_u8(x.as_mut_ptr(), veorq_u8(vaeseq_u8(*a, key.0[9]), key.0[10]));
        }
        for (b, y) in b.iter().zip(y.iter_mut()) {
            vst1q_u8(
                y.as_mut_ptr(),
                veorq_u8(vaeseq_u8(*b, other.0[9]), other.0[10]),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Both(Block);
    impl Job for Both {
        type Out = (Block, Vec<Block>);
        fn run<E: Encrypt>(self, nwk: &E, app: &E) -> Self::Out {
            let mut one = self.0;
            nwk.encrypt(&mut one);
            let mut many: Vec<Block> = (0..7u8).map(|i| [i; 16]).collect();
            app.encrypt_blocks(&mut many);
            (one, many)
        }
    }

    /// `encrypt_beside` with 0..=7 blocks beside the one.
    struct Beside(Block, usize);
    impl Job for Beside {
        type Out = (Block, Vec<Block>);
        fn run<E: Encrypt>(self, nwk: &E, app: &E) -> Self::Out {
            let mut one = self.0;
            let mut many: Vec<Block> = (0..self.1 as u8).map(|i| [i; 16]).collect();
            nwk.encrypt_beside(&mut one, app, &mut many);
            (one, many)
        }
    }

    /// FIPS-197 Appendix C.1 (AES-128), on both backends; and the
    /// interleaved blocks equal one-by-one encryption by the `aes` crate.
    #[test]
    fn both_backends_match_fips197_and_the_aes_crate() {
        let key: Block = hex::decode("000102030405060708090a0b0c0d0e0f")
            .unwrap()
            .try_into()
            .unwrap();
        let plain: Block = hex::decode("00112233445566778899aabbccddeeff")
            .unwrap()
            .try_into()
            .unwrap();
        let reference = Aes128Enc::new(GenericArray::from_slice(&key));
        let want: Vec<Block> = (0..7u8)
            .map(|i| {
                let mut b = GenericArray::from([i; 16]);
                reference.encrypt_block(&mut b);
                b.into()
            })
            .collect();
        let mut backends = vec![Backend::Software];
        if Backend::detect() == Backend::Hardware {
            backends.push(Backend::Hardware);
        } else {
            eprintln!("this CPU has no AES instructions: only the software backend is tested");
        }
        for backend in backends {
            let keys = SessionKeys::new(&key, &key, backend);
            assert_eq!(keys.backend(), backend);
            let (one, many) = keys.run(Both(plain));
            assert_eq!(
                hex::encode(one),
                "69c4e0d86a7b0430d8cdb78070b4c55a",
                "{backend:?}"
            );
            assert_eq!(many, want, "{backend:?}");
            // Two different keys, so a swapped key cannot pass.
            let first: Block = [0x5a; 16];
            let mut want_one = GenericArray::from(plain);
            Aes128Enc::new(GenericArray::from_slice(&first)).encrypt_block(&mut want_one);
            let keys = SessionKeys::new(&first, &key, backend);
            for n in 0..=want.len() {
                let (one, many) = keys.run(Beside(plain, n));
                assert_eq!(one, want_one[..], "{backend:?} beside {n}");
                assert_eq!(many, want[..n], "{backend:?} beside {n}");
            }
        }
    }
}
