//! The translator's chunks, run through the real vault code (`sevault-guest`: the ABI's
//! validator, the vault's walk and AES-NI) over a simulated host memory, against RustCrypto.
use std::cell::UnsafeCell;

use rand::{rngs::SmallRng, Rng, SeedableRng};
use sevault_abi::validate::Direction;
use sevault_abi::Mode;
use sevault_guest::testutil::{reference_crypt, RefOp};

use super::*;
use crate::paging::CompactWindow;

/// Admits everything.
#[derive(Clone)]
struct Unlimited;
impl Admission for Unlimited {
    fn admit(&mut self, _: &SgEntry) -> Result<bool, TranslateError> {
        Ok(true)
    }
}

/// Admits `n` entries per chunk (per batch, where the admission lives for the batch).
#[derive(Clone)]
pub(crate) struct AtMost(pub(crate) usize);
impl Admission for AtMost {
    fn admit(&mut self, _: &SgEntry) -> Result<bool, TranslateError> {
        if self.0 == 0 {
            return Ok(false);
        }
        self.0 -= 1;
        Ok(true)
    }
}

/// Simulated host memory: host-physical `p` is byte `p` of the buffer.
pub(crate) struct Memory(UnsafeCell<Vec<u8>>);

impl Memory {
    pub(crate) fn new(size: usize) -> Self {
        Self(UnsafeCell::new(vec![0; size]))
    }
    pub(crate) fn base(&self) -> *mut u8 {
        // SAFETY: the tests are single-threaded; no reference to the buffer outlives a call.
        unsafe { (*self.0.get()).as_mut_ptr() }
    }
    pub(crate) fn bytes(&self, segments: &[Segment]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in segments {
            let mut piece = vec![0; s.len as usize];
            self.read(s.phys, &mut piece);
            out.extend(piece);
        }
        out
    }
    pub(crate) fn fill(&self, segments: &[Segment], data: &[u8]) {
        let mut at = 0;
        for s in segments {
            self.write(s.phys, &data[at..at + s.len as usize]);
            at += s.len as usize;
        }
    }
    pub(crate) fn bounce(&self) -> Bounce {
        // SAFETY: BOUNCE_PHYS + BOUNCE_BYTES lies inside the buffer.
        Bounce { phys: BOUNCE_PHYS, virt: unsafe { self.base().add(BOUNCE_PHYS as usize) } }
    }
}

impl HostMemory for Memory {
    fn read(&self, phys: u64, buf: &mut [u8]) {
        // SAFETY: the tests' segments lie inside the buffer; single-threaded.
        unsafe { core::ptr::copy_nonoverlapping(self.base().add(phys as usize), buf.as_mut_ptr(), buf.len()) };
    }
    fn write(&self, phys: u64, buf: &[u8]) {
        // SAFETY: as above.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), self.base().add(phys as usize), buf.len()) };
    }
}

pub(crate) const MEMORY_SIZE: usize = 24 << 20;
const SRC_BASE: u64 = 0x10_0000;
const DST_BASE: u64 = 0x90_0000;
pub(crate) const BOUNCE_PHYS: u64 = 0x170_0000;

/// Splits `total` bytes at random into segments placed at scattered addresses.
fn random_list(rng: &mut SmallRng, total: u32, base: u64) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut left = total;
    let mut addr = base;
    while left > 0 {
        let len = match rng.gen_range(0..5) {
            0 => rng.gen_range(1..=16),
            1 => rng.gen_range(1..=40),
            2 => rng.gen_range(1..=4096),
            3 => 4096,
            _ => rng.gen_range(1..=70_000),
        }
        .min(left);
        out.push(Segment { phys: addr, len });
        // Sometimes a zero-length segment, as scatterlists may hold.
        if rng.gen_bool(0.05) {
            out.push(Segment { phys: addr + 999, len: 0 });
        }
        addr += u64::from(len) + rng.gen_range(0..3) * 4096 + 64;
        left -= len;
    }
    out
}

/// The whole HV path for one kernel request: chunks, each validated by the ABI's validator
/// and run by the vault's own code on `memory`, the bounced results scattered, the IV (CBC,
/// CTR) or tweak block index (XTS) carried from chunk to chunk. Returns the chunks' sizes.
fn run_request(
    memory: &Memory,
    op: RefOp,
    key: &[u8],
    iv: [u8; 16],
    src: &[Segment],
    dst: &[Segment],
    admission: &impl Admission,
) -> Vec<Chunk> {
    use sevault_abi::comm::{Batch, Header};
    use sevault_abi::validate::{validate, ValidRequest};
    use sevault_abi::{KeyLen, Op};
    use sevault_guest::aes::{expand_key, BlockCipher, KeySchedule};
    use sevault_guest::walk::{process, HostWindow};
    let total: u64 = src.iter().map(|s| u64::from(s.len)).sum();
    let xts = op.mode == Mode::Xts;
    let aes_len = if xts { key.len() / 2 } else { key.len() };
    let len = KeyLen::try_from(aes_len as u32).unwrap();
    let mut schedule = KeySchedule::zeroed();
    expand_key(key, len, xts, &mut schedule);
    let mut t =
        Translator::new(SliceCursor::new(src), SliceCursor::new(dst), total, TailRule::of(op.mode, op.direction))
            .unwrap();
    let mut iv_now = iv;
    let mut chunks = Vec::new();
    while let Some(chunk) = t.next_chunk(admission, memory.bounce(), memory).unwrap() {
        let mut batch = Box::new(Batch::zeroed());
        batch.header = Header::new(1, 1);
        let request = &mut batch.requests[0];
        request.op = if op.direction == Direction::Encrypt { Op::Encrypt } else { Op::Decrypt } as u32;
        request.mode = op.mode as u32;
        request.key_len = aes_len as u32;
        request.iv = iv_now;
        request.tweak_block = if xts { chunk.info.first_block } else { 0 };
        request.entry_count = chunk.entries().len() as u32;
        request.total_len = chunk.bytes();
        let request = *request;
        batch.entries[..chunk.entries().len()].copy_from_slice(chunk.entries());
        let valid = match validate(&request, &batch) {
            Ok(ValidRequest::Crypt(valid)) => valid,
            other => panic!("the vault would refuse this chunk ({other:?}): {:?}", chunk.entries()),
        };
        let mut cipher = BlockCipher::new(&schedule, len, op.direction, op.mode, iv_now, request.tweak_block);
        // SAFETY: every entry lies inside `memory` (segments and bounce area); AES-NI is
        // checked by `reference_crypt`'s caller (`require_aes_ni` below).
        unsafe { process(valid.entries, &HostWindow::new(memory.base()), &mut cipher) };
        t.scatter(memory.bounce(), memory).unwrap();
        if !xts {
            iv_now = cipher.iv_out();
        }
        chunks.push(chunk);
    }
    assert_eq!(t.remaining(), 0);
    chunks
}

#[test]
fn random_requests_through_the_translator_and_the_vault_match_rustcrypto() {
    sevault_guest::testutil::require_aes_ni();
    let memory = Memory::new(MEMORY_SIZE);
    let mut rng = SmallRng::seed_from_u64(4);
    for case in 0..400 {
        let mode = [Mode::Ecb, Mode::Cbc, Mode::Ctr, Mode::Xts][case % 4];
        let direction = if rng.gen_bool(0.5) { Direction::Encrypt } else { Direction::Decrypt };
        let op = RefOp { mode, direction };
        let aes_len = [16, 24, 32][case / 4 % 3];
        let key: Vec<u8> = (0..aes_len << (mode == Mode::Xts) as usize).map(|_| rng.gen()).collect();
        let iv: [u8; 16] = rng.gen();
        let partial = if matches!(mode, Mode::Ctr | Mode::Xts) { rng.gen_range(0..16) } else { 0 };
        // Up to ~190 KiB: several chunks. Mostly short ones, as the kernel's tests send.
        let blocks = if rng.gen_bool(0.7) { rng.gen_range(1..=300u32) } else { rng.gen_range(1..=12_000u32) };
        let total = 16 * blocks + partial;
        let src = random_list(&mut rng, total, SRC_BASE);
        let in_place = rng.gen_bool(0.3);
        let dst = if in_place { src.clone() } else { random_list(&mut rng, total, DST_BASE) };
        let plaintext: Vec<u8> = (0..total).map(|_| rng.gen()).collect();
        memory.fill(&src, &plaintext);
        let per_chunk = rng.gen_range(1..=MAX_ENTRIES + 10);
        let chunks = run_request(&memory, op, &key, iv, &src, &dst, &AtMost(per_chunk));
        let (expected, _) = reference_crypt(op, &key, iv, &plaintext);
        assert_eq!(memory.bytes(&dst), expected, "case {case} {mode:?} {direction:?} {total} bytes");
        for chunk in &chunks {
            assert!(chunk.bytes() > 0 && chunk.bytes() <= MAX_BYTES_PER_EXIT);
            assert!(chunk.entries().len() <= per_chunk.min(MAX_ENTRIES));
            assert_eq!(chunk.entries().iter().map(|e| e.len).sum::<u32>(), chunk.bytes());
            for e in chunk.entries() {
                let bounced = e.src >= BOUNCE_PHYS;
                assert!(!in_place || bounced || e.src == e.dst, "in place stays in place");
            }
        }
    }
}

#[test]
fn contiguous_requests_need_no_bounce_and_64_kib_is_one_chunk() {
    let memory = Memory::new(MEMORY_SIZE);
    let src: Vec<Segment> = (0..16).map(|i| Segment { phys: SRC_BASE + i * 0x3000, len: 4096 }).collect();
    let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&src), 65536, TailRule::WholeBlocks).unwrap();
    let chunk = t.next_chunk(&Unlimited, memory.bounce(), &memory).unwrap().unwrap();
    assert_eq!((chunk.bytes(), chunk.entries().len()), (65536, 16));
    assert!(chunk.entries().iter().all(|e| e.src < BOUNCE_PHYS));
    assert!(t.next_chunk(&Unlimited, memory.bounce(), &memory).unwrap().is_none());
    // A 4 KiB XTS sector with a partial block: the bulk but the last whole block in one
    // chunk, then stealing's two one-block steps, bounced, with their tweak block indices
    // (IEEE 1619-2018 §5.3.2: the last whole block through its own tweak, 255; the mixed
    // block through the partial block's, 256).
    let sector = [Segment { phys: SRC_BASE, len: 4096 + 7 }];
    let rule = TailRule::Stealing(Direction::Encrypt);
    let mut t = Translator::new(SliceCursor::new(&sector), SliceCursor::new(&sector), 4103, rule).unwrap();
    let chunk = t.next_chunk(&Unlimited, memory.bounce(), &memory).unwrap().unwrap();
    assert_eq!(chunk.entries().iter().map(|e| e.len).collect::<Vec<_>>(), [4080]);
    assert!(chunk.entries().iter().all(|e| e.src < BOUNCE_PHYS));
    t.scatter(memory.bounce(), &memory).unwrap();
    for first_block in [255, 256] {
        let step = t.next_chunk(&Unlimited, memory.bounce(), &memory).unwrap().unwrap();
        let b = BOUNCE_PHYS;
        assert_eq!(step.entries(), [SgEntry { src: b, dst: b, len: 16, reserved_0x14: 0 }]);
        assert_eq!(step.info.first_block, first_block);
        t.scatter(memory.bounce(), &memory).unwrap();
    }
    assert_eq!(t.remaining(), 0);
    assert!(t.next_chunk(&Unlimited, memory.bounce(), &memory).unwrap().is_none());
}

#[test]
fn a_straddling_block_and_a_split_tail_are_bounced() {
    let memory = Memory::new(MEMORY_SIZE);
    // 20 + 30 + 3 bytes (CTR): block 1 straddles the first two segments, the 5-byte partial
    // block the last two; it goes as a whole block, padded, in the area's last slot.
    let src: Vec<Segment> =
        (0..3).map(|i| Segment { phys: SRC_BASE + i * 1000, len: [20, 30, 3][i as usize] }).collect();
    let dst = [Segment { phys: DST_BASE, len: 53 }];
    let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&dst), 53, TailRule::PartialBlock).unwrap();
    let chunk = t.next_chunk(&Unlimited, memory.bounce(), &memory).unwrap().unwrap();
    let b = BOUNCE_PHYS;
    let tail_at = b + (MAX_BOUNCES * AES_BLOCK) as u64;
    assert_eq!(
        chunk.entries(),
        [
            SgEntry { src: SRC_BASE, dst: DST_BASE, len: 16, reserved_0x14: 0 },
            SgEntry { src: b, dst: b, len: 16, reserved_0x14: 0 },
            SgEntry { src: SRC_BASE + 1012, dst: DST_BASE + 32, len: 16, reserved_0x14: 0 },
            SgEntry { src: tail_at, dst: tail_at, len: 16, reserved_0x14: 0 },
        ]
    );
    assert_eq!(chunk.info.first_block, 0);
    assert_eq!(chunk.bytes(), 64, "the vault's bytes: the padded block counts 16");
    assert_eq!(t.remaining(), 0);
}

#[test]
fn xts_stealing_follows_the_bulk_in_two_steps_of_their_own() {
    // 64 KiB + 5 bytes, decryption: the bulk is all whole blocks but the last (65520 bytes,
    // one chunk); then the last whole block through the partial block's tweak (4096), and
    // the mixed block through its own (4095) — decryption's order (IEEE 1619-2018 §5.4.2).
    let memory = Memory::new(MEMORY_SIZE);
    let total = 65536 + 5;
    let src = [Segment { phys: SRC_BASE, len: total }];
    let rule = TailRule::Stealing(Direction::Decrypt);
    let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&src), total.into(), rule).unwrap();
    assert_eq!(t.remaining(), 65520 + 32, "the vault's bytes: the bulk and two one-block steps");
    let first = t.next_chunk(&Unlimited, memory.bounce(), &memory).unwrap().unwrap();
    assert_eq!((first.bytes(), first.info.first_block), (65520, 0));
    t.scatter(memory.bounce(), &memory).unwrap();
    let mut steps = Vec::new();
    while let Some(step) = t.next_chunk(&Unlimited, memory.bounce(), &memory).unwrap() {
        steps.push((step.bytes(), step.info.first_block));
        t.scatter(memory.bounce(), &memory).unwrap();
    }
    assert_eq!(steps, [(16, 4096), (16, 4095)]);
}

/// One kernel request of `data`, in place in one segment, through the HV's path and the vault.
fn hv_crypt(op: RefOp, key: &[u8], iv: [u8; 16], data: &[u8]) -> Vec<u8> {
    sevault_guest::testutil::require_aes_ni();
    let memory = Memory::new(MEMORY_SIZE);
    let segment = [Segment { phys: SRC_BASE, len: data.len() as u32 }];
    memory.fill(&segment, data);
    run_request(&memory, op, key, iv, &segment, &segment, &Unlimited);
    memory.bytes(&segment)
}

/// The partial blocks the HV does, against published vectors.
#[test]
fn partial_blocks_match_the_published_vectors() {
    use hex_literal::hex;
    let (enc, dec) = (Direction::Encrypt, Direction::Decrypt);
    // NIST SP 800-38A F.5.1: CTR-AES128, the first 53 bytes (a 5-byte partial block).
    let key = hex!("2b7e151628aed2a6abf7158809cf4f3c");
    let counter = hex!("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    let plaintext = hex!(
        "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710"
    );
    let ciphertext = hex!(
        "874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff"
        "5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee"
    );
    let ctr = RefOp { mode: Mode::Ctr, direction: enc };
    assert_eq!(hv_crypt(ctr, &key, counter, &plaintext[..53]), ciphertext[..53]);
    // Each vector's plaintext is bytes 0, 1, 2, ...; encrypted to it and back.
    let xts = |pair: &[u8], tweak: [u8; 16], vectors: &[Vec<u8>]| {
        for expected in vectors {
            let plaintext: Vec<u8> = (0..expected.len() as u8).collect();
            let op = |direction| RefOp { mode: Mode::Xts, direction };
            assert_eq!(&hv_crypt(op(enc), pair, tweak, &plaintext), expected, "{} bytes", expected.len());
            assert_eq!(hv_crypt(op(dec), pair, tweak, expected), plaintext, "{} bytes back", expected.len());
        }
    };
    // IEEE Std 1619-2007 Annex B, XTS-AES-128 vectors 15-18: 17-20 bytes, stealing.
    xts(
        &hex!("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0 bfbebdbcbbbab9b8b7b6b5b4b3b2b1b0"),
        u128::from(0x12_3456_789au64).to_le_bytes(),
        &[
            hex!("6c1625db4671522d3d7599601de7ca09ed").to_vec(),
            hex!("d069444b7a7e0cab09e24447d24deb1fedbf").to_vec(),
            hex!("e5df1351c0544ba1350b3363cd8ef4beedbf9d").to_vec(),
            hex!("9d84c813f719aa2c7be3f66171c7c5c2edbf9dac").to_vec(),
        ],
    );
    // XTS-AES-256 with the keys of IEEE 1619-2007 vector 10 at 17, 31 and 47 bytes (no
    // published vector: these come from OpenSSL 3 through python3-cryptography 48,
    // `Cipher(algorithms.AES(k1 + k2), modes.XTS(tweak)).encryptor()` on bytes 0, 1, 2, ...).
    xts(
        &hex!(
            "2718281828459045235360287471352662497757247093699959574966967627"
            "3141592653589793238462643383279502884197169399375105820974944592"
        ),
        hex!("ff000000000000000000000000000000"),
        &[
            hex!("990b3d5708499ecacac51584606f5d761c").to_vec(),
            hex!("b7a469d9a0a8237d178ad4323b2746321c3b3a102f770386e4836c99e370cf").to_vec(),
            hex!("1c3b3a102f770386e4836c99e370cf9b9cd1c0d093eb321fe784b6fb478d1602ea00803f5e482357a4ae12d414a3e6")
                .to_vec(),
        ],
    );
}

#[test]
fn refusals() {
    let memory = Memory::new(MEMORY_SIZE);
    let src = [Segment { phys: SRC_BASE, len: 32 }];
    for (len, rule) in [
        (31, TailRule::WholeBlocks),
        (15, TailRule::Stealing(Direction::Encrypt)),
        (0, TailRule::Stealing(Direction::Decrypt)),
    ] {
        assert_eq!(
            Translator::new(SliceCursor::new(&src), SliceCursor::new(&src), len, rule).unwrap_err(),
            TranslateError::UnalignedLength
        );
    }
    let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&src), 48, TailRule::WholeBlocks).unwrap();
    let _ = t.next_chunk(&Unlimited, memory.bounce(), &memory);
    assert_eq!(t.next_chunk(&Unlimited, memory.bounce(), &memory).unwrap_err(), TranslateError::ShortScatterlist);
    #[derive(Clone)]
    struct Refuse;
    impl Admission for Refuse {
        fn admit(&mut self, _: &SgEntry) -> Result<bool, TranslateError> {
            Err(TranslateError::Forbidden)
        }
    }
    let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&src), 32, TailRule::WholeBlocks).unwrap();
    assert_eq!(t.next_chunk(&Refuse, memory.bounce(), &memory).unwrap_err(), TranslateError::Forbidden);
    let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&src), 32, TailRule::WholeBlocks).unwrap();
    assert_eq!(t.next_chunk(&AtMost(0), memory.bounce(), &memory).unwrap_err(), TranslateError::NoProgress);
}

#[test]
fn many_straddles_end_the_chunk_at_the_bounce_limit() {
    // 1-byte segments: every block is bounced, MAX_BOUNCES per chunk.
    let memory = Memory::new(MEMORY_SIZE);
    let tiny: Vec<Segment> = (0..16 * 40).map(|i| Segment { phys: SRC_BASE + i * 3, len: 1 }).collect();
    let op = RefOp { mode: Mode::Cbc, direction: Direction::Encrypt };
    let plaintext: Vec<u8> = (0..640).map(|i| i as u8).collect();
    memory.fill(&tiny, &plaintext);
    sevault_guest::testutil::require_aes_ni();
    let chunks = run_request(&memory, op, &[7; 16], [1; 16], &tiny, &tiny, &Unlimited);
    // 40 blocks, MAX_BOUNCES to a chunk.
    let expected: Vec<u32> = (0..40).step_by(MAX_BOUNCES).map(|b| 16 * (40 - b).min(MAX_BOUNCES) as u32).collect();
    assert_eq!(chunks.iter().map(Chunk::bytes).collect::<Vec<_>>(), expected);
    assert_eq!(memory.bytes(&tiny), reference_crypt(op, &[7; 16], [1; 16], &plaintext).0);
}

/// The HV's admission: host window bounds, the forbidden ranges, and the compact window's
/// 512 slots (an out-of-place page-sized entry, unaligned, takes 2 per side).
#[test]
fn window_admission() {
    let forbidden = |addr: u64, len: u64| addr < 0x20_0000 && addr + len > 0x10_0000;
    let entry = |src: u64, dst: u64| SgEntry { src, dst, len: 4096, reserved_0x14: 0 };
    let mut admission = WindowAdmission { forbidden, plan: CompactWindow::default() };
    assert_eq!(admission.admit(&entry(0x10_0000, 0x40_0000)), Err(TranslateError::Forbidden));
    assert_eq!(admission.admit(&entry(0x40_0000, 0x18_0000)), Err(TranslateError::Forbidden), "destination");
    // Memory above 512 GiB (the old fixed window's end) is admitted; only what no nested
    // entry can name (52 bits, AMD APM Vol. 2 §5.4) is not.
    assert_eq!(admission.admit(&entry(512 << 30, 0x40_0000)), Ok(true), "above 512 GiB");
    assert_eq!(admission.admit(&entry((1 << 52) - 4096, 0x40_0000)), Ok(true), "the last page");
    assert_eq!(admission.admit(&entry(1 << 52, 0x40_0000)), Err(TranslateError::OutsideWindow));
    assert_eq!(admission.admit(&entry(u64::MAX - 100, 0x40_0000)), Err(TranslateError::OutsideWindow));
    let mut admission = WindowAdmission { forbidden, plan: CompactWindow::default() };
    assert_eq!(admission.admit(&entry(0x40_0000, 0x40_0000)), Ok(true), "in place: one slot");
    let mut admitted = 0;
    for gib in 1..1000u64 {
        match admission.admit(&entry((gib << 30) + 8, (gib << 30) + (1 << 29) + 8)) {
            Ok(true) => admitted += 1,
            Ok(false) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(admitted, (512 - 1) / 4, "the window's slots end the batch");
    assert_eq!(admission.admit(&entry(0x40_1000, 0x40_1000)), Ok(true), "one slot still fits");
    assert_eq!(admission.admit(&entry(0x40_2000, 0x40_2000)), Ok(true));
    assert_eq!(admission.admit(&entry(0x40_3000, 0x40_3000)), Ok(true));
    assert_eq!(admission.admit(&entry(0x40_4000, 0x40_4000)), Ok(false), "full");
}

/// The worst entry the translator can make — one 64 KiB run per side, unaligned — fits an
/// empty compact window, so every batch makes progress; 15 fit and a 16th does not.
#[test]
fn the_worst_entry_fits_an_empty_window() {
    let worst = |i: u64| SgEntry {
        src: (2 * i + 1) * (1 << 30) - 32 * 1024 + 8,
        dst: (2 * i + 2) * (1 << 30) - 32 * 1024 + 8,
        len: sevault_abi::MAX_BYTES_PER_EXIT,
        reserved_0x14: 0,
    };
    assert_eq!(CompactWindow::pages_for(&worst(0)), 2 * 17);
    let mut admission = WindowAdmission { forbidden: |_: u64, _: u64| false, plan: CompactWindow::default() };
    for i in 0..15 {
        assert_eq!(admission.admit(&worst(i)), Ok(true), "worst entry {i}");
    }
    assert_eq!(admission.admit(&worst(15)), Ok(false), "the window is full after 15");
}
