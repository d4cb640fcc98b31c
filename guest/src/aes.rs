//! AES with AES-NI: key expansion (FIPS-197 §5.2) and ECB/CBC over raw block ranges.
//!
//! The block loops are assembly (`global_asm!`), because the vault is built for the soft-float
//! `x86_64-unknown-none` target on which the compiler will not emit SSE, and because the same
//! source then runs unchanged in host tests and the benchmark. Each routine follows the
//! SysV ABI, touches only caller-saved registers (rax, r10, r11, xmm0–xmm15) and accepts
//! `src == dst` (in place). ECB (both ways) and CBC decryption keep 8 independent blocks in
//! flight; CBC encryption is serial by definition.
//!
//! Round keys must be 16-byte aligned ([`RoundKeys`] is): the rounds use legacy-SSE memory
//! operands. Key expansion uses `AESKEYGENASSIST` for SubWord, so it has no key-dependent
//! table lookups; the word arithmetic around it is plain Rust.
use core::arch::global_asm;

use sevault_abi::KeyLen;
use zeroize::Zeroize;

/// Most round keys any key size needs (AES-256: 14 rounds + 1).
pub const MAX_ROUND_KEYS: usize = 15;

/// A key schedule: one 16-byte round key per round plus one, as little-endian 32-bit words
/// (FIPS-197's `w[i]`, whose bytes in memory are the round keys' bytes), 16-byte aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct RoundKeys(pub [u32; 4 * MAX_ROUND_KEYS]);

impl RoundKeys {
    /// An all-zero schedule.
    pub const fn zeroed() -> Self {
        Self([0; 4 * MAX_ROUND_KEYS])
    }

    /// Round key `round` as bytes.
    pub fn round_key(&self, round: usize) -> [u8; 16] {
        let mut bytes = [0; 16];
        for (dst, word) in bytes.chunks_exact_mut(4).zip(&self.0[4 * round..4 * round + 4]) {
            dst.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    fn as_ptr(&self) -> *const u8 {
        self.0.as_ptr().cast()
    }
}

impl Zeroize for RoundKeys {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

/// Encryption and decryption (equivalent inverse cipher, FIPS-197 §5.3.5) schedules of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct KeySchedule {
    /// Round keys for AESENC.
    pub enc: RoundKeys,
    /// Round keys for AESDEC: encryption keys reversed, InvMixColumns on the inner ones.
    pub dec: RoundKeys,
}

impl KeySchedule {
    /// An all-zero schedule.
    pub const fn zeroed() -> Self {
        Self { enc: RoundKeys::zeroed(), dec: RoundKeys::zeroed() }
    }
}

impl Zeroize for KeySchedule {
    fn zeroize(&mut self) {
        self.enc.zeroize();
        self.dec.zeroize();
    }
}

/// The shape shared by the four block routines (ECB ignores `iv`).
type BlockRoutine =
    unsafe extern "sysv64" fn(rk: *const u8, rounds: usize, src: *const u8, dst: *mut u8, blocks: usize, iv: *mut u8);

extern "sysv64" {
    fn sevault_aes_sub_word(word: u32) -> u64;
    fn sevault_aes_inv_mix_columns(dst: *mut u8, src: *const u8);
}

/// Declares assembly routines of the [`BlockRoutine`] shape.
macro_rules! block_routines {
    ($($name:ident),* $(,)?) => {
        extern "sysv64" {
            $(fn $name(rk: *const u8, rounds: usize, src: *const u8, dst: *mut u8, blocks: usize, iv: *mut u8);)*
        }
    };
}

block_routines!(sevault_aes_ecb_encrypt, sevault_aes_ecb_decrypt, sevault_aes_cbc_encrypt, sevault_aes_cbc_decrypt,);

/// Expands `key` (16, 24 or 32 bytes, as `len` says) into `out`, in place: no copy of the key
/// or of its words is left anywhere but in `out`.
// Not inlined: the vault image budget (4096 bytes) does not survive LLVM inlining this
// into the request loop.
#[inline(never)]
pub fn expand_key(key: &[u8], len: KeyLen, out: &mut KeySchedule) {
    let nk = len.bytes() / 4;
    let rounds = len.rounds();
    let words = &mut out.enc.0;
    for (word, bytes) in words.iter_mut().zip(key.chunks_exact(4)).take(nk) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    // `phase` = i mod nk and `rcon` = the next round constant, kept as counters.
    let (mut phase, mut rcon) = (0, 1u32);
    for i in nk..4 * (rounds + 1) {
        let mut temp = words[i - 1];
        if phase == 0 {
            // SAFETY: AES-NI is present (the HV checks it before launching the vault; host
            // callers are tests and the benchmark, which check it first); no memory access.
            temp = (unsafe { sevault_aes_sub_word(temp) } >> 32) as u32 ^ rcon;
            // xtime: the next power of x in GF(2^8) (FIPS-197 §4.2.1).
            rcon = (rcon << 1) ^ (0x11b & 0u32.wrapping_sub(rcon >> 7));
        } else if nk > 6 && phase == 4 {
            // SAFETY: as above.
            temp = unsafe { sevault_aes_sub_word(temp) } as u32;
        }
        words[i] = words[i - nk] ^ temp;
        phase = if phase + 1 == nk { 0 } else { phase + 1 };
    }
    // Decryption: the encryption keys in reverse, InvMixColumns on all but the outer two.
    for i in 0..=rounds {
        let src = out.enc.0[4 * (rounds - i)..].as_ptr().cast::<u8>();
        let dst = out.dec.0[4 * i..].as_mut_ptr().cast::<u8>();
        // SAFETY: AES-NI present (see above); both pointers name 16 valid bytes of two
        // distinct schedules (`4 * i + 4 <= 4 * (rounds + 1)` words).
        unsafe {
            if i == 0 || i == rounds {
                core::ptr::copy_nonoverlapping(src, dst, 16);
            } else {
                sevault_aes_inv_mix_columns(dst, src);
            }
        }
    }
}

/// One block operation (direction × mode) bound to a key schedule and, for CBC, the
/// chaining value.
pub struct BlockCipher<'k> {
    round_keys: &'k RoundKeys,
    rounds: usize,
    routine: BlockRoutine,
    /// CBC: the chaining value, updated by every run. ECB: stays zero.
    iv: [u8; 16],
}

impl<'k> BlockCipher<'k> {
    /// The operation for `direction`/`mode` with `schedule` of a `len` key and input `iv`
    /// (ignored for ECB).
    pub fn new(
        schedule: &'k KeySchedule,
        len: KeyLen,
        direction: sevault_abi::validate::Direction,
        mode: sevault_abi::Mode,
        iv: [u8; 16],
    ) -> Self {
        use sevault_abi::validate::Direction::{Decrypt, Encrypt};
        use sevault_abi::Mode::{Cbc, Ecb};
        let (round_keys, routine): (_, BlockRoutine) = match (direction, mode) {
            (Encrypt, Ecb) => (&schedule.enc, sevault_aes_ecb_encrypt),
            (Decrypt, Ecb) => (&schedule.dec, sevault_aes_ecb_decrypt),
            (Encrypt, Cbc) => (&schedule.enc, sevault_aes_cbc_encrypt),
            (Decrypt, Cbc) => (&schedule.dec, sevault_aes_cbc_decrypt),
        };
        let iv = if mode == Cbc { iv } else { [0; 16] };
        Self { round_keys, rounds: len.rounds(), routine, iv }
    }

    /// The chaining value to hand back: the last ciphertext block (CBC), zeros (ECB).
    pub fn iv_out(&self) -> [u8; 16] {
        self.iv
    }

    /// Processes `blocks` 16-byte blocks from `src` to `dst`.
    ///
    /// # Safety
    /// AES-NI must be available. `src` must be readable and `dst` writable for `16 * blocks`
    /// bytes; the two ranges are either identical (in place) or disjoint.
    pub unsafe fn run(&mut self, src: *const u8, dst: *mut u8, blocks: usize) {
        // SAFETY: the caller's contract is the routine's; the schedule is an aligned
        // `RoundKeys` holding `rounds + 1` keys; `iv` is 16 private bytes.
        unsafe { (self.routine)(self.round_keys.as_ptr(), self.rounds, src, dst, blocks, self.iv.as_mut_ptr()) }
    }

    /// Processes a whole-block buffer in place: for tests, the benchmark and private buffers.
    pub fn run_in_place(&mut self, data: &mut [u8]) {
        let blocks = data.len() / 16;
        let ptr = data.as_mut_ptr();
        // SAFETY: `data` is valid for `16 * blocks` bytes and src == dst; AES-NI is checked by
        // every caller of this crate before use (see `expand_key`).
        unsafe { self.run(ptr, ptr, blocks) }
    }
}

// The block routines. Arguments (SysV): rdi = round keys, rsi = rounds, rdx = src,
// rcx = dst, r8 = blocks, r9 = IV (CBC). r10 walks the round keys, r11 counts rounds;
// xmm0 holds the current round key, xmm1-xmm8 the blocks in flight (so that most
// instructions need no REX prefix), xmm9 the CBC chaining value.
// The 8-block steps are local subroutines shared by the entry points, and ECB/CBC decryption
// share one body: the image budget (4096 bytes) matters more than a call per 128 bytes.
global_asm!(
    r#"
    .macro AES_ROUNDS8 round, last
        movdqa xmm0, [rdi]
        pxor xmm1, xmm0
        pxor xmm2, xmm0
        pxor xmm3, xmm0
        pxor xmm4, xmm0
        pxor xmm5, xmm0
        pxor xmm6, xmm0
        pxor xmm7, xmm0
        pxor xmm8, xmm0
        lea r10, [rdi + 16]
        lea r11, [rsi - 1]
    .Lround8_\@:
        movdqa xmm0, [r10]
        \round xmm1, xmm0
        \round xmm2, xmm0
        \round xmm3, xmm0
        \round xmm4, xmm0
        \round xmm5, xmm0
        \round xmm6, xmm0
        \round xmm7, xmm0
        \round xmm8, xmm0
        add r10, 16
        dec r11
        jnz .Lround8_\@
        movdqa xmm0, [r10]
        \last xmm1, xmm0
        \last xmm2, xmm0
        \last xmm3, xmm0
        \last xmm4, xmm0
        \last xmm5, xmm0
        \last xmm6, xmm0
        \last xmm7, xmm0
        \last xmm8, xmm0
        ret
    .endm

    // One block in xmm1; `whitened` labels the entry for a block already XORed with the
    // first round key.
    .macro AES_ROUNDS1 round, last, whitened
        pxor xmm1, [rdi]
    \whitened:
        lea r10, [rdi + 16]
        lea r11, [rsi - 1]
    .Lround1_\@:
        \round xmm1, [r10]
        add r10, 16
        dec r11
        jnz .Lround1_\@
        \last xmm1, [r10]
        ret
    .endm

    .text
    .Laes_encrypt8:
        AES_ROUNDS8 aesenc, aesenclast
    .Laes_decrypt8:
        AES_ROUNDS8 aesdec, aesdeclast
    .Laes_encrypt1:
        AES_ROUNDS1 aesenc, aesenclast, .Laes_encrypt1_whitened
    .Laes_decrypt1:
        AES_ROUNDS1 aesdec, aesdeclast, .Laes_decrypt1_whitened

    // xmm1-xmm8 = 8 blocks at rdx.
    .Laes_load8:
        movdqu xmm1, [rdx]
        movdqu xmm2, [rdx + 16]
        movdqu xmm3, [rdx + 32]
        movdqu xmm4, [rdx + 48]
        movdqu xmm5, [rdx + 64]
        movdqu xmm6, [rdx + 80]
        movdqu xmm7, [rdx + 96]
        movdqu xmm8, [rdx + 112]
        ret

    // 8 blocks at rcx = xmm1-xmm8; then both pointers move on by 8 blocks.
    .Laes_store8:
        movdqu [rcx], xmm1
        movdqu [rcx + 16], xmm2
        movdqu [rcx + 32], xmm3
        movdqu [rcx + 48], xmm4
        movdqu [rcx + 64], xmm5
        movdqu [rcx + 80], xmm6
        movdqu [rcx + 96], xmm7
        movdqu [rcx + 112], xmm8
        add rdx, 128
        add rcx, 128
        ret

    .globl sevault_aes_ecb_encrypt
    .type sevault_aes_ecb_encrypt, @function
    sevault_aes_ecb_encrypt:
        cmp r8, 8
        jb .Lecb_enc_tail
    .Lecb_enc_loop8:
        call .Laes_load8
        call .Laes_encrypt8
        call .Laes_store8
        sub r8, 8
        cmp r8, 8
        jae .Lecb_enc_loop8
    .Lecb_enc_tail:
        test r8, r8
        jz .Lecb_enc_done
    .Lecb_enc_loop1:
        movdqu xmm1, [rdx]
        call .Laes_encrypt1
        movdqu [rcx], xmm1
        add rdx, 16
        add rcx, 16
        dec r8
        jnz .Lecb_enc_loop1
    .Lecb_enc_done:
        ret
    .size sevault_aes_ecb_encrypt, . - sevault_aes_ecb_encrypt

    .globl sevault_aes_cbc_encrypt
    .type sevault_aes_cbc_encrypt, @function
    sevault_aes_cbc_encrypt:
        test r8, r8
        jz .Lcbc_enc_done
        movdqu xmm1, [r9]
    // The first round key goes into the plaintext before the chaining XOR, so that only one
    // XOR sits on the serial chain between two blocks' rounds.
    .Lcbc_enc_loop:
        movdqu xmm2, [rdx]
        pxor xmm2, [rdi]
        pxor xmm1, xmm2
        call .Laes_encrypt1_whitened
        movdqu [rcx], xmm1
        add rdx, 16
        add rcx, 16
        dec r8
        jnz .Lcbc_enc_loop
        movdqu [r9], xmm1
    .Lcbc_enc_done:
        ret
    .size sevault_aes_cbc_encrypt, . - sevault_aes_cbc_encrypt

    // ECB and CBC decryption: eax = 0 for ECB, 1 for CBC (then xmm9 carries the previous
    // ciphertext block). Every load of a batch (including the ciphertext reloaded for the
    // XOR and the next chaining value) precedes its stores, so src == dst works.
    .globl sevault_aes_ecb_decrypt
    .type sevault_aes_ecb_decrypt, @function
    sevault_aes_ecb_decrypt:
        xor eax, eax
        jmp .Ldecrypt
    .size sevault_aes_ecb_decrypt, . - sevault_aes_ecb_decrypt

    .globl sevault_aes_cbc_decrypt
    .type sevault_aes_cbc_decrypt, @function
    sevault_aes_cbc_decrypt:
        mov eax, 1
        movdqu xmm9, [r9]
    .Ldecrypt:
        cmp r8, 8
        jb .Ldec_tail
    .Ldec_loop8:
        call .Laes_load8
        call .Laes_decrypt8
        test eax, eax
        jz .Ldec_store8
        pxor xmm1, xmm9
        movdqu xmm0, [rdx]
        pxor xmm2, xmm0
        movdqu xmm0, [rdx + 16]
        pxor xmm3, xmm0
        movdqu xmm0, [rdx + 32]
        pxor xmm4, xmm0
        movdqu xmm0, [rdx + 48]
        pxor xmm5, xmm0
        movdqu xmm0, [rdx + 64]
        pxor xmm6, xmm0
        movdqu xmm0, [rdx + 80]
        pxor xmm7, xmm0
        movdqu xmm0, [rdx + 96]
        pxor xmm8, xmm0
        movdqu xmm9, [rdx + 112]
    .Ldec_store8:
        call .Laes_store8
        sub r8, 8
        cmp r8, 8
        jae .Ldec_loop8
    .Ldec_tail:
        test r8, r8
        jz .Ldec_done
    .Ldec_loop1:
        movdqu xmm1, [rdx]
        movdqa xmm10, xmm1
        call .Laes_decrypt1
        test eax, eax
        jz .Ldec_store1
        pxor xmm1, xmm9
        movdqa xmm9, xmm10
    .Ldec_store1:
        movdqu [rcx], xmm1
        add rdx, 16
        add rcx, 16
        dec r8
        jnz .Ldec_loop1
    .Ldec_done:
        test eax, eax
        jz .Ldec_return
        movdqu [r9], xmm9
    .Ldec_return:
        ret
    .size sevault_aes_cbc_decrypt, . - sevault_aes_cbc_decrypt

    // edi = word; returns SubWord(word) in eax[31:0] and RotWord(SubWord(word)) in
    // rax[63:32] (AESKEYGENASSIST with RCON 0 on a broadcast word).
    .globl sevault_aes_sub_word
    .type sevault_aes_sub_word, @function
    sevault_aes_sub_word:
        movd xmm0, edi
        pshufd xmm0, xmm0, 0
        aeskeygenassist xmm0, xmm0, 0
        movq rax, xmm0
        pxor xmm0, xmm0
        ret
    .size sevault_aes_sub_word, . - sevault_aes_sub_word

    // rdi = dst, rsi = src: dst = InvMixColumns(src), 16 bytes each, any alignment.
    .globl sevault_aes_inv_mix_columns
    .type sevault_aes_inv_mix_columns, @function
    sevault_aes_inv_mix_columns:
        movdqu xmm0, [rsi]
        aesimc xmm0, xmm0
        movdqu [rdi], xmm0
        pxor xmm0, xmm0
        ret
    .size sevault_aes_inv_mix_columns, . - sevault_aes_inv_mix_columns

    "#
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{reference_crypt, require_aes_ni, RefOp};
    use hex_literal::hex;
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    use sevault_abi::validate::Direction;
    use sevault_abi::Mode;

    const KEY_128: [u8; 16] = hex!("2b7e151628aed2a6abf7158809cf4f3c");
    const KEY_192: [u8; 24] = hex!("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b");
    const KEY_256: [u8; 32] = hex!("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
    /// NIST SP 800-38A Appendix F: the four plaintext blocks shared by F.1 and F.2.
    const SP800_38A_PLAINTEXT: [u8; 64] = hex!(
        "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710"
    );
    const SP800_38A_IV: [u8; 16] = hex!("000102030405060708090a0b0c0d0e0f");

    fn schedule(key: &[u8]) -> (KeySchedule, KeyLen) {
        require_aes_ni();
        let len = KeyLen::try_from(key.len() as u32).unwrap();
        let mut s = KeySchedule::zeroed();
        expand_key(key, len, &mut s);
        (s, len)
    }

    fn crypt(key: &[u8], direction: Direction, mode: Mode, iv: [u8; 16], data: &[u8]) -> (Vec<u8>, [u8; 16]) {
        let (s, len) = schedule(key);
        let mut cipher = BlockCipher::new(&s, len, direction, mode, iv);
        let mut buf = data.to_vec();
        cipher.run_in_place(&mut buf);
        (buf, cipher.iv_out())
    }

    #[test]
    fn fips197_key_expansion_appendix_a() {
        // FIPS-197 A.1: w[43] of the AES-128 example; A.2: w[51] (AES-192); A.3: w[59] (AES-256).
        let (s, _) = schedule(&KEY_128);
        assert_eq!(s.enc.round_key(10), hex!("d014f9a8c9ee2589e13f0cc8b6630ca6"));
        let (s, _) = schedule(&KEY_192);
        assert_eq!(s.enc.round_key(12), hex!("e98ba06f448c773c8ecc720401002202"));
        let (s, _) = schedule(&KEY_256);
        assert_eq!(s.enc.round_key(14), hex!("fe4890d1e6188d0b046df344706c631e"));
        // The decryption schedule starts with the last encryption key and ends with the first.
        assert_eq!(s.dec.round_key(0), s.enc.round_key(14));
        assert_eq!(s.dec.round_key(14), s.enc.round_key(0));
    }

    #[test]
    fn fips197_appendix_c_example_vectors() {
        let plaintext = hex!("00112233445566778899aabbccddeeff");
        let cases: [(&[u8], [u8; 16]); 3] = [
            (&hex!("000102030405060708090a0b0c0d0e0f"), hex!("69c4e0d86a7b0430d8cdb78070b4c55a")),
            (&hex!("000102030405060708090a0b0c0d0e0f1011121314151617"), hex!("dda97ca4864cdfe06eaf70a0ec0d7191")),
            (
                &hex!("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
                hex!("8ea2b7ca516745bfeafc49904b496089"),
            ),
        ];
        for (key, ciphertext) in cases {
            let (out, _) = crypt(key, Direction::Encrypt, Mode::Ecb, [0; 16], &plaintext);
            assert_eq!(out, ciphertext, "encrypt, key {} bytes", key.len());
            let (out, _) = crypt(key, Direction::Decrypt, Mode::Ecb, [0; 16], &ciphertext);
            assert_eq!(out, plaintext, "decrypt, key {} bytes", key.len());
        }
    }

    #[test]
    fn sp800_38a_f1_ecb_vectors() {
        let cases: [(&[u8], [u8; 64]); 3] = [
            (
                &KEY_128,
                hex!(
                    "3ad77bb40d7a3660a89ecaf32466ef97 f5d3d58503b9699de785895a96fdbaaf"
                    "43b1cd7f598ece23881b00e3ed030688 7b0c785e27e8ad3f8223207104725dd4"
                ),
            ),
            (
                &KEY_192,
                hex!(
                    "bd334f1d6e45f25ff712a214571fa5cc 974104846d0ad3ad7734ecb3ecee4eef"
                    "ef7afd2270e2e60adce0ba2face6444e 9a4b41ba738d6c72fb16691603c18e0e"
                ),
            ),
            (
                &KEY_256,
                hex!(
                    "f3eed1bdb5d2a03c064b5a7e3db181f8 591ccb10d410ed26dc5ba74a31362870"
                    "b6ed21b99ca6f4f9f153e7b1beafed1d 23304b7a39f9f3ff067d8d8f9e24ecc7"
                ),
            ),
        ];
        for (key, ciphertext) in cases {
            let (out, _) = crypt(key, Direction::Encrypt, Mode::Ecb, [0; 16], &SP800_38A_PLAINTEXT);
            assert_eq!(out, ciphertext, "F.1 ECB-AES{}.Encrypt", key.len() * 8);
            let (out, _) = crypt(key, Direction::Decrypt, Mode::Ecb, [0; 16], &ciphertext);
            assert_eq!(out, SP800_38A_PLAINTEXT, "F.1 ECB-AES{}.Decrypt", key.len() * 8);
        }
    }

    #[test]
    fn sp800_38a_f2_cbc_vectors() {
        let cases: [(&[u8], [u8; 64]); 3] = [
            (
                &KEY_128,
                hex!(
                    "7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2"
                    "73bed6b8e3c1743b7116e69e22229516 3ff1caa1681fac09120eca307586e1a7"
                ),
            ),
            (
                &KEY_192,
                hex!(
                    "4f021db243bc633d7178183a9fa071e8 b4d9ada9ad7dedf4e5e738763f69145a"
                    "571b242012fb7ae07fa9baac3df102e0 08b0e27988598881d920a9e64f5615cd"
                ),
            ),
            (
                &KEY_256,
                hex!(
                    "f58c4c04d6e5f1ba779eabfb5f7bfbd6 9cfc4e967edb808d679f777bc6702c7d"
                    "39f23369a9d9bacfa530e26304231461 b2eb05e2c39be9fcda6c19078c6a9d1b"
                ),
            ),
        ];
        for (key, ciphertext) in cases {
            let (out, iv) = crypt(key, Direction::Encrypt, Mode::Cbc, SP800_38A_IV, &SP800_38A_PLAINTEXT);
            assert_eq!(out, ciphertext, "F.2 CBC-AES{}.Encrypt", key.len() * 8);
            assert_eq!(iv[..], ciphertext[48..], "output IV = last ciphertext block");
            let (out, iv) = crypt(key, Direction::Decrypt, Mode::Cbc, SP800_38A_IV, &ciphertext);
            assert_eq!(out, SP800_38A_PLAINTEXT, "F.2 CBC-AES{}.Decrypt", key.len() * 8);
            assert_eq!(iv[..], ciphertext[48..]);
        }
    }

    #[test]
    fn random_buffers_match_rustcrypto_across_the_8_block_boundaries() {
        let mut rng = SmallRng::seed_from_u64(197);
        for case in 0..300 {
            let key: Vec<u8> = (0..[16, 24, 32][case % 3]).map(|_| rng.gen()).collect();
            let iv: [u8; 16] = rng.gen();
            // 1..=40 blocks covers tails of every length around the 8-way loop.
            let data: Vec<u8> = (0..16 * (case % 40 + 1)).map(|_| rng.gen()).collect();
            for mode in [Mode::Ecb, Mode::Cbc] {
                for direction in [Direction::Encrypt, Direction::Decrypt] {
                    let (out, iv_out) = crypt(&key, direction, mode, iv, &data);
                    let (expected, expected_iv) = reference_crypt(RefOp { mode, direction }, &key, iv, &data);
                    assert_eq!(out, expected, "case {case} {mode:?} {direction:?}");
                    if mode == Mode::Cbc {
                        assert_eq!(iv_out, expected_iv);
                    }
                }
            }
        }
    }

    #[test]
    fn out_of_place_leaves_the_source_intact() {
        let (s, len) = schedule(&KEY_256);
        let src: Vec<u8> = (0..16 * 11).map(|i| i as u8).collect();
        let mut dst = vec![0u8; src.len()];
        let mut cipher = BlockCipher::new(&s, len, Direction::Decrypt, Mode::Cbc, [4; 16]);
        // SAFETY: distinct buffers of 11 blocks each; AES-NI checked in `schedule`.
        unsafe { cipher.run(src.as_ptr(), dst.as_mut_ptr(), 11) };
        let (expected, _) =
            reference_crypt(RefOp { mode: Mode::Cbc, direction: Direction::Decrypt }, &KEY_256, [4; 16], &src);
        assert_eq!(dst, expected);
        assert_eq!(src, (0..16 * 11).map(|i| i as u8).collect::<Vec<_>>());
    }
}
