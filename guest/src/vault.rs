//! One request, from the shared comm block to the response.
use sevault_abi::comm::{CommBlockPtr, Response};
use sevault_abi::validate::{validate, CryptRequest, ValidRequest};
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

    /// Serves the request posted in `comm`: snapshot (each shared field read once), wipe the
    /// key bytes from the shared page, validate, execute, and publish the response.
    /// AES-NI must be present (the HV checks before launching the vault).
    // Not inlined: keeps the vault image within its 4096-byte budget.
    #[inline(never)]
    pub fn serve(&self, comm: CommBlockPtr) {
        let mut snapshot = core::mem::MaybeUninit::uninit();
        let (header, request) = comm.snapshot_into(&mut snapshot);
        // Taken: no copy of a key stays in memory the host can read.
        comm.wipe_key();
        let mut response = Response { sequence: header.sequence, ..Response::default() };
        let outcome = match validate(&header, request) {
            Ok(ValidRequest::SetKey { slot, key, bytes }) => self.keys.set(slot, bytes, key),
            Ok(ValidRequest::ClearKey { slot }) => self.keys.clear(slot),
            Ok(ValidRequest::Crypt(crypt)) => self.crypt(&crypt, &mut response),
            Err(status) => Err(status),
        };
        request.key.zeroize();
        response.status = outcome.err().unwrap_or(Status::Ok).into();
        comm.write_response(&response);
    }

    /// Runs an encrypt/decrypt request; on success fills in `bytes_done` and `iv_out`.
    // Not inlined: keeps the vault image within its 4096-byte budget.
    #[inline(never)]
    fn crypt(&self, crypt: &CryptRequest<'_>, response: &mut Response) -> Result<(), Status> {
        let hold = self.keys.read(crypt.slot, crypt.key)?;
        let mut cipher =
            BlockCipher::new(hold.schedule(), crypt.key.len, crypt.direction, crypt.mode, crypt.iv, crypt.tweak_block);
        // SAFETY: the window's contract is `Vault::new`'s caller's; the entries are validated
        // ranges of it; AES-NI is present (see `serve`).
        unsafe { process(crypt.entries, &self.window, &mut cipher) };
        response.bytes_done = u64::from(crypt.total_len);
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
    use sevault_abi::comm::{CommBlock, Header, Request, SgEntry};
    use sevault_abi::validate::Direction;
    use sevault_abi::{KeyLen, Mode, Op, ABI_MAGIC, ABI_VERSION};

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

        fn call(&mut self, request: &Request) -> (Status, Response) {
            self.sequence += 1;
            // SAFETY: the box is a live, aligned page for the whole call.
            let comm = unsafe { CommBlockPtr::new(NonNull::from(&mut *self.page)) };
            let header = Header { magic: ABI_MAGIC, version: ABI_VERSION, sequence: self.sequence };
            comm.post(&header, request);
            // SAFETY: requests in these tests stay inside `memory`.
            let window = unsafe { HostWindow::new(self.memory.as_mut_ptr()) };
            let vault = Vault::new(KeyStore::new(&self.slots), window);
            vault.serve(comm);
            let response = comm.read_response();
            assert_eq!(response.sequence, self.sequence);
            assert_eq!(comm.read_key(), [0; 64], "the vault wipes the key bytes it was given");
            (Status::try_from(response.status).unwrap(), response)
        }
    }

    fn key_op(op: Op, slot: u32, key: &[u8]) -> Request {
        let mut r = Request::zeroed();
        r.op = op as u32;
        r.key_slot = slot;
        r.key_len = key.len() as u32;
        r.key[..key.len()].copy_from_slice(key);
        r
    }

    /// Set-key of an XTS pair (`pair`: data key, then tweak key).
    fn xts_key_op(slot: u32, pair: &[u8]) -> Request {
        let mut r = key_op(Op::SetKey, slot, pair);
        r.mode = Mode::Xts as u32;
        r.key_len = pair.len() as u32 / 2;
        r
    }

    fn crypt(op: Op, mode: Mode, slot: u32, key_len: usize, iv: [u8; 16], at: u64, len: u32) -> Request {
        let mut r = Request::zeroed();
        r.op = op as u32;
        r.mode = mode as u32;
        r.key_slot = slot;
        r.key_len = key_len as u32;
        r.iv = iv;
        r.entry_count = 1;
        r.total_len = u64::from(len);
        r.entries[0] = SgEntry { src: at, dst: at, len, reserved_0x14: 0 };
        r
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
        let plaintext: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
        h.memory[512..612].copy_from_slice(&plaintext);
        assert_eq!(h.call(&xts_key_op(5, &pair)).0, Status::Ok);
        let tweak = [0x11; 16];
        let (status, response) = h.call(&crypt(Op::Encrypt, Mode::Xts, 5, 32, tweak, 512, 100));
        assert_eq!(status, Status::Ok);
        assert_eq!(response.bytes_done, 100);
        assert_eq!(response.iv_out, [0; 16], "the tweak stays in the vault");
        let op = RefOp { mode: Mode::Xts, direction: Direction::Encrypt };
        assert_eq!(&h.memory[512..612], &reference_crypt(op, &pair, tweak, &plaintext).0[..]);
        assert_eq!(h.call(&crypt(Op::Decrypt, Mode::Xts, 5, 32, tweak, 512, 100)).0, Status::Ok);
        assert_eq!(&h.memory[512..612], &plaintext[..]);
        // CTR with the same slot index re-keyed to one AES key.
        assert_eq!(h.call(&key_op(Op::SetKey, 5, &pair[..24])).0, Status::Ok);
        let (status, response) = h.call(&crypt(Op::Encrypt, Mode::Ctr, 5, 24, [0xFE; 16], 512, 100));
        assert_eq!(status, Status::Ok);
        let op = RefOp { mode: Mode::Ctr, direction: Direction::Encrypt };
        let (expected, expected_counter) = reference_crypt(op, &pair[..24], [0xFE; 16], &plaintext);
        assert_eq!(&h.memory[512..612], &expected[..]);
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
        bad_len.total_len = 15;
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
}
