//! One batch of requests, from the shared comm block to the responses.
use sevault_abi::comm::{Batch, BatchResponse, CommBlockPtr, Request, Response};
use sevault_abi::validate::{validate, validate_header, CryptRequest, ValidRequest};
use sevault_abi::Status;
use zeroize::Zeroize;

use crate::aes::BlockCipher;
use crate::slots::KeyStore;
use crate::walk::{process, HostWindow};

/// The vault's state as one vCPU sees it: the shared key slots and the host window.
pub struct Vault<'m> {
    keys: KeyStore<'m>,
    window: HostWindow,
}

impl<'m> Vault<'m> {
    /// A vault over `keys` and `window`.
    pub fn new(keys: KeyStore<'m>, window: HostWindow) -> Self {
        Self { keys, window }
    }

    /// Serves the batch posted in `comm`: snapshot (each shared byte read once), wipe the key
    /// bytes from the shared page, validate the header, then validate, execute and answer each
    /// request in order, and publish the batch's answer last. A refused request does not stop
    /// the others: each has its own status. AES-NI must be present (the HV checks before
    /// launching the vault).
    // Not inlined: keeps the vault image within its 4096-byte budget.
    #[inline(never)]
    pub fn serve(&self, comm: CommBlockPtr) {
        let mut snapshot = core::mem::MaybeUninit::uninit();
        let batch = comm.snapshot_into(&mut snapshot);
        // Taken: no copy of a key stays in memory the host can read.
        comm.wipe_key();
        let (status, count) = match validate_header(&batch.header) {
            Ok(count) => {
                for (index, request) in batch.requests[..count].iter().enumerate() {
                    comm.write_response(index, &self.serve_one(request, batch));
                }
                (Status::Ok, count as u32)
            }
            Err(status) => (status, 0),
        };
        let sequence = batch.header.sequence;
        batch.key.zeroize();
        comm.write_batch_response(&BatchResponse { sequence, status: status.into(), count });
    }

    /// One request of the batch, validated against the batch's own entries and key.
    // Not inlined: keeps the vault image within its 4096-byte budget.
    #[inline(never)]
    fn serve_one(&self, request: &Request, batch: &Batch) -> Response {
        let mut response = Response::default();
        let outcome = match validate(request, batch) {
            Ok(ValidRequest::SetKey { slot, key, bytes }) => self.keys.set(slot, bytes, key),
            Ok(ValidRequest::ClearKey { slot }) => self.keys.clear(slot),
            Ok(ValidRequest::Crypt(crypt)) => self.crypt(&crypt, &mut response),
            Err(status) => Err(status),
        };
        response.status = outcome.err().unwrap_or(Status::Ok).into();
        response
    }

    /// Runs an encrypt/decrypt request; on success fills in `bytes_done` and `iv_out`.
    #[inline(always)]
    fn crypt(&self, crypt: &CryptRequest<'_>, response: &mut Response) -> Result<(), Status> {
        let hold = self.keys.read(crypt.slot, crypt.key)?;
        let mut cipher =
            BlockCipher::new(hold.schedule(), crypt.key.len, crypt.direction, crypt.mode, crypt.iv, crypt.tweak_block);
        // SAFETY: the window's contract is `Vault::new`'s caller's; the entries are validated
        // ranges of it; AES-NI is present (see `serve`).
        unsafe { process(crypt.entries, &self.window, &mut cipher) };
        response.bytes_done = crypt.total_len;
        response.iv_out = cipher.iv_out();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::KeySlot;
    use crate::testutil::{reference_crypt, require_aes_ni, RefOp};
    use core::ptr::NonNull;
    use sevault_abi::comm::{CommBlock, Header, SgEntry};
    use sevault_abi::validate::Direction;
    use sevault_abi::{KeyLen, Mode, Op, MAX_BATCH};

    struct Harness {
        page: Box<CommBlock>,
        slots: Vec<KeySlot>,
        memory: Vec<u8>,
        sequence: u64,
    }

    impl Harness {
        fn new() -> Self {
            Self {
                page: Box::new(CommBlock::zeroed()),
                slots: (0..8).map(|_| KeySlot::empty()).collect(),
                memory: vec![0; 4096],
                sequence: 0,
            }
        }

        /// Posts `batch` (its header's count as given) under a fresh sequence number, runs
        /// the vault, and returns the batch's answer and every request's.
        fn call_batch(&mut self, batch: &Batch) -> (BatchResponse, Vec<Response>) {
            self.sequence += 1;
            // SAFETY: the box is a live, aligned page for the whole call.
            let comm = unsafe { CommBlockPtr::new(NonNull::from(&mut *self.page)) };
            let mut batch = *batch;
            batch.header.sequence = self.sequence;
            comm.post(&batch);
            // SAFETY: requests in these tests stay inside `memory`.
            let window = unsafe { HostWindow::new(self.memory.as_mut_ptr()) };
            let vault = Vault::new(KeyStore::new(&self.slots), window);
            vault.serve(comm);
            let answer = comm.read_batch_response();
            assert_eq!(answer.sequence, self.sequence);
            assert_eq!(comm.read_key(), [0; 64], "the vault wipes the key bytes it was given");
            (answer, (0..MAX_BATCH).map(|i| comm.read_response(i)).collect())
        }

        /// A batch of one request.
        fn call(&mut self, batch: &Batch) -> (Status, Response) {
            let (answer, responses) = self.call_batch(batch);
            assert_eq!((Status::try_from(answer.status), answer.count), (Ok(Status::Ok), 1));
            (Status::try_from(responses[0].status).unwrap(), responses[0])
        }
    }

    fn single(request: Request) -> Batch {
        let mut b = Batch::zeroed();
        b.header = Header::new(0, 1);
        b.requests[0] = request;
        b
    }

    fn key_op(op: Op, slot: u32, key: &[u8]) -> Batch {
        let mut b = single(Request { op: op as u32, key_slot: slot, key_len: key.len() as u32, ..Default::default() });
        b.key[..key.len()].copy_from_slice(key);
        b
    }

    /// Set-key of an XTS pair (`pair`: data key, then tweak key).
    fn xts_key_op(slot: u32, pair: &[u8]) -> Batch {
        let mut b = key_op(Op::SetKey, slot, pair);
        b.requests[0].mode = Mode::Xts as u32;
        b.requests[0].key_len = pair.len() as u32 / 2;
        b
    }

    fn crypt_request(op: Op, mode: Mode, slot: u32, key_len: usize, iv: [u8; 16], len: u32) -> Request {
        Request {
            op: op as u32,
            mode: mode as u32,
            key_slot: slot,
            key_len: key_len as u32,
            iv,
            entry_count: 1,
            total_len: len,
            ..Default::default()
        }
    }

    fn crypt(op: Op, mode: Mode, slot: u32, key_len: usize, iv: [u8; 16], at: u64, len: u32) -> Batch {
        let mut b = single(crypt_request(op, mode, slot, key_len, iv, len));
        b.entries[0] = SgEntry { src: at, dst: at, len, reserved_0x14: 0 };
        b
    }

    #[test]
    fn set_key_encrypt_decrypt_clear_through_the_comm_block() {
        require_aes_ni();
        let mut h = Harness::new();
        let key = [0x42u8; 24];
        let plaintext: Vec<u8> = (0..64u8).collect();
        h.memory[256..320].copy_from_slice(&plaintext);
        assert_eq!(h.call(&key_op(Op::SetKey, 3, &key)).0, Status::Ok);
        let iv = [9; 16];
        let (status, response) = h.call(&crypt(Op::Encrypt, Mode::Cbc, 3, 24, iv, 256, 64));
        assert_eq!(status, Status::Ok);
        assert_eq!(response.bytes_done, 64);
        let op = RefOp { mode: Mode::Cbc, direction: Direction::Encrypt };
        let (expected, expected_iv) = reference_crypt(op, &key, iv, &plaintext);
        assert_eq!(&h.memory[256..320], &expected[..]);
        assert_eq!(response.iv_out, expected_iv);
        let (status, _) = h.call(&crypt(Op::Decrypt, Mode::Cbc, 3, 24, iv, 256, 64));
        assert_eq!(status, Status::Ok);
        assert_eq!(&h.memory[256..320], &plaintext[..]);
        assert_eq!(h.call(&key_op(Op::ClearKey, 3, &[])).0, Status::Ok);
        let before = h.memory.clone();
        let (status, response) = h.call(&crypt(Op::Encrypt, Mode::Ecb, 3, 24, iv, 256, 64));
        assert_eq!(status, Status::NoKey);
        assert_eq!(response.bytes_done, 0);
        assert_eq!(h.memory, before, "a refused request writes nothing");
    }

    #[test]
    fn xts_and_ctr_through_the_comm_block() {
        require_aes_ni();
        let mut h = Harness::new();
        let pair: Vec<u8> = (0..64u8).collect();
        let plaintext: Vec<u8> = (0..96u8).map(|i| i.wrapping_mul(37)).collect();
        h.memory[512..608].copy_from_slice(&plaintext);
        assert_eq!(h.call(&xts_key_op(5, &pair)).0, Status::Ok);
        let tweak = [0x11; 16];
        let (status, response) = h.call(&crypt(Op::Encrypt, Mode::Xts, 5, 32, tweak, 512, 96));
        assert_eq!(status, Status::Ok);
        assert_eq!(response.bytes_done, 96);
        assert_eq!(response.iv_out, [0; 16], "the tweak stays in the vault");
        let op = RefOp { mode: Mode::Xts, direction: Direction::Encrypt };
        assert_eq!(&h.memory[512..608], &reference_crypt(op, &pair, tweak, &plaintext).0[..]);
        assert_eq!(h.call(&crypt(Op::Decrypt, Mode::Xts, 5, 32, tweak, 512, 96)).0, Status::Ok);
        assert_eq!(&h.memory[512..608], &plaintext[..]);
        // CTR with the same slot index re-keyed to one AES key.
        assert_eq!(h.call(&key_op(Op::SetKey, 5, &pair[..24])).0, Status::Ok);
        let (status, response) = h.call(&crypt(Op::Encrypt, Mode::Ctr, 5, 24, [0xFE; 16], 512, 96));
        assert_eq!(status, Status::Ok);
        let op = RefOp { mode: Mode::Ctr, direction: Direction::Encrypt };
        let (expected, expected_counter) = reference_crypt(op, &pair[..24], [0xFE; 16], &plaintext);
        assert_eq!(&h.memory[512..608], &expected[..]);
        assert_eq!(response.iv_out, expected_counter);
    }

    #[test]
    fn refusals_answer_with_a_status_and_touch_nothing() {
        require_aes_ni();
        let mut h = Harness::new();
        h.call(&key_op(Op::SetKey, 0, &[1; 16]));
        let before = h.memory.clone();
        let mut bad_len = crypt(Op::Encrypt, Mode::Ecb, 0, 16, [0; 16], 0, 16);
        bad_len.entries[0].len = 15;
        bad_len.requests[0].total_len = 15;
        assert_eq!(h.call(&bad_len).0, Status::UnalignedLength);
        assert_eq!(h.call(&crypt(Op::Encrypt, Mode::Ecb, 0, 32, [0; 16], 0, 16)).0, Status::KeyLenMismatch);
        assert_eq!(h.call(&crypt(Op::Encrypt, Mode::Ecb, 1, 16, [0; 16], 0, 16)).0, Status::NoKey);
        assert_eq!(h.call(&key_op(Op::SetKey, 0, &[1; 20])).0, Status::BadKeyLen);
        // One AES key is not an XTS pair of half its length, nor the other way round.
        assert_eq!(h.call(&crypt(Op::Encrypt, Mode::Xts, 0, 16, [0; 16], 0, 32)).0, Status::KeyLenMismatch);
        assert_eq!(h.call(&xts_key_op(2, &[7; 32])).0, Status::Ok);
        assert_eq!(h.call(&crypt(Op::Encrypt, Mode::Ecb, 2, 16, [0; 16], 0, 16)).0, Status::KeyLenMismatch);
        assert_eq!(h.call(&crypt(Op::Encrypt, Mode::Ctr, 2, 32, [0; 16], 0, 16)).0, Status::KeyLenMismatch);
        assert_eq!(h.memory, before);
        // A key too short for its stated length cannot exist: `key_len` picks the bytes.
        assert_eq!(KeyLen::try_from(20), Err(20));
    }

    #[test]
    fn a_batch_serves_each_request_in_order_with_its_own_status() {
        require_aes_ni();
        let mut h = Harness::new();
        let (key_a, pair_b) = ([0x21u8; 16], [0x37u8; 64]);
        assert_eq!(h.call(&key_op(Op::SetKey, 1, &key_a)).0, Status::Ok);
        assert_eq!(h.call(&xts_key_op(2, &pair_b)).0, Status::Ok);
        let data: Vec<u8> = (0..=255u8).cycle().take(3 * 512).collect();
        h.memory[..data.len()].copy_from_slice(&data);
        // Four requests: CBC on 0..512 (slot 1), a refused one (slot 3 is empty), XTS on
        // 512..1024 (slot 2) in two entries, CTR on 1024..1536 out of place to 2048.
        let mut b = Batch::zeroed();
        b.header = Header::new(0, 4);
        b.requests[0] = Request { first_entry: 0, ..crypt_request(Op::Encrypt, Mode::Cbc, 1, 16, [1; 16], 512) };
        b.requests[1] = Request { first_entry: 1, ..crypt_request(Op::Encrypt, Mode::Ecb, 3, 16, [0; 16], 512) };
        b.requests[2] =
            Request { first_entry: 2, entry_count: 2, ..crypt_request(Op::Encrypt, Mode::Xts, 2, 32, [2; 16], 512) };
        b.requests[3] = Request { first_entry: 4, ..crypt_request(Op::Encrypt, Mode::Ctr, 1, 16, [3; 16], 512) };
        b.entries[0] = SgEntry { src: 0, dst: 0, len: 512, reserved_0x14: 0 };
        b.entries[1] = SgEntry { src: 0, dst: 0, len: 512, reserved_0x14: 0 };
        b.entries[2] = SgEntry { src: 512, dst: 512, len: 256, reserved_0x14: 0 };
        b.entries[3] = SgEntry { src: 768, dst: 768, len: 256, reserved_0x14: 0 };
        b.entries[4] = SgEntry { src: 1024, dst: 2048, len: 512, reserved_0x14: 0 };
        let (answer, responses) = h.call_batch(&b);
        assert_eq!((answer.status, answer.count), (Status::Ok as u32, 4));
        let statuses: Vec<_> = responses[..4].iter().map(|r| Status::try_from(r.status).unwrap()).collect();
        assert_eq!(statuses, [Status::Ok, Status::NoKey, Status::Ok, Status::Ok]);
        assert_eq!(responses[1].bytes_done, 0);
        assert!(responses[4..].iter().all(|r| *r == Response::default()), "nothing beyond the count");
        let cbc = RefOp { mode: Mode::Cbc, direction: Direction::Encrypt };
        let (expected, iv) = reference_crypt(cbc, &key_a, [1; 16], &data[..512]);
        assert_eq!((&h.memory[..512], responses[0].iv_out), (&expected[..], iv));
        let xts = RefOp { mode: Mode::Xts, direction: Direction::Encrypt };
        assert_eq!(&h.memory[512..1024], &reference_crypt(xts, &pair_b, [2; 16], &data[512..1024]).0[..]);
        let ctr = RefOp { mode: Mode::Ctr, direction: Direction::Encrypt };
        let (expected, counter) = reference_crypt(ctr, &key_a, [3; 16], &data[1024..1536]);
        assert_eq!((&h.memory[2048..2560], responses[3].iv_out), (&expected[..], counter));
        assert_eq!(&h.memory[1024..1536], &data[1024..1536], "out of place: the source stays");
    }

    #[test]
    fn cbc_streams_through_the_comm_block() {
        require_aes_ni();
        let mut h = Harness::new();
        let key = [0x5au8; 32];
        assert_eq!(h.call(&key_op(Op::SetKey, 2, &key)).0, Status::Ok);
        // Three streams of 256 bytes at 0, 512 (out of place to 1024) and 1536; their IVs at
        // 2048, answered there with each stream's last ciphertext block.
        let data: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 251) as u8).collect();
        h.memory[..2048].copy_from_slice(&data);
        let ivs: Vec<u8> = (0..48u8).collect();
        h.memory[2048..2096].copy_from_slice(&ivs);
        let mut b =
            single(Request { entry_count: 4, ..crypt_request(Op::Encrypt, Mode::CbcStreams, 2, 32, [0; 16], 816) });
        b.entries[0] = SgEntry { src: 0, dst: 0, len: 256, reserved_0x14: 0 };
        b.entries[1] = SgEntry { src: 512, dst: 1024, len: 256, reserved_0x14: 0 };
        b.entries[2] = SgEntry { src: 1536, dst: 1536, len: 256, reserved_0x14: 0 };
        b.entries[3] = SgEntry { src: 2048, dst: 2048, len: 48, reserved_0x14: 0 };
        let (status, response) = h.call(&b);
        assert_eq!((status, response.bytes_done, response.iv_out), (Status::Ok, 816, [0; 16]));
        let cbc = RefOp { mode: Mode::Cbc, direction: Direction::Encrypt };
        for (k, (from, to)) in [(0, 0), (512, 1024), (1536, 1536)].into_iter().enumerate() {
            let iv: [u8; 16] = ivs[16 * k..16 * k + 16].try_into().unwrap();
            let (expected, expected_iv) = reference_crypt(cbc, &key, iv, &data[from..from + 256]);
            assert_eq!(&h.memory[to..to + 256], &expected[..], "stream {k}");
            assert_eq!(&h.memory[2048 + 16 * k..2064 + 16 * k], &expected_iv[..], "stream {k}'s output IV");
        }
        assert_eq!(&h.memory[512..768], &data[512..768], "out of place: the source stays");
        // Refused before anything is written: a decryption, or IVs for two streams of three.
        let before = h.memory.clone();
        let mut decrypt = b;
        decrypt.requests[0].op = Op::Decrypt as u32;
        assert_eq!(h.call(&decrypt).0, Status::BadStreams);
        let mut short = b;
        short.entries[3].len = 32;
        short.requests[0].total_len = 800;
        assert_eq!(h.call(&short).0, Status::BadStreams);
        assert_eq!(h.memory, before);
    }

    #[test]
    fn a_bad_batch_header_runs_no_request() {
        require_aes_ni();
        let mut h = Harness::new();
        h.call(&key_op(Op::SetKey, 0, &[1; 16]));
        let before = h.memory.clone();
        let mut b = crypt(Op::Encrypt, Mode::Ecb, 0, 16, [0; 16], 0, 16);
        for (count, status) in [(0, Status::BadBatchCount), (MAX_BATCH as u64 + 1, Status::BadBatchCount)] {
            b.header.count = count;
            let (answer, responses) = h.call_batch(&b);
            assert_eq!((Status::try_from(answer.status), answer.count), (Ok(status), 0));
            assert_eq!(responses[0], Response::default());
        }
        b.header = Header { version: 5, ..Header::new(0, 1) };
        assert_eq!(h.call_batch(&b).0.status, Status::BadVersion as u32);
        // A key in a batch whose header is refused is wiped all the same (`call_batch`
        // checks the page) and never reaches a slot.
        let mut set = key_op(Op::SetKey, 4, &[9; 16]);
        set.header.magic = 0;
        assert_eq!(h.call_batch(&set).0.status, Status::BadMagic as u32);
        assert_eq!(h.call(&crypt(Op::Encrypt, Mode::Ecb, 4, 16, [0; 16], 0, 16)).0, Status::NoKey);
        assert_eq!(h.memory, before);
    }
}
