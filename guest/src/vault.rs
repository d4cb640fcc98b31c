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
        let (header, mut request) = comm.snapshot();
        // Taken: no copy of a key stays in memory the host can read.
        comm.wipe_key();
        let mut response = Response { sequence: header.sequence, ..Response::default() };
        let outcome = match validate(&header, &request, &self.keys) {
            Ok(ValidRequest::SetKey { slot, key_len, key }) => self.keys.set(slot, key, key_len),
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
        let hold = self.keys.read(crypt.slot, crypt.key_len)?;
        let mut cipher = BlockCipher::new(hold.schedule(), crypt.key_len, crypt.direction, crypt.mode, crypt.iv);
        // SAFETY: the window's contract is `Vault::new`'s caller's; the entries are validated
        // ranges of it; AES-NI is present (see `serve`).
        let done = unsafe { process(crypt.entries, &self.window, &mut cipher) };
        // Validation guarantees whole blocks; should that ever fail, say so rather than
        // answer with a partial result.
        response.bytes_done = done.ok_or(Status::UnalignedLength)?;
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
            assert_eq!(comm.read_key(), [0; 32], "the vault wipes the key bytes it was given");
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
        assert_eq!(h.memory, before);
        // A key too short for its stated length cannot exist: `key_len` picks the bytes.
        assert_eq!(KeyLen::try_from(20), Err(20));
    }
}
