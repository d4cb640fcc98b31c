//! Batches as the kernel builds them (`post`, `check_answer`, `read_answers`, `serve_jobs`),
//! run by the real vault (`sevault-guest`'s `Vault::serve` over a comm block, its key slots
//! and a simulated host memory), against RustCrypto.
use core::ptr::NonNull;

use rand::{rngs::SmallRng, Rng, SeedableRng};
use sevault_abi::comm::{CommBlock, CommBlockPtr, Header, Request};
use sevault_abi::validate::Direction;
use sevault_abi::{KeyLen, Mode, Op, Status, MAX_BATCH};
use sevault_guest::slots::{KeySlot, KeyStore};
use sevault_guest::testutil::{reference_crypt, require_aes_ni, RefOp};
use sevault_guest::vault::Vault;
use sevault_guest::walk::HostWindow;

use super::*;
use crate::translate::tests::{AtMost, Memory, BOUNCE_PHYS, MEMORY_SIZE};
use crate::translate::{Segment, SliceCursor, TailRule, Translator};

/// The vault's side: its comm block, key slots and view of the simulated memory.
struct Vm<'m> {
    page: Box<CommBlock>,
    slots: Vec<KeySlot>,
    memory: &'m Memory,
    sequence: u64,
}

impl<'m> Vm<'m> {
    fn new(memory: &'m Memory) -> Self {
        Self {
            page: Box::new(CommBlock::zeroed()),
            slots: (0..8).map(|_| KeySlot::empty()).collect(),
            memory,
            sequence: 0,
        }
    }

    fn comm(&mut self) -> CommBlockPtr {
        // SAFETY: the box is a live, aligned page while `self` lives.
        unsafe { CommBlockPtr::new(NonNull::from(&mut *self.page)) }
    }

    /// One batch of `calls`, as the kernel's `call_on_this_cpu` runs it, with the vault
    /// itself in place of the VMRUN: at most `limit` requests, `admission` for the window.
    fn round<'s, 'c>(
        &mut self,
        calls: &mut [Call<'c, SliceCursor<'s>, SliceCursor<'s>>],
        limit: usize,
        admission: &mut impl Admission,
    ) -> Posted {
        let comm = self.comm();
        let bounce = self.memory.bounce();
        // The simulated memory is the vault's window as it is (host-physical p at offset p).
        let posted = post(calls, limit, comm, admission, bounce, self.memory, |entry| Some(*entry));
        if posted.count() == 0 {
            return posted;
        }
        self.sequence += 1;
        let header = Header::new(self.sequence, posted.count() as u64);
        comm.write_header(&header);
        // SAFETY: every range a request names lies in the simulated memory (the tests build
        // them so), which nothing else references during the call.
        let window = unsafe { HostWindow::new(self.memory.base()) };
        Vault::new(KeyStore::new(&self.slots), window).serve(comm);
        check_answer(comm, &header, &posted).expect("the vault answers every batch whole");
        read_answers(calls, &posted, comm, bounce, self.memory);
        posted
    }

    /// Sets `key` (an XTS pair when `xts`) into `slot` through a key call of its own batch.
    fn set_key(&mut self, slot: u32, key: &[u8], xts: bool) {
        let aes_len = if xts { key.len() / 2 } else { key.len() };
        let request = Request::set_key(slot, aes_len as u32, xts);
        let mut calls: [Call<'_, SliceCursor<'_>, SliceCursor<'_>>; 1] = [Call::new(request, key, None)];
        self.round(&mut calls, MAX_BATCH, &mut AtMost(0));
        assert!(matches!(calls[0].answer, Some(Ok(Answer { status: Status::Ok, .. }))), "{:?}", calls[0].answer);
    }
}

/// Cuts `total` bytes into segments from `base` on, within `span` bytes: many 1..16-byte
/// ones (blocks that straddle segments are bounced), some of pages, some large.
fn segments(rng: &mut SmallRng, total: u32, base: u64, span: u64) -> Vec<Segment> {
    let mut out = Vec::new();
    let (mut left, mut addr) = (total, base);
    while left > 0 {
        let len = match rng.gen_range(0..4) {
            0 => rng.gen_range(1..=16),
            1 => rng.gen_range(1..=4096),
            2 => 4096,
            _ => rng.gen_range(1..=30_000),
        }
        .min(left);
        out.push(Segment { phys: addr, len });
        addr += u64::from(len) + rng.gen_range(0..2) * 4096 + 32;
        left -= len;
    }
    assert!(addr <= base + span, "the test's list fits its region");
    out
}

/// One kernel request of the test: its lists, input and expected output.
struct Case {
    op: RefOp,
    slot: u32,
    iv: [u8; 16],
    src: Vec<Segment>,
    dst: Vec<Segment>,
    plaintext: Vec<u8>,
    expected: Vec<u8>,
    expected_iv: [u8; 16],
}

const REGION: u64 = 512 << 10;
const FIRST_REGION: u64 = 0x10_0000;

#[test]
fn batches_of_random_requests_match_rustcrypto() {
    require_aes_ni();
    let memory = Memory::new(MEMORY_SIZE);
    let mut vm = Vm::new(&memory);
    let mut rng = SmallRng::seed_from_u64(0x0ba7_c4e5);
    // One key per mode and length class: slots 0..4 single AES keys (ECB, CBC, CTR at
    // 128/192/256 bits), slot 4 an XTS pair of AES-256 keys.
    let keys: Vec<Vec<u8>> = [16, 24, 32, 16, 64].iter().map(|&n| (0..n).map(|_| rng.gen()).collect()).collect();
    for (slot, key) in keys.iter().enumerate() {
        vm.set_key(slot as u32, key, slot == 4);
    }
    let (mut requests, mut batches, mut shared, mut deferred) = (0, 0, 0, 0);
    for round in 0..40 {
        let jobs_now = rng.gen_range(1..=MAX_BATCH);
        assert!((2 * jobs_now as u64) * REGION + FIRST_REGION <= BOUNCE_PHYS, "regions below the bounce page");
        let cases: Vec<Case> = (0..jobs_now)
            .map(|j| {
                let mode = [Mode::Ecb, Mode::Cbc, Mode::Ctr, Mode::Xts][rng.gen_range(0..4)];
                let direction = if rng.gen_bool(0.5) { Direction::Encrypt } else { Direction::Decrypt };
                let slot = if mode == Mode::Xts { 4 } else { rng.gen_range(0..3) };
                let partial = if matches!(mode, Mode::Ctr | Mode::Xts) { rng.gen_range(0..16) } else { 0 };
                // Mostly sectors and pages, sometimes beyond one vault request (64 KiB).
                let blocks = match rng.gen_range(0..5) {
                    0 => 32,
                    1 => 256,
                    2 => rng.gen_range(1..64),
                    3 => rng.gen_range(1..1024),
                    _ => rng.gen_range(4096..9000),
                };
                let total = 16 * blocks + partial;
                let src_base = FIRST_REGION + 2 * j as u64 * REGION;
                let src = segments(&mut rng, total, src_base, REGION);
                let dst =
                    if rng.gen_bool(0.5) { src.clone() } else { segments(&mut rng, total, src_base + REGION, REGION) };
                let plaintext: Vec<u8> = (0..total).map(|_| rng.gen()).collect();
                let iv: [u8; 16] = rng.gen();
                let op = RefOp { mode, direction };
                let (expected, expected_iv) = reference_crypt(op, &keys[slot as usize], iv, &plaintext);
                Case { op, slot, iv, src, dst, plaintext, expected, expected_iv }
            })
            .collect();
        for case in &cases {
            memory.fill(&case.src, &case.plaintext);
        }
        let mut jobs: Vec<Job<SliceCursor<'_>, SliceCursor<'_>>> = cases
            .iter()
            .map(|c| {
                let total = c.plaintext.len() as u64;
                let translator = Translator::new(
                    SliceCursor::new(&c.src),
                    SliceCursor::new(&c.dst),
                    total,
                    TailRule::of(c.op.mode, c.op.direction),
                )
                .unwrap();
                let op = if c.op.direction == Direction::Encrypt { Op::Encrypt } else { Op::Decrypt };
                let key_len = if c.op.mode == Mode::Xts { 32 } else { [16, 24, 32][c.slot as usize] };
                let request = Request {
                    op: op as u32,
                    mode: c.op.mode as u32,
                    key_slot: c.slot,
                    key_len,
                    iv: c.iv,
                    ..Request::default()
                };
                Job { translator, request, counted: false }
            })
            .collect();
        let mut places: [Option<&mut Job<_, _>>; MAX_BATCH] = Default::default();
        for (place, job) in places.iter_mut().zip(jobs.iter_mut()) {
            *place = Some(job);
        }
        // Each batch: a random cap on requests and on entries (the window's room), so that
        // chunks wait for later batches.
        let limit = rng.gen_range(1..=MAX_BATCH);
        let room = [1, 3, 8, 40, 112][round % 5];
        let results = serve_jobs(&mut places, |calls| {
            let posted = vm.round(calls, limit, &mut AtMost(room));
            batches += 1;
            shared += usize::from(posted.count() >= 2);
            deferred += calls.iter().filter(|c| c.answer.is_none()).count();
            assert!(posted.count() >= 1, "every batch makes progress");
        });
        for (j, (case, result)) in cases.iter().zip(results).enumerate() {
            let what = format!("round {round} job {j} {:?} {} bytes", case.op.mode, case.plaintext.len());
            let iv = result.expect("a result per job").unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert_eq!(memory.bytes(&case.dst), case.expected, "{what}");
            if matches!(case.op.mode, Mode::Cbc | Mode::Ctr) {
                assert_eq!(iv, case.expected_iv, "{what}: output IV");
            }
            requests += 1;
        }
        assert!(results[jobs_now..].iter().all(Option::is_none));
    }
    // The test exercised what it is for: batches of several requests, and chunks that had
    // to wait for a later batch.
    assert!(
        shared >= 40 && deferred > 0,
        "{requests} requests, {batches} batches: {shared} shared, {deferred} deferred"
    );
}

#[test]
fn a_refused_request_fails_alone_and_a_key_call_goes_alone() {
    require_aes_ni();
    let memory = Memory::new(MEMORY_SIZE);
    let mut vm = Vm::new(&memory);
    vm.set_key(1, &[7; 16], false);
    let data: Vec<u8> = (0..64u8).collect();
    let seg = |at: u64| vec![Segment { phys: at, len: 64 }];
    let (a, b, c) = (seg(FIRST_REGION), seg(FIRST_REGION + 4096), seg(FIRST_REGION + 8192));
    for list in [&a, &b, &c] {
        memory.fill(list, &data);
    }
    let request = |slot| Request {
        op: Op::Encrypt as u32,
        mode: Mode::Ecb as u32,
        key_slot: slot,
        key_len: 16,
        ..Request::default()
    };
    let mut ta =
        Translator::new(SliceCursor::new(&a), SliceCursor::new(&a), 64, TailRule::of(Mode::Ecb, Direction::Encrypt))
            .unwrap();
    let mut tb =
        Translator::new(SliceCursor::new(&b), SliceCursor::new(&b), 64, TailRule::of(Mode::Ecb, Direction::Encrypt))
            .unwrap();
    let mut tc =
        Translator::new(SliceCursor::new(&c), SliceCursor::new(&c), 64, TailRule::of(Mode::Ecb, Direction::Encrypt))
            .unwrap();
    let key = [9u8; 16];
    let set = Request::set_key(2, 16, false);
    // A key call after a crypt call waits for a batch of its own.
    let mut calls = [
        Call::new(request(1), &[], Some(&mut ta)),
        Call::new(request(3), &[], Some(&mut tb)),
        Call::new(set, &key, None),
        Call::new(request(1), &[], Some(&mut tc)),
    ];
    let posted = vm.round(&mut calls, MAX_BATCH, &mut AtMost(112));
    assert_eq!(posted.calls().collect::<Vec<_>>(), [0, 1, 3]);
    assert_eq!(posted.first_chunks, 3);
    assert!(matches!(calls[0].answer, Some(Ok(Answer { status: Status::Ok, bytes_done: 64, .. }))));
    assert!(matches!(calls[1].answer, Some(Ok(Answer { status: Status::NoKey, bytes_done: 0, .. }))));
    assert!(calls[2].answer.is_none(), "the key call was not posted");
    assert!(matches!(calls[3].answer, Some(Ok(Answer { status: Status::Ok, .. }))));
    assert_eq!(memory.bytes(&b), data, "the refused request wrote nothing");
    let ecb = RefOp { mode: Mode::Ecb, direction: Direction::Encrypt };
    assert_eq!(memory.bytes(&a), reference_crypt(ecb, &[7; 16], [0; 16], &data).0);
    let posted = vm.round(&mut calls, MAX_BATCH, &mut AtMost(112));
    assert_eq!(posted.calls().collect::<Vec<_>>(), [2]);
    assert!(matches!(calls[2].answer, Some(Ok(Answer { status: Status::Ok, .. }))));
    assert_eq!(KeyLen::try_from(16), Ok(KeyLen::Aes128));
}

/// dm-crypt's shape: many CBC encryptions of one key, a sector each. Those of one key and
/// length whose chunk is one direct entry go as the streams of CBC-streams requests (at most
/// `MAX_STREAMS` each); the others — another key, another length, a split list, a decryption
/// — go alone, in between. Every output and output IV against RustCrypto.
#[test]
fn cbc_encryptions_of_one_key_go_as_streams() {
    require_aes_ni();
    let memory = Memory::new(MEMORY_SIZE);
    let mut vm = Vm::new(&memory);
    let (key_a, key_b) = ([0x11u8; 32], [0x22u8; 16]);
    vm.set_key(0, &key_a, false);
    vm.set_key(1, &key_b, false);
    let mut rng = SmallRng::seed_from_u64(0x57ea);
    // (slot, bytes, split into two segments, decrypt)
    let shapes: [(u32, u32, bool, bool); MAX_BATCH] = [
        (0, 4096, false, false),
        (0, 4096, false, false),
        (0, 4096, false, false),
        (1, 4096, false, false),
        (0, 4096, false, false),
        (0, 512, false, false),
        (0, 512, false, false),
        (0, 4096, true, false),
        (0, 4096, false, true),
        (0, 4096, false, false),
        (0, 4096, false, false),
        (0, 4096, false, false),
        (0, 4096, false, false),
        (0, 4096, false, false),
        (0, 4096, false, false),
        (0, 4096, false, false),
    ];
    let cases: Vec<Case> = shapes
        .iter()
        .enumerate()
        .map(|(j, &(slot, bytes, split, decrypt))| {
            let at = FIRST_REGION + j as u64 * 0x4000;
            let src = if split {
                vec![Segment { phys: at, len: 1024 }, Segment { phys: at + 0x2000, len: bytes - 1024 }]
            } else {
                vec![Segment { phys: at, len: bytes }]
            };
            let plaintext: Vec<u8> = (0..bytes).map(|_| rng.gen()).collect();
            let iv: [u8; 16] = rng.gen();
            let direction = if decrypt { Direction::Decrypt } else { Direction::Encrypt };
            let op = RefOp { mode: Mode::Cbc, direction };
            let key: &[u8] = if slot == 0 { &key_a } else { &key_b };
            let (expected, expected_iv) = reference_crypt(op, key, iv, &plaintext);
            Case { op, slot, iv, dst: src.clone(), src, plaintext, expected, expected_iv }
        })
        .collect();
    for case in &cases {
        memory.fill(&case.src, &case.plaintext);
    }
    let mut translators: Vec<_> = cases
        .iter()
        .map(|c| {
            let rule = TailRule::of(Mode::Cbc, c.op.direction);
            Translator::new(SliceCursor::new(&c.src), SliceCursor::new(&c.dst), c.plaintext.len() as u64, rule).unwrap()
        })
        .collect();
    let mut calls: Vec<Call<'_, _, _>> = cases
        .iter()
        .zip(translators.iter_mut())
        .map(|(c, t)| {
            let op = if c.op.direction == Direction::Encrypt { Op::Encrypt } else { Op::Decrypt };
            let key_len = if c.slot == 0 { 32 } else { 16 };
            let request = Request {
                op: op as u32,
                mode: Mode::Cbc as u32,
                key_slot: c.slot,
                key_len,
                iv: c.iv,
                ..Request::default()
            };
            Call::new(request, &[], Some(t))
        })
        .collect();
    let posted = vm.round(&mut calls, MAX_BATCH, &mut AtMost(112));
    // Seven requests: streams {0, 1, 2}; 3 (key B ends them); 4 (its streams end at 5's
    // other length); streams {5, 6}; 7 (two entries); 8 (a decryption); streams {9..=15}.
    assert_eq!(posted.call_count(), MAX_BATCH);
    assert_eq!(posted.streamed, 3 + 2 + 7, "streams of {{0, 1, 2}}, {{5, 6}}, {{9..=15}}");
    assert_eq!(posted.count(), 1 + 1 + 1 + 1 + 1 + 1 + 1, "{posted:?}");
    for (j, (case, call)) in cases.iter().zip(&calls).enumerate() {
        let answer = call.answer.unwrap().unwrap();
        assert_eq!((answer.status, answer.bytes_done), (Status::Ok, case.plaintext.len() as u32), "call {j}");
        assert_eq!(memory.bytes(&case.dst), case.expected, "call {j}");
        assert_eq!(answer.iv_out, case.expected_iv, "call {j}: output IV");
    }
}
