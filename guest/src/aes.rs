//! AES with AES-NI: key expansion (FIPS-197 §5.2) and ECB/CBC over raw block ranges.
//!
//! The block loops are assembly (`global_asm!`), because the vault is built for the soft-float
//! `x86_64-unknown-none` target on which the compiler will not emit SSE, and because the same
//! source then runs unchanged in host tests and the benchmark. Each routine follows the
//! SysV ABI, touches only caller-saved registers (rax, r10, r11, xmm0–xmm8) and accepts
//! `src == dst` (in place). ECB (both ways) and CBC decryption keep 8 independent blocks in
//! flight; CBC encryption is serial by definition.
//!
//! Round keys must be 16-byte aligned ([`RoundKeys`] is): the rounds use legacy-SSE memory
//! operands. Key expansion uses `AESKEYGENASSIST` for SubWord, so it has no key-dependent
//! table lookups; the word arithmetic around it is plain Rust.
use core::arch::global_asm;

use sevault_abi::{KeyLen, Mode, SgEntry};
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

/// The schedules of a key slot: encryption and decryption (equivalent inverse cipher,
/// FIPS-197 §5.3.5) of the key, and for an XTS pair the encryption schedule of the tweak key
/// (the tweak is only ever encrypted, IEEE 1619-2018 §5.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct KeySchedule {
    /// Round keys for AESENC.
    pub enc: RoundKeys,
    /// Round keys for AESDEC: encryption keys reversed, InvMixColumns on the inner ones.
    pub dec: RoundKeys,
    /// XTS: the tweak key's round keys for AESENC; zero otherwise.
    pub tweak: RoundKeys,
}

impl KeySchedule {
    /// An all-zero schedule.
    pub const fn zeroed() -> Self {
        Self { enc: RoundKeys::zeroed(), dec: RoundKeys::zeroed(), tweak: RoundKeys::zeroed() }
    }
}

impl Zeroize for KeySchedule {
    fn zeroize(&mut self) {
        // SAFETY: `KeySchedule` is `repr(C)`: three `[u32; 60]` without padding (asserted
        // below), so its bytes are one `[u32; 180]`. One wipe, not three: the image budget.
        unsafe { &mut *(self as *mut Self).cast::<[u32; 3 * 4 * MAX_ROUND_KEYS]>() }.zeroize();
    }
}

const _: () = assert!(core::mem::size_of::<KeySchedule>() == 3 * core::mem::size_of::<RoundKeys>());

/// Mode bits of `sevault_aes_crypt`: `1 << mode` for the modes' wire values (ECB's bit is
/// ignored), plus [`DECRYPT`] for AESDEC rounds.
const DECRYPT: u32 = 1;
const CBC: u32 = 1 << Mode::Cbc as u32;
const CTR: u32 = 1 << Mode::Ctr as u32;
const XTS: u32 = 1 << Mode::Xts as u32;
const STREAMS: u32 = 1 << Mode::CbcStreams as u32;
const _: () = assert!(CBC == 4 && CTR == 8 && XTS == 16 && STREAMS == 32 && 1 << Mode::Ecb as u32 == 2);

// `sevault_aes_cbc_streams` reads the entries with these offsets and a 24-byte stride.
const _: () = {
    assert!(core::mem::offset_of!(SgEntry, src) == 0 && core::mem::offset_of!(SgEntry, dst) == 8);
    assert!(core::mem::offset_of!(SgEntry, len) == 16 && core::mem::size_of::<SgEntry>() == 24);
};

extern "sysv64" {
    fn sevault_aes_sub_word(word: u32) -> u64;
    fn sevault_aes_dec_schedule(enc: *const RoundKeys, dec: *mut RoundKeys, rounds: usize);
    fn sevault_aes_crypt(
        rk: *const u8,
        rounds_and_bits: usize,
        src: *const u8,
        dst: *mut u8,
        blocks: usize,
        state: *mut u8,
    );
    fn sevault_aes_cbc_streams(
        rk: *const u8,
        rounds_and_bits: usize,
        entries: *const SgEntry,
        streams: usize,
        window: *mut u8,
    );
}

/// Expands `key` (16, 24 or 32 bytes, as `len` says) into the encryption round keys `out`, in
/// place: no copy of the key or of its words is left anywhere but in `out`.
// Not inlined: the vault image budget (4096 bytes) does not survive LLVM inlining this
// into the request loop.
#[inline(never)]
fn expand_encryption_key(key: &[u8], len: KeyLen, out: &mut RoundKeys) {
    let nk = len.bytes() / 4;
    let words = &mut out.0;
    for (word, bytes) in words.iter_mut().zip(key.chunks_exact(4)).take(nk) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    // `phase` = i mod nk and `rcon` = the next round constant, kept as counters.
    let (mut phase, mut rcon) = (0, 1u32);
    // (`min` and `get_mut`: no index can leave the schedule — no panic path, which would
    // link core's panic machinery into the image.)
    for i in nk..(4 * (len.rounds() + 1)).min(words.len()) {
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
        let back = words[i - nk];
        if let Some(word) = words.get_mut(i) {
            *word = back ^ temp;
        }
        phase = if phase + 1 == nk { 0 } else { phase + 1 };
    }
}

/// Expands `key` into `out`: for one AES key (`xts` false) its encryption and decryption
/// schedules; for an XTS pair (`2 × len` bytes: data key, then tweak key) those of the data
/// key and the tweak key's encryption schedule.
pub fn expand_key(key: &[u8], len: KeyLen, xts: bool, out: &mut KeySchedule) {
    expand_encryption_key(key, len, &mut out.enc);
    // SAFETY: AES-NI present (see above); two distinct, aligned schedules of `rounds + 1` keys.
    unsafe { sevault_aes_dec_schedule(&out.enc, &mut out.dec, len.rounds()) };
    // An XTS pair's second half: always there (the validator hands the set-key 2 × len
    // bytes); `get` rather than indexing keeps panics out of the image.
    if let Some(tweak_key) = key.get(len.bytes()..).filter(|_| xts) {
        expand_encryption_key(tweak_key, len, &mut out.tweak);
    }
}

/// `t · x` in GF(2^128) with XTS's bit order (IEEE 1619-2018 §5.2: little-endian, reduction
/// by x^128 + x^7 + x^2 + x + 1).
fn xts_double(t: [u8; 16]) -> [u8; 16] {
    let t = u128::from_le_bytes(t);
    ((t << 1) ^ (0x87 & 0u128.wrapping_sub(t >> 127))).to_le_bytes()
}

/// One block operation (direction × mode) bound to a key schedule and its state.
pub struct BlockCipher<'k> {
    round_keys: &'k RoundKeys,
    /// Rounds in the low byte, mode bits above (see `sevault_aes_crypt`).
    rounds_and_bits: usize,
    /// CBC: the chaining value; CTR: the next counter block; XTS: the next block's tweak.
    /// Private: the tweak never leaves the vault ([`Self::iv_out`]).
    state: [u8; 16],
}

impl<'k> BlockCipher<'k> {
    /// The operation for `direction`/`mode` with `schedule` of a `len` key, input `iv` and,
    /// for XTS, the data unit's blocks done before (`tweak_block`; the schedule must hold an
    /// XTS pair).
    pub fn new(
        schedule: &'k KeySchedule,
        len: KeyLen,
        direction: sevault_abi::validate::Direction,
        mode: Mode,
        iv: [u8; 16],
        tweak_block: u32,
    ) -> Self {
        // CTR decrypts by encrypting the counters.
        let decrypt = direction == sevault_abi::validate::Direction::Decrypt && mode != Mode::Ctr;
        let round_keys = if decrypt { &schedule.dec } else { &schedule.enc };
        let bits = (1 << mode as u32) | (decrypt as u32 * DECRYPT);
        let mut cipher = Self { round_keys, rounds_and_bits: len.rounds() | (bits as usize) << 8, state: iv };
        if mode == Mode::Xts {
            // The first tweak: the IV encrypted with the tweak key, then doubled once per
            // block done before (IEEE 1619-2018 §5.3.1).
            let mut tweak = Self { round_keys: &schedule.tweak, rounds_and_bits: len.rounds(), state: [0; 16] };
            tweak.run_in_place(&mut cipher.state);
            for _ in 0..tweak_block {
                cipher.state = xts_double(cipher.state);
            }
        }
        cipher
    }

    fn bits(&self) -> u32 {
        (self.rounds_and_bits >> 8) as u32
    }

    /// The IV to hand back: CBC the last ciphertext block, CTR the next counter block; zeros
    /// for ECB and for XTS, whose tweak stays private.
    pub fn iv_out(&self) -> [u8; 16] {
        if self.bits() & (CBC | CTR) != 0 {
            self.state
        } else {
            [0; 16]
        }
    }

    /// Processes `blocks` 16-byte blocks from `src` to `dst`.
    ///
    /// # Safety
    /// AES-NI must be available. `src` must be readable and `dst` writable for `16 * blocks`
    /// bytes; the two ranges are either identical (in place) or disjoint.
    pub unsafe fn run(&mut self, src: *const u8, dst: *mut u8, blocks: usize) {
        // SAFETY: the caller's contract is the routine's; the schedule is an aligned
        // `RoundKeys` holding `rounds + 1` keys; `state` is 16 private bytes.
        unsafe {
            sevault_aes_crypt(self.round_keys.as_ptr(), self.rounds_and_bits, src, dst, blocks, self.state.as_mut_ptr())
        }
    }

    /// Whether this is [`Mode::CbcStreams`]: run it with [`Self::run_streams`], not
    /// [`Self::run`].
    pub fn is_streams(&self) -> bool {
        self.bits() == STREAMS
    }

    /// [`Mode::CbcStreams`]: encrypts the streams `entries` describe (as the validator
    /// checked them: `n` = 1 ..= 8 streams, one entry each, all of one non-zero whole-block
    /// length, then an entry of their `16 × n` bytes of IVs, which gets their output IVs),
    /// with host-physical `p` at `window + p`. The streams' blocks go through the AES rounds
    /// together; each stream's block of a step is read before any is written, so a stream
    /// may be in place.
    ///
    /// # Safety
    /// AES-NI must be available; `entries` must have that shape, every range they name must
    /// be readable and writable at `window + p`, a stream's src and dst the same or disjoint.
    pub unsafe fn run_streams(&self, entries: &[SgEntry], window: *mut u8) {
        // SAFETY: the caller's contract is the routine's; the schedule is an aligned
        // `RoundKeys` holding `rounds + 1` keys.
        unsafe {
            sevault_aes_cbc_streams(
                self.round_keys.as_ptr(),
                self.rounds_and_bits,
                entries.as_ptr(),
                entries.len().wrapping_sub(1),
                window,
            )
        }
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

// The block routine `sevault_aes_crypt`. Arguments (SysV): rdi = round keys, rsi = rounds
// (low byte) | mode bits << 8, rdx = src, rcx = dst, r8 = blocks, r9 = the 16-byte state.
// CBC encryption is serial; every other mode runs batches of 8 blocks in flight (al = the
// mode bits throughout):
// xmm1-xmm8 hold the blocks (no REX prefix for most instructions), xmm0 the round key, r10
// walks the round keys and r11 counts rounds. A mask area M of 9 blocks on the stack holds
// what a batch needs besides its input: the CBC chaining values, the CTR counter blocks or
// the XTS tweaks; M[n] after a batch of n blocks is the next state. A last batch of fewer
// than 8 blocks runs on a private copy B (the 8-block code reads and writes 8 blocks) whose
// first n blocks are copied out. Every load of a batch precedes its stores, so src == dst
// works. Legacy-SSE encodings (movups/xorps: no 66 prefix) because the image budget counts
// bytes; the round keys are 16-byte aligned.
global_asm!(
    r#"
    .macro AES_ROUND8 round
        \round xmm1, xmm0
        \round xmm2, xmm0
        \round xmm3, xmm0
        \round xmm4, xmm0
        \round xmm5, xmm0
        \round xmm6, xmm0
        \round xmm7, xmm0
        \round xmm8, xmm0
    .endm

    .text
    // The rounds on xmm1-xmm8: AESDEC when al has the decrypt bit, else AESENC (one body for
    // both directions; the branch per round is always predicted).
    .Laes_crypt8:
        movaps xmm0, [rdi]
        xorps xmm1, xmm0
        xorps xmm2, xmm0
        xorps xmm3, xmm0
        xorps xmm4, xmm0
        xorps xmm5, xmm0
        xorps xmm6, xmm0
        xorps xmm7, xmm0
        xorps xmm8, xmm0
        lea r10, [rdi + 16]
        lea r11, [rsi - 1]
    .Lround8:
        movaps xmm0, [r10]
        test al, {decrypt}
        jnz .Lround8_dec
        AES_ROUND8 aesenc
        jmp .Lround8_next
    .Lround8_dec:
        AES_ROUND8 aesdec
    .Lround8_next:
        add r10, 16
        dec r11
        jnz .Lround8
        movaps xmm0, [r10]
        test al, {decrypt}
        jnz .Llast8_dec
        AES_ROUND8 aesenclast
        ret
    .Llast8_dec:
        AES_ROUND8 aesdeclast
        ret

    // xmm1-xmm8 = 8 blocks at r10.
    .Lload8:
        movups xmm1, [r10]
        movups xmm2, [r10 + 16]
        movups xmm3, [r10 + 32]
        movups xmm4, [r10 + 48]
        movups xmm5, [r10 + 64]
        movups xmm6, [r10 + 80]
        movups xmm7, [r10 + 96]
        movups xmm8, [r10 + 112]
        ret

    // xmm1-xmm8 ^= 8 blocks at r10 (any alignment).
    .Lxor8:
        movups xmm0, [r10]
        xorps xmm1, xmm0
        movups xmm0, [r10 + 16]
        xorps xmm2, xmm0
        movups xmm0, [r10 + 32]
        xorps xmm3, xmm0
        movups xmm0, [r10 + 48]
        xorps xmm4, xmm0
        movups xmm0, [r10 + 64]
        xorps xmm5, xmm0
        movups xmm0, [r10 + 80]
        xorps xmm6, xmm0
        movups xmm0, [r10 + 96]
        xorps xmm7, xmm0
        movups xmm0, [r10 + 112]
        xorps xmm8, xmm0
        ret

    // 8 blocks at rcx = xmm1-xmm8.
    .Lstore8:
        movups [rcx], xmm1
        movups [rcx + 16], xmm2
        movups [rcx + 32], xmm3
        movups [rcx + 48], xmm4
        movups [rcx + 64], xmm5
        movups [rcx + 80], xmm6
        movups [rcx + 96], xmm7
        movups [rcx + 112], xmm8
        ret

    // Copies ebp bytes (a multiple of 16, > 0: batches are whole blocks) from r10 to r11,
    // a block at a time (a byte loop here made CBC decryption 5x slower); uses xmm0.
    .Lcopy:
        sub ebp, 16
        movups xmm0, [r10 + rbp]
        movups [r11 + rbp], xmm0
        jnz .Lcopy
        ret

    .globl sevault_aes_crypt
    .type sevault_aes_crypt, @function
    sevault_aes_crypt:
        mov eax, esi
        shr eax, 8
        movzx esi, sil
        test r8, r8
        jz .Lcrypt_return
        cmp al, {cbc}
        jne .Lparallel
    // CBC encryption. The first round key goes into the plaintext before the chaining XOR,
    // so that only one XOR sits on the serial chain between two blocks' rounds.
        movups xmm1, [r9]
    .Lcbc_enc_loop:
        movups xmm2, [rdx]
        xorps xmm2, [rdi]
        xorps xmm1, xmm2
        lea r10, [rdi + 16]
        lea r11, [rsi - 1]
    .Lcbc_enc_round:
        aesenc xmm1, [r10]
        add r10, 16
        dec r11
        jnz .Lcbc_enc_round
        aesenclast xmm1, [r10]
        movups [rcx], xmm1
        add rdx, 16
        add rcx, 16
        dec r8
        jnz .Lcbc_enc_loop
        movups [r9], xmm1
    .Lcrypt_return:
        ret

    // Frame: M at [rsp] (9 blocks), B at [rsp + 144] (8 blocks). rbx = bytes of the batch,
    // r12 = where its output goes, r8 = bytes left, al = mode bits.
    .Lparallel:
        push rbx
        push rbp
        push r12
        push r13
        sub rsp, 272
        shl r8, 4
    .Lbatch:
        mov ebx, 128
        cmp r8, rbx
        cmovb rbx, r8
        mov r12, rcx
        jae .Lprepare
        mov r10, rdx
        lea r11, [rsp + 144]
        mov rdx, r11
        mov rcx, r11
        mov ebp, ebx
        call .Lcopy
    .Lprepare:
        test al, {cbc}
        jz .Lno_cbc
    // CBC decryption: M = the chaining value, then the batch's first 7 ciphertext blocks;
    // the next chaining value is its last ciphertext block.
        movups xmm0, [r9]
        movups [rsp], xmm0
        mov r10, rdx
        lea r11, [rsp + 16]
        mov ebp, 112
        call .Lcopy
        movups xmm0, [rdx + rbx - 16]
        movups [r9], xmm0
        jmp .Lcrypt8
    .Lno_cbc:
        test al, {ctr}
        jz .Lno_ctr
    // CTR: M[i] = counter + i, a 128-bit big-endian number (r10 high, r11 low half).
        mov r10, [r9]
        mov r11, [r9 + 8]
        bswap r10
        bswap r11
        xor ebp, ebp
    .Lctr_next:
        mov r13, r10
        bswap r13
        mov [rsp + rbp], r13
        mov r13, r11
        bswap r13
        mov [rsp + rbp + 8], r13
        add r11, 1
        adc r10, 0
        add ebp, 16
        cmp ebp, 144
        jb .Lctr_next
        jmp .Lnext_state
    .Lno_ctr:
        test al, {xts}
        jz .Lcrypt8
    // XTS: M[i] = tweak · x^i in GF(2^128) (IEEE 1619-2018 §5.2: little-endian, r10 low and
    // r11 high half; a carry out of bit 127 folds back as 0x87).
        mov r10, [r9]
        mov r11, [r9 + 8]
        xor ebp, ebp
    .Lxts_next:
        mov [rsp + rbp], r10
        mov [rsp + rbp + 8], r11
        add r10, r10
        adc r11, r11
        sbb r13d, r13d
        and r13d, 0x87
        xor r10, r13
        add ebp, 16
        cmp ebp, 144
        jb .Lxts_next
    .Lnext_state:
        movups xmm0, [rsp + rbx]
        movups [r9], xmm0
    // Input: the counters (CTR) or the source; XTS whitens it with the tweaks.
    .Lcrypt8:
        mov r10, rdx
        test al, {ctr}
        jz 1f
        mov r10, rsp
    1:
        call .Lload8
        mov r10, rsp
        test al, {xts}
        jz 2f
        call .Lxor8
    2:
        call .Laes_crypt8
    // Output: XORed with M (CBC, XTS) or with the source (CTR).
        mov r10, rsp
        test al, {ctr}
        jz 5f
        mov r10, rdx
    5:
        test al, {cbc} | {ctr} | {xts}
        jz 6f
        call .Lxor8
    6:
        call .Lstore8
        cmp ebx, 128
        je 7f
        lea r10, [rsp + 144]
        mov r11, r12
        mov ebp, ebx
        call .Lcopy
    7:
        sub rdx, -128
        sub rcx, -128
        sub r8, rbx
        jnz .Lbatch
        add rsp, 272
        pop r13
        pop r12
        pop rbp
        pop rbx
        ret
    .size sevault_aes_crypt, . - sevault_aes_crypt

    // CBC encryption of n independent streams under one key (`BlockCipher::run_streams`):
    // rdi = round keys, sil = rounds, rdx = the SgEntry array (24-byte stride: src at 0, dst
    // at 8, len at 16; asserted beside the `extern` block), rcx = n (1..=8), r8 = the window
    // base. Entries 0..n are the streams, all [rdx + 16] bytes; entry n their IVs. The chaining
    // values stay in xmm1-xmm8 for the whole run, so a step costs one AES latency however many
    // streams ride in it. Frame: G at [rsp] (the step's blocks, gathered, 8 blocks), C at
    // [rsp + 128] (the chaining values in and out). r12 = 24 n, r13 = 16 n, rbx = window base
    // + the step's offset into every stream, r9 = bytes per stream left. At most 4 streams
    // take `.Lstreams_crypt4` (rounds on xmm1-xmm4 only, no branch per round: the AES unit
    // and the front end then serve the streams, not idle registers); more take the 8-block
    // code. The gather and scatter loops walk k = n-1 .. 0 with r11 = 24 k and ebp = 16 k
    // (movups and mov leave the flags of r11's `sub`).
    .globl sevault_aes_cbc_streams
    .type sevault_aes_cbc_streams, @function
    sevault_aes_cbc_streams:
        push rbx
        push rbp
        push r12
        push r13
        sub rsp, 256
        movzx esi, sil
        xor eax, eax
        imul r12d, ecx, 24
        mov r13d, ecx
        shl r13d, 4
        mov rbx, r8
        mov r10, [rdx + r12]
        add r10, rbx
        lea r11, [rsp + 128]
        mov ebp, r13d
        call .Lcopy
        lea r10, [rsp + 128]
        call .Lload8
        mov r9d, [rdx + 16]
    .Lstreams_step:
        mov r11, r12
        mov ebp, r13d
    .Lstreams_gather:
        sub ebp, 16
        sub r11, 24
        mov r10, [rdx + r11]
        movups xmm0, [r10 + rbx]
        movups [rsp + rbp], xmm0
        jnz .Lstreams_gather
        mov r10, rsp
        cmp r13d, 64
        ja 1f
        call .Lstreams_crypt4
        jmp 2f
    1:
        call .Lxor8
        call .Laes_crypt8
    2:
        mov rcx, rsp
        call .Lstore8
        mov r11, r12
        mov ebp, r13d
    .Lstreams_scatter:
        sub ebp, 16
        sub r11, 24
        mov r10, [rdx + r11 + 8]
        movups xmm0, [rsp + rbp]
        movups [r10 + rbx], xmm0
        jnz .Lstreams_scatter
        add rbx, 16
        sub r9d, 16
        jnz .Lstreams_step
        lea rcx, [rsp + 128]
        call .Lstore8
        lea r10, [rsp + 128]
        mov r11, [rdx + r12 + 8]
        add r11, r8
        mov ebp, r13d
        call .Lcopy
        add rsp, 256
        pop r13
        pop r12
        pop rbp
        pop rbx
        ret
    .size sevault_aes_cbc_streams, . - sevault_aes_cbc_streams

    // xmm1-xmm4 = AES-encrypt(xmm1-xmm4 ^ 4 blocks at r10): the first round key goes into
    // the blocks (xmm5-xmm8) before the chaining XOR, so that one XOR sits on each stream's
    // serial chain between two blocks' rounds.
    .Lstreams_crypt4:
        movaps xmm0, [rdi]
        movups xmm5, [r10]
        movups xmm6, [r10 + 16]
        movups xmm7, [r10 + 32]
        movups xmm8, [r10 + 48]
        xorps xmm5, xmm0
        xorps xmm6, xmm0
        xorps xmm7, xmm0
        xorps xmm8, xmm0
        xorps xmm1, xmm5
        xorps xmm2, xmm6
        xorps xmm3, xmm7
        xorps xmm4, xmm8
        lea r10, [rdi + 16]
        lea r11, [rsi - 1]
    .Lround4:
        movaps xmm0, [r10]
        aesenc xmm1, xmm0
        aesenc xmm2, xmm0
        aesenc xmm3, xmm0
        aesenc xmm4, xmm0
        add r10, 16
        dec r11
        jnz .Lround4
        movaps xmm0, [r10]
        aesenclast xmm1, xmm0
        aesenclast xmm2, xmm0
        aesenclast xmm3, xmm0
        aesenclast xmm4, xmm0
        ret

    // edi = word; returns SubWord(word) in eax[31:0] and RotWord(SubWord(word)) in
    // rax[63:32] (AESKEYGENASSIST with RCON 0 on a broadcast word).
    .globl sevault_aes_sub_word
    .type sevault_aes_sub_word, @function
    sevault_aes_sub_word:
        movd xmm0, edi
        pshufd xmm0, xmm0, 0
        aeskeygenassist xmm0, xmm0, 0
        movq rax, xmm0
        xorps xmm0, xmm0
        ret
    .size sevault_aes_sub_word, . - sevault_aes_sub_word

    // rdi = encryption round keys, rsi = decryption round keys (out), rdx = rounds:
    // dec[i] = InvMixColumns(enc[rounds - i]) for 0 < i < rounds, the outer two copied
    // (FIPS-197 §5.3.5). Both schedules 16-byte aligned.
    .globl sevault_aes_dec_schedule
    .type sevault_aes_dec_schedule, @function
    sevault_aes_dec_schedule:
        shl rdx, 4
        movaps xmm0, [rdi]
        movaps [rsi + rdx], xmm0
        movaps xmm0, [rdi + rdx]
    .Ldec_schedule_next:
        movaps [rsi], xmm0
        add rsi, 16
        sub rdx, 16
        jz .Ldec_schedule_done
        aesimc xmm0, [rdi + rdx]
        jmp .Ldec_schedule_next
    .Ldec_schedule_done:
        xorps xmm0, xmm0
        ret
    .size sevault_aes_dec_schedule, . - sevault_aes_dec_schedule
    "#,
    cbc = const CBC,
    ctr = const CTR,
    xts = const XTS,
    decrypt = const DECRYPT,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{reference_crypt, require_aes_ni, vault_crypt, RefOp};
    use hex_literal::hex;
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    use sevault_abi::validate::Direction;
    use sevault_abi::Mode;

    /// The exit stub zeroes xmm0-xmm8 only (`main.rs`): no assembly of the vault may write a
    /// higher one. (Its Rust code is built soft-float: the compiler emits no SSE.)
    #[test]
    fn the_vault_writes_no_register_its_exit_does_not_zero() {
        for (file, text) in [("aes.rs", include_str!("aes.rs")), ("main.rs", include_str!("main.rs"))] {
            let code = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            let words = code.split(|c: char| !c.is_ascii_alphanumeric());
            let high: Vec<&str> = words
                .filter(|w| w.strip_prefix("xmm").and_then(|n| n.parse::<u8>().ok()).is_some_and(|n| n > 8))
                .collect();
            assert!(high.is_empty(), "{file} uses {high:?}: zero it in sevault_vmgexit too");
        }
        assert!(include_str!("main.rs").contains("xorps xmm8, xmm8"), "the stub zeroes xmm0-xmm8");
    }

    const KEY_128: [u8; 16] = hex!("2b7e151628aed2a6abf7158809cf4f3c");
    const KEY_192: [u8; 24] = hex!("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b");
    const KEY_256: [u8; 32] = hex!("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
    /// NIST SP 800-38A Appendix F: the four plaintext blocks shared by F.1, F.2 and F.5.
    const SP800_38A_PLAINTEXT: [u8; 64] = hex!(
        "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710"
    );
    const SP800_38A_IV: [u8; 16] = hex!("000102030405060708090a0b0c0d0e0f");
    /// SP 800-38A F.5: the initial counter block.
    const SP800_38A_COUNTER: [u8; 16] = hex!("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");

    fn schedule(key: &[u8]) -> (KeySchedule, KeyLen) {
        require_aes_ni();
        let len = KeyLen::try_from(key.len() as u32).unwrap();
        let mut s = KeySchedule::zeroed();
        expand_key(key, len, false, &mut s);
        (s, len)
    }

    fn crypt(key: &[u8], direction: Direction, mode: Mode, iv: [u8; 16], data: &[u8]) -> (Vec<u8>, [u8; 16]) {
        vault_crypt(RefOp { mode, direction }, key, iv, data)
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
        assert_eq!(s.tweak, RoundKeys::zeroed(), "one AES key: no tweak schedule");
    }

    #[test]
    fn an_xts_pair_expands_both_keys() {
        require_aes_ni();
        let mut pair = [0u8; 32];
        pair[..16].copy_from_slice(&KEY_128);
        pair[16..].copy_from_slice(&hex!("000102030405060708090a0b0c0d0e0f"));
        let mut s = KeySchedule::zeroed();
        expand_key(&pair, KeyLen::Aes128, true, &mut s);
        assert_eq!(s.enc.round_key(10), hex!("d014f9a8c9ee2589e13f0cc8b6630ca6"), "FIPS-197 A.1");
        // FIPS-197 C.1: round 10's key of 000102..0f.
        assert_eq!(s.tweak.round_key(10), hex!("13111d7fe3944a17f307a78b4d2b30c5"));
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
    fn sp800_38a_f5_ctr_vectors() {
        let cases: [(&[u8], [u8; 64]); 3] = [
            (
                &KEY_128,
                hex!(
                    "874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff"
                    "5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee"
                ),
            ),
            (
                &KEY_192,
                hex!(
                    "1abc932417521ca24f2b0459fe7e6e0b 090339ec0aa6faefd5ccc2c6f4ce8e94"
                    "1e36b26bd1ebc670d1bd1d665620abf7 4f78a7f6d29809585a97daec58c6b050"
                ),
            ),
            (
                &KEY_256,
                hex!(
                    "601ec313775789a5b7a7f504bbf3d228 f443e3ca4d62b59aca84e990cacaf5c5"
                    "2b0930daa23de94ce87017ba2d84988d dfc9c58db67aada613c2dd08457941a6"
                ),
            ),
        ];
        for (key, ciphertext) in cases {
            for direction in [Direction::Encrypt, Direction::Decrypt] {
                let (input, expected) = match direction {
                    Direction::Encrypt => (&SP800_38A_PLAINTEXT, &ciphertext),
                    Direction::Decrypt => (&ciphertext, &SP800_38A_PLAINTEXT),
                };
                let (out, counter) = crypt(key, direction, Mode::Ctr, SP800_38A_COUNTER, input);
                assert_eq!(out, *expected, "F.5 CTR-AES{} {direction:?}", key.len() * 8);
                // Four blocks: the next counter is f0..fe ff + 4 (with the carry).
                assert_eq!(counter, hex!("f0f1f2f3f4f5f6f7f8f9fafbfcfdff03"));
                // (A partial last block is the HV's: `hv/src/translate/tests.rs`.)
            }
        }
    }

    #[test]
    fn the_ctr_counter_carries_across_all_128_bits() {
        for (first, next) in [
            (hex!("000000000000000000000000fffffffe"), hex!("00000000000000000000000100000008")),
            (hex!("00000000000000ffffffffffffffffff"), hex!("00000000000001000000000000000009")),
            (hex!("fffffffffffffffffffffffffffffffc"), hex!("00000000000000000000000000000006")),
        ] {
            // 10 blocks: 8 in flight, then 2, across the carry.
            let data = [0x5Au8; 160];
            let (out, counter) = crypt(&KEY_128, Direction::Encrypt, Mode::Ctr, first, &data);
            let (expected, _) =
                reference_crypt(RefOp { mode: Mode::Ctr, direction: Direction::Encrypt }, &KEY_128, first, &data);
            assert_eq!(out, expected, "first counter {first:x?}");
            assert_eq!(counter, next);
        }
    }

    /// IEEE Std 1619-2007 Annex B: XTS-AES-128 vectors 1-3 (32 bytes); the tweak is the data
    /// unit's sequence number, little-endian. (Vectors 15-18, ciphertext stealing, test the
    /// HV's stealing: `hv/src/translate/tests.rs`.)
    #[test]
    fn ieee1619_xts_aes_128_vectors() {
        // (key pair, data unit sequence number, plaintext, ciphertext)
        type Case<'a> = (&'a [u8], u64, Vec<u8>, Vec<u8>);
        let cases: [Case<'_>; 3] = [
            (
                &[0; 32],
                0,
                vec![0; 32],
                hex!("917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e").to_vec(),
            ),
            (
                &hex!("11111111111111111111111111111111 22222222222222222222222222222222"),
                0x33_3333_3333,
                vec![0x44; 32],
                hex!("c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0").to_vec(),
            ),
            (
                &hex!("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0 22222222222222222222222222222222"),
                0x33_3333_3333,
                vec![0x44; 32],
                hex!("af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89").to_vec(),
            ),
        ];
        for (i, (key, sequence, plaintext, ciphertext)) in cases.iter().enumerate() {
            let tweak = u128::from(*sequence).to_le_bytes();
            let (out, iv_out) = crypt(key, Direction::Encrypt, Mode::Xts, tweak, plaintext);
            assert_eq!(out, *ciphertext, "case {i}: encrypt");
            assert_eq!(iv_out, [0; 16], "the tweak never leaves the vault");
            let (out, _) = crypt(key, Direction::Decrypt, Mode::Xts, tweak, ciphertext);
            assert_eq!(out, *plaintext, "case {i}: decrypt");
        }
    }

    /// IEEE Std 1619-2007 Annex B vector 10 (XTS-AES-256, a 512-byte data unit). (Stealing
    /// with its keys is the HV's: `hv/src/translate/tests.rs`.)
    #[test]
    fn ieee1619_xts_aes_256_vectors() {
        let key = hex!(
            "2718281828459045235360287471352662497757247093699959574966967627"
            "3141592653589793238462643383279502884197169399375105820974944592"
        );
        let tweak = hex!("ff000000000000000000000000000000");
        let plaintext: Vec<u8> = (0..512).map(|i| i as u8).collect();
        let ciphertext = hex!(
            "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b5d31e276f8fe4a8d66b317f9ac683f44"
            "680a86ac35adfc3345befecb4bb188fd5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0"
            "c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca2a3e7a7d7df7b10355165c8b9a6d0a7d"
            "e8b062c4500dc4cd120c0f7418dae3d0b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f"
            "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec583e9645e07b8d9670655ba5bbcfecc6"
            "dc3966380ad8fecb17b6ba02469a020a84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1"
            "505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae9be69a2ffeceb1bec9de244fbe15992b"
            "11b77c040f12bd8f6a975a44a0f90c29a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac"
            "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f645e8b7e9bfdef33943054ff84011493"
            "c27b3429eaedb4ed5376441a77ed43851ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa"
            "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151"
        );
        let (out, _) = crypt(&key, Direction::Encrypt, Mode::Xts, tweak, &plaintext);
        assert_eq!(out, ciphertext, "vector 10: encrypt");
        let (out, _) = crypt(&key, Direction::Decrypt, Mode::Xts, tweak, &ciphertext);
        assert_eq!(out, plaintext, "vector 10: decrypt");
    }

    #[test]
    fn the_xts_tweak_doubles_as_ieee1619_says() {
        // §5.2: multiplication by the primitive element α, little-endian; the carry out of
        // bit 127 folds back as 0x87 into byte 0.
        assert_eq!(xts_double(hex!("01000000000000000000000000000000")), hex!("02000000000000000000000000000000"));
        assert_eq!(xts_double(hex!("80000000000000000000000000000000")), hex!("00010000000000000000000000000000"));
        assert_eq!(xts_double(hex!("00000000000000000000000000000080")), hex!("87000000000000000000000000000000"));
        assert_eq!(xts_double(hex!("000000000000000000000000000000c0")), hex!("87000000000000000000000000000080"));
    }

    /// CBC streams against RustCrypto stream by stream: 1-8 streams of 1-40 blocks, in place
    /// and out of place, at host addresses (window base 0), the IVs and output IVs in one
    /// buffer as the validator's shape has them.
    #[test]
    fn cbc_streams_match_rustcrypto_stream_by_stream() {
        let mut rng = SmallRng::seed_from_u64(0x5713);
        for case in 0..240 {
            let key: Vec<u8> = (0..[16, 24, 32][case % 3]).map(|_| rng.gen()).collect();
            let (s, len) = schedule(&key);
            let (streams, blocks) = (case % 8 + 1, rng.gen_range(1..=40));
            let input: Vec<Vec<u8>> = (0..streams).map(|_| (0..16 * blocks).map(|_| rng.gen()).collect()).collect();
            let in_place: Vec<bool> = (0..streams).map(|_| rng.gen_bool(0.5)).collect();
            let mut output: Vec<Vec<u8>> =
                input.iter().zip(&in_place).map(|(d, &same)| if same { d.clone() } else { vec![0; d.len()] }).collect();
            let ivs: Vec<u8> = (0..16 * streams).map(|_| rng.gen()).collect();
            let mut chain = ivs.clone();
            let mut entries: Vec<SgEntry> = (0..streams)
                .map(|k| {
                    let src = if in_place[k] { output[k].as_ptr() } else { input[k].as_ptr() };
                    SgEntry {
                        src: src as u64,
                        dst: output[k].as_mut_ptr() as u64,
                        len: 16 * blocks as u32,
                        reserved_0x14: 0,
                    }
                })
                .collect();
            let at = chain.as_mut_ptr() as u64;
            entries.push(SgEntry { src: at, dst: at, len: 16 * streams as u32, reserved_0x14: 0 });
            let cipher = BlockCipher::new(&s, len, Direction::Encrypt, Mode::CbcStreams, [0; 16], 0);
            assert!(cipher.is_streams());
            // SAFETY: every entry names a live buffer of its length; AES-NI checked in `schedule`.
            unsafe { cipher.run_streams(&entries, core::ptr::null_mut()) };
            for k in 0..streams {
                let op = RefOp { mode: Mode::Cbc, direction: Direction::Encrypt };
                let iv: [u8; 16] = ivs[16 * k..16 * k + 16].try_into().unwrap();
                let (expected, expected_iv) = reference_crypt(op, &key, iv, &input[k]);
                assert_eq!(output[k], expected, "case {case}: stream {k} of {streams}, {blocks} blocks");
                assert_eq!(chain[16 * k..16 * k + 16], expected_iv, "case {case}: stream {k}'s output IV");
            }
        }
    }

    #[test]
    fn random_buffers_match_rustcrypto_across_the_8_block_boundaries() {
        let mut rng = SmallRng::seed_from_u64(197);
        for case in 0..300 {
            let aes_len = [16, 24, 32][case % 3];
            let iv: [u8; 16] = rng.gen();
            // 1..=40 blocks covers tails of every length around the 8-way loop.
            let blocks = case % 40 + 1;
            for mode in [Mode::Ecb, Mode::Cbc, Mode::Ctr, Mode::Xts] {
                let key: Vec<u8> = (0..aes_len << (mode == Mode::Xts) as usize).map(|_| rng.gen()).collect();
                let data: Vec<u8> = (0..16 * blocks).map(|_| rng.gen()).collect();
                for direction in [Direction::Encrypt, Direction::Decrypt] {
                    let (out, iv_out) = crypt(&key, direction, mode, iv, &data);
                    let (expected, expected_iv) = reference_crypt(RefOp { mode, direction }, &key, iv, &data);
                    assert_eq!(out, expected, "case {case} {mode:?} {direction:?} {} bytes", data.len());
                    assert_eq!(iv_out, expected_iv, "case {case} {mode:?} {direction:?}");
                }
            }
        }
    }

    #[test]
    fn out_of_place_leaves_the_source_intact() {
        let (s, len) = schedule(&KEY_256);
        let src: Vec<u8> = (0..16 * 11).map(|i| i as u8).collect();
        let mut dst = vec![0u8; src.len()];
        let mut cipher = BlockCipher::new(&s, len, Direction::Decrypt, Mode::Cbc, [4; 16], 0);
        // SAFETY: distinct buffers of 11 blocks each; AES-NI checked in `schedule`.
        unsafe { cipher.run(src.as_ptr(), dst.as_mut_ptr(), 11) };
        let (expected, _) =
            reference_crypt(RefOp { mode: Mode::Cbc, direction: Direction::Decrypt }, &KEY_256, [4; 16], &src);
        assert_eq!(dst, expected);
        assert_eq!(src, (0..16 * 11).map(|i| i as u8).collect::<Vec<_>>());
    }
}
