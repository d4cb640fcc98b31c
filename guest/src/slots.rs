//! The vault's key slots: private memory at `KEY_SLOTS_BASE`, shared by all vCPUs.
//!
//! A slot holds the expanded schedules of one key; the host only ever holds the slot's index.
//! Because any vCPU may run any request, two vCPUs may touch one slot at once — an honest
//! kernel never does that (it does not race `setkey` with requests on one transform), a
//! hostile host might, to mix two keys' schedules. So every slot has a non-blocking
//! reader/writer lock: set/clear take it exclusively, encrypt/decrypt take it shared, and a
//! vCPU that finds it taken answers [`Status::SlotBusy`] instead of spinning (a host that
//! deschedules the holder could otherwise stall it forever).
use core::cell::UnsafeCell;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, Ordering};

use sevault_abi::validate::KeySlotIndex;
use sevault_abi::{SlotKey, Status, KEY_SLOT_COUNT, KEY_SLOT_SIZE};
use zeroize::Zeroize;

use crate::aes::{expand_key, KeySchedule};

/// Lock word: this bit set = a writer holds the slot; the bits below count readers.
const WRITER: u32 = 1 << 31;

/// One key slot, laid out for the vault's private memory.
#[repr(C, align(64))]
pub struct KeySlot {
    schedule: UnsafeCell<KeySchedule>,
    /// The key held ([`SlotKey::to_raw`]), 0 = empty. Written only under the write lock.
    key: AtomicU32,
    lock: AtomicU32,
    reserved_0x2d8: [u8; 0x128],
}

const _: () = {
    assert!(size_of::<KeySlot>() as u64 == KEY_SLOT_SIZE);
    assert!(offset_of!(KeySlot, schedule) == 0x000);
    assert!(offset_of!(KeySlot, key) == 0x2D0);
    assert!(offset_of!(KeySlot, lock) == 0x2D4);
    assert!(offset_of!(KeySlot, reserved_0x2d8) == 0x2D8);
};

// SAFETY: the schedule is only written under the exclusive lock and only read under a shared
// one (see `KeyStore`), so sharing `&KeySlot` across vCPUs/threads does not race.
unsafe impl Sync for KeySlot {}

impl KeySlot {
    /// An empty, unlocked slot (what zero-filled memory is).
    pub const fn empty() -> Self {
        Self {
            schedule: UnsafeCell::new(KeySchedule::zeroed()),
            key: AtomicU32::new(0),
            lock: AtomicU32::new(0),
            reserved_0x2d8: [0; 0x128],
        }
    }

    fn held_key(&self) -> Option<SlotKey> {
        SlotKey::from_raw(self.key.load(Ordering::Acquire))
    }
}

/// The table of [`KEY_SLOT_COUNT`] slots.
pub struct KeyStore<'m> {
    slots: &'m [KeySlot],
}

/// A shared hold on a slot's schedule; released on drop.
pub struct SlotReader<'m> {
    slot: &'m KeySlot,
}

impl SlotReader<'_> {
    /// The schedule, readable while the hold lasts.
    pub fn schedule(&self) -> &KeySchedule {
        // SAFETY: a shared hold excludes writers until drop; the borrow ends before that.
        unsafe { &*self.slot.schedule.get() }
    }
}

impl Drop for SlotReader<'_> {
    fn drop(&mut self) {
        self.slot.lock.fetch_sub(1, Ordering::Release);
    }
}

/// The exclusive hold on a slot; publishes `key` and releases on drop.
struct SlotWriter<'m> {
    slot: &'m KeySlot,
    key: u32,
}

impl SlotWriter<'_> {
    fn schedule(&mut self) -> &mut KeySchedule {
        // SAFETY: the exclusive hold excludes every reader and writer until drop; the borrow
        // of `self` ends before that.
        unsafe { &mut *self.slot.schedule.get() }
    }
}

impl Drop for SlotWriter<'_> {
    fn drop(&mut self) {
        self.slot.key.store(self.key, Ordering::Release);
        self.slot.lock.fetch_sub(WRITER, Ordering::Release);
    }
}

impl<'m> KeyStore<'m> {
    /// Uses `slots`, which must have [`KEY_SLOT_COUNT`] entries (shorter tables make the
    /// missing slots read as empty and refuse keys).
    pub fn new(slots: &'m [KeySlot]) -> Self {
        Self { slots }
    }

    fn slot(&self, index: KeySlotIndex) -> Result<&'m KeySlot, Status> {
        self.slots.get(index.get() as usize).ok_or(Status::BadSlot)
    }

    /// The exclusive hold on the slot; the slot then reads as holding `key` once dropped.
    fn write(&self, index: KeySlotIndex) -> Result<SlotWriter<'m>, Status> {
        let slot = self.slot(index)?;
        slot.lock.compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed).map_err(|_| Status::SlotBusy)?;
        Ok(SlotWriter { slot, key: 0 })
    }

    /// Expands `bytes` (`key.bytes()` of them) into the slot, replacing what it held.
    #[inline(always)]
    pub fn set(&self, index: KeySlotIndex, bytes: &[u8], key: SlotKey) -> Result<(), Status> {
        self.store(index, Some((bytes, key)))
    }

    /// Zeroizes the slot.
    #[inline(always)]
    pub fn clear(&self, index: KeySlotIndex) -> Result<(), Status> {
        self.store(index, None)
    }

    /// Zeroizes the slot, then expands the key into it if there is one: nothing of an
    /// earlier key (an XTS pair's tweak schedule under a single key) stays behind.
    // Not inlined, and one body for set and clear: the vault image's 4096-byte budget.
    #[inline(never)]
    fn store(&self, index: KeySlotIndex, key: Option<(&[u8], SlotKey)>) -> Result<(), Status> {
        let mut writer = self.write(index)?;
        writer.schedule().zeroize();
        if let Some((bytes, key)) = key {
            expand_key(bytes, key.len, key.xts, writer.schedule());
            writer.key = key.to_raw();
        }
        Ok(())
    }

    /// A shared hold on the slot, if it holds `key`.
    // Inlined into its one caller: 82 bytes less image than a call.
    #[inline(always)]
    pub fn read(&self, index: KeySlotIndex, key: SlotKey) -> Result<SlotReader<'m>, Status> {
        let slot = self.slot(index)?;
        // Optimistic: count ourselves in, back out if a writer holds the slot. A writer only
        // takes a slot with no readers and releases by clearing its own bit, so the counts
        // of readers that come and go meanwhile stay exact.
        let reader = SlotReader { slot };
        if slot.lock.fetch_add(1, Ordering::Acquire) & WRITER != 0 {
            return Err(Status::SlotBusy);
        }
        // Checked under the hold: the slot cannot change until the reader drops.
        match slot.key.load(Ordering::Acquire) {
            held if held == key.to_raw() => Ok(reader),
            0 => Err(Status::NoKey),
            _ => Err(Status::KeyLenMismatch),
        }
    }
}

impl KeyStore<'_> {
    /// The key `index` holds (`None`: empty or out of range), as a snapshot.
    pub fn key(&self, index: KeySlotIndex) -> Option<SlotKey> {
        self.slot(index).ok().and_then(KeySlot::held_key)
    }
}

/// Number of slots the vault's memory holds.
pub const SLOT_COUNT: usize = KEY_SLOT_COUNT as usize;

#[cfg(test)]
mod tests {
    use super::*;
    use sevault_abi::KeyLen;

    fn table() -> Vec<KeySlot> {
        (0..4).map(|_| KeySlot::empty()).collect()
    }

    const AES_128: SlotKey = SlotKey { len: KeyLen::Aes128, xts: false };
    const AES_192: SlotKey = SlotKey { len: KeyLen::Aes192, xts: false };
    const XTS_128: SlotKey = SlotKey { len: KeyLen::Aes128, xts: true };

    #[test]
    fn set_read_clear() {
        let slots = table();
        let store = KeyStore::new(&slots);
        let i = KeySlotIndex::new(2).unwrap();
        assert_eq!(store.key(i), None);
        assert!(matches!(store.read(i, AES_128), Err(Status::NoKey)));
        store.set(i, &[1; 24], AES_192).unwrap();
        assert_eq!(store.key(i), Some(AES_192));
        assert!(matches!(store.read(i, AES_128), Err(Status::KeyLenMismatch)));
        {
            let reader = store.read(i, AES_192).unwrap();
            assert_ne!(reader.schedule().enc.round_key(12), [0; 16]);
            // A writer is refused while a reader holds the slot, and a second reader is not.
            assert_eq!(store.set(i, &[2; 16], AES_128), Err(Status::SlotBusy));
            assert_eq!(store.clear(i), Err(Status::SlotBusy));
            let _second = store.read(i, AES_192).unwrap();
        }
        store.clear(i).unwrap();
        assert_eq!(store.key(i), None);
        // SAFETY: no hold is alive; the test owns the table.
        let schedule = unsafe { &*slots[2].schedule.get() };
        assert_eq!(*schedule, KeySchedule::zeroed(), "clear zeroizes the schedules");
        assert_eq!(slots[2].lock.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_xts_pair_is_its_own_kind_of_key() {
        let slots = table();
        let store = KeyStore::new(&slots);
        let i = KeySlotIndex::new(1).unwrap();
        store.set(i, &[9; 32], XTS_128).unwrap();
        assert_eq!(store.key(i), Some(XTS_128));
        assert!(matches!(store.read(i, AES_128), Err(Status::KeyLenMismatch)));
        let reader = store.read(i, XTS_128).unwrap();
        assert_ne!(reader.schedule().tweak.round_key(10), [0; 16], "the tweak key is expanded");
        drop(reader);
        store.clear(i).unwrap();
        // SAFETY: no hold is alive; the test owns the table.
        assert_eq!(unsafe { &*slots[1].schedule.get() }.tweak, crate::aes::RoundKeys::zeroed());
    }

    #[test]
    fn a_new_key_leaves_nothing_of_the_old_one() {
        let slots = table();
        let store = KeyStore::new(&slots);
        let i = KeySlotIndex::new(3).unwrap();
        store.set(i, &[9; 64], SlotKey { len: KeyLen::Aes256, xts: true }).unwrap();
        store.set(i, &[5; 16], AES_128).unwrap();
        // SAFETY: no other holder of the slot in this test.
        let schedule = unsafe { &*slots[3].schedule.get() };
        assert_eq!(schedule.tweak, crate::aes::RoundKeys::zeroed(), "the pair's tweak schedule is gone");
        assert_eq!(schedule.enc.0[44..], [0; 16], "AES-128 uses 11 round keys; the rest is zero");
    }

    #[test]
    fn readers_are_refused_while_a_writer_holds_the_slot() {
        let slots = table();
        let store = KeyStore::new(&slots);
        let i = KeySlotIndex::new(0).unwrap();
        store.set(i, &[1; 16], AES_128).unwrap();
        slots[0].lock.store(WRITER, Ordering::Relaxed);
        assert!(matches!(store.read(i, AES_128), Err(Status::SlotBusy)));
        assert_eq!(slots[0].lock.load(Ordering::Relaxed), WRITER, "a refused reader backs out");
        slots[0].lock.store(0, Ordering::Relaxed);
        assert!(store.read(i, AES_128).is_ok());
        assert_eq!(slots[0].lock.load(Ordering::Relaxed), 0, "a reader releases on drop");
    }

    #[test]
    fn slots_beyond_a_short_table_are_refused() {
        let slots = table();
        let store = KeyStore::new(&slots);
        let i = KeySlotIndex::new(10).unwrap();
        assert_eq!(store.key(i), None);
        assert_eq!(store.set(i, &[0; 16], AES_128), Err(Status::BadSlot));
        assert!(matches!(store.read(i, AES_128), Err(Status::BadSlot)));
    }
}
