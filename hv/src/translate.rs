//! From a kernel request's scatterlists to the vault's per-exit entry lists.
//!
//! The source and destination scatterlists are walked together. The vault takes entries of
//! whole blocks only (`sevault_abi::validate::ValidEntries`), so an entry is the longest run
//! that is contiguous in both lists, cut to whole blocks; a block that straddles runs is
//! *bounced*: its 16 bytes are gathered into the vCPU's bounce page, the vault gets an
//! in-place entry there, and after the answer the HV scatters the result to the destination.
//!
//! A partial last block is the HV's too ([`Tail`]). CTR: it is bounced padded to a whole
//! block, and only the keystream's prefix over its bytes goes out. XTS ciphertext stealing
//! (IEEE 1619-2018 §5.3.2, §5.4.2): the last whole block goes alone through its tweak, the HV
//! hands out the prefix of the result as the partial block's output and puts the partial
//! input in front of the rest, and that mixed block goes through the other tweak — two
//! one-block requests in two batches. Keeping straddles and partial blocks out of the vault
//! keeps its image within 4096 bytes (thesis-notes/memory-map.md). What the host sees on the
//! way is no more than it can ask the vault for: a keystream block is the encryption of a
//! counter it chose, the stealing's intermediate block an XTS encryption (decryption) of a
//! block it holds under a tweak index it could name.
//!
//! Entries go into a chunk until the chunk has as many entries as its batch has room for
//! (`MAX_ENTRIES` in all), `MAX_BYTES_PER_EXIT` bytes, [`MAX_BOUNCES`] bounced blocks, or the
//! vCPU's nested window cannot map more pages; the rest continues in the next chunk (one vault
//! request each, in a later batch) with the chained IV, or for XTS with the next tweak block
//! index. The requests of one batch share its entry pool, its nested window and its bounce
//! page ([`MAX_BATCH`] areas of [`BOUNCE_BYTES`]).
use sevault_abi::validate::Direction;
use sevault_abi::{Mode, SgEntry, AES_BLOCK, MAX_BATCH, MAX_BYTES_PER_EXIT, MAX_ENTRIES};

use crate::paging::CompactWindow;

/// A physically contiguous piece of a scatterlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Host-physical address.
    pub phys: u64,
    /// Length in bytes (never 0).
    pub len: u32,
}

/// A position in a scatterlist; cheap to clone, so that a chunk can be planned first.
pub trait SegmentCursor: Clone {
    /// The rest of the current segment, or `None` at the end of the list.
    fn peek(&self) -> Option<Segment>;
    /// Consumes `n` bytes of the current segment (`n ≤ peek().len`).
    fn advance(&mut self, n: u32);
}

/// Whether an entry may join the chunk.
pub trait Admission: Clone {
    /// `Ok(true)`: admitted (and accounted for); `Ok(false)`: no room, end the chunk here;
    /// `Err`: the request must be refused.
    fn admit(&mut self, entry: &SgEntry) -> Result<bool, TranslateError>;
}

/// Host memory by physical address, for bouncing (the kernel: the direct map).
pub trait HostMemory {
    /// Copies `buf.len()` bytes from host-physical `phys` (inside one segment).
    fn read(&self, phys: u64, buf: &mut [u8]);
    /// Copies `buf` to host-physical `phys` (inside one segment).
    fn write(&self, phys: u64, buf: &[u8]);
}

/// Why a request cannot be translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// A scatterlist ends before the request's length.
    ShortScatterlist,
    /// The request length does not suit the mode (ECB/CBC: whole blocks; XTS: ≥ 16 bytes).
    UnalignedLength,
    /// Not even one entry fits a chunk (the nested window is too small for it).
    NoProgress,
    /// An entry names memory the vault must not be given (one of its own pages).
    Forbidden,
    /// An entry is not host-physical memory (it runs past the 52 bits a nested entry holds).
    OutsideWindow,
}

/// What the request's length must be and what becomes of a partial last block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailRule {
    /// ECB, CBC: whole blocks only.
    WholeBlocks,
    /// CTR: any length; a partial last block is done padded.
    PartialBlock,
    /// XTS: at least one block; a partial last block is done by ciphertext stealing, whose
    /// two steps take the tweaks in the order of `direction`.
    Stealing(Direction),
}

impl TailRule {
    /// The rule of `mode` in `direction`.
    pub fn of(mode: Mode, direction: Direction) -> Self {
        match mode {
            Mode::Ecb | Mode::Cbc | Mode::CbcStreams => Self::WholeBlocks,
            Mode::Ctr => Self::PartialBlock,
            Mode::Xts => Self::Stealing(direction),
        }
    }
}

/// The request's partial last block, as far as it has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    /// None left (or none at all).
    Done,
    /// CTR: this many bytes (1..=15) after the bulk, still to hand out.
    Padded(u32),
    /// XTS: stealing over the last whole block and the `partial` bytes after it. Step 1 (the
    /// whole block alone through its own tweak when encrypting, the next one when
    /// decrypting) still to hand out, or (`running`) handed out and not yet scattered.
    Steal { partial: u32, direction: Direction, running: bool },
    /// XTS: step 2 — `block`, the partial input followed by the rest of step 1's result,
    /// through the other tweak — still to hand out, or (`running`) handed out.
    Stolen { partial: u32, direction: Direction, block: [u8; AES_BLOCK], running: bool },
}

impl Tail {
    /// The vault's bytes still to come: a padded block, or the stealing's one-block steps.
    fn vault_bytes(self) -> u64 {
        let blocks = match self {
            Self::Done | Self::Stolen { running: true, .. } => 0,
            Self::Padded(_) | Self::Stolen { .. } | Self::Steal { running: true, .. } => 1,
            Self::Steal { .. } => 2,
        };
        blocks * AES_BLOCK as u64
    }
}

/// Most blocks bounced per chunk (the records sit in the translator).
pub const MAX_BOUNCES: usize = 14;
/// Bytes of the bounce page a chunk can use: its blocks, then a padded CTR block (stealing's
/// steps use the first block alone). Each request of a batch has its own area of the vCPU's
/// bounce page.
pub const BOUNCE_BYTES: usize = (MAX_BOUNCES + 2) * AES_BLOCK;
const _: () = assert!(BOUNCE_BYTES * MAX_BATCH <= 4096, "a batch's bounce areas fit one page");

/// The vCPU's bounce area: host memory the vault may be given, written by the HV.
#[derive(Clone, Copy, Debug)]
pub struct Bounce {
    /// Host-physical address of the area ([`BOUNCE_BYTES`] long).
    pub phys: u64,
    /// The HV's pointer to it.
    pub virt: *mut u8,
}

impl Bounce {
    /// Area `index` (below `MAX_BATCH`) of a bounce page: the one of the batch's request
    /// `index`.
    pub fn area(self, index: usize) -> Self {
        let offset = index.min(MAX_BATCH - 1) * BOUNCE_BYTES;
        Self { phys: self.phys + offset as u64, virt: self.virt.wrapping_add(offset) }
    }
}

/// A bounced range of the chunk: `len` bytes at `offset` into the chunk went to the bounce
/// area at `at`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BounceRecord {
    offset: u32,
    at: u16,
    len: u16,
}

/// What a chunk came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Entries in it.
    pub count: usize,
    /// Total bytes the vault processes (whole blocks: a padded CTR block counts 16).
    pub bytes: u32,
    /// XTS: the tweak block index of the chunk's first block (the blocks before it, but for
    /// stealing's steps, which name their own).
    pub first_block: u32,
    /// Entries of the chunk in the bounce area (a CBC-streams stream must have none).
    pub bounced: usize,
}

/// One vault request's worth of entries, collected (host tests; the kernel writes entries
/// straight into the comm block through [`Translator::next_chunk_with`]).
#[cfg(test)]
#[derive(Clone, Debug)]
pub struct Chunk {
    entries: Vec<SgEntry>,
    info: ChunkInfo,
}

#[cfg(test)]
impl Chunk {
    /// The entries.
    pub fn entries(&self) -> &[SgEntry] {
        &self.entries
    }

    /// Total bytes.
    pub fn bytes(&self) -> u32 {
        self.info.bytes
    }
}

/// Walks a request's source and destination lists chunk by chunk.
#[derive(Clone, Debug)]
pub struct Translator<S, D> {
    src: S,
    dst: D,
    /// Whole-block bytes not yet handed out.
    bulk: u64,
    /// The partial last block.
    tail: Tail,
    /// Bulk bytes handed out so far.
    done: u64,
    /// The destination where the current chunk starts, and the chunk's bounced ranges.
    chunk_dst: D,
    bounces: [BounceRecord; MAX_BOUNCES + 1],
    bounce_count: usize,
}

impl<S: SegmentCursor, D: SegmentCursor> Translator<S, D> {
    /// A translator for `len` bytes from `src` to `dst` under `rule`.
    pub fn new(src: S, dst: D, len: u64, rule: TailRule) -> Result<Self, TranslateError> {
        let partial = (len % AES_BLOCK as u64) as u32;
        if matches!(rule, TailRule::Stealing(_)) && len < AES_BLOCK as u64 {
            return Err(TranslateError::UnalignedLength);
        }
        let (bulk, tail) = match rule {
            _ if partial == 0 => (len, Tail::Done),
            TailRule::WholeBlocks => return Err(TranslateError::UnalignedLength),
            TailRule::PartialBlock => (len - u64::from(partial), Tail::Padded(partial)),
            TailRule::Stealing(direction) => {
                (len - u64::from(partial) - AES_BLOCK as u64, Tail::Steal { partial, direction, running: false })
            }
        };
        Ok(Self {
            chunk_dst: dst.clone(),
            src,
            dst,
            bulk,
            tail,
            done: 0,
            bounces: [BounceRecord::default(); MAX_BOUNCES + 1],
            bounce_count: 0,
        })
    }

    /// The vault's bytes not yet handed out (a padded block counts 16, stealing's steps 16
    /// each).
    pub fn remaining(&self) -> u64 {
        self.bulk + self.tail.vault_bytes()
    }

    /// The next chunk, `None` when done: at most `max_entries` entries (and `MAX_ENTRIES`),
    /// which `emit(i, entry)` receives in order; bounced bytes are gathered into `bounce` from
    /// `memory`. After the vault answered, [`Self::scatter`] puts the bounced results in
    /// place. `admission` carries over from chunk to chunk: the requests of one batch share
    /// one nested window. `NoProgress` when not even one entry fits: nothing changed, the
    /// request can go into a later batch.
    pub fn next_chunk_with<A: Admission>(
        &mut self,
        admission: &mut A,
        max_entries: usize,
        bounce: Bounce,
        memory: &impl HostMemory,
        mut emit: impl FnMut(usize, &SgEntry),
    ) -> Result<Option<ChunkInfo>, TranslateError> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        let max_entries = max_entries.min(MAX_ENTRIES);
        self.chunk_dst = self.dst.clone();
        self.bounce_count = 0;
        if self.bulk == 0 {
            if let Some(info) = self.stealing_step(admission, max_entries, bounce, memory, &mut emit)? {
                return Ok(Some(info));
            }
        }
        let first_block = (self.done / AES_BLOCK as u64) as u32;
        let mut chunk = ChunkInfo { count: 0, bytes: 0, first_block, bounced: 0 };
        // Room for a padded block when this chunk can end the bulk (the vault takes at most
        // MAX_BYTES_PER_EXIT in all).
        let cap = MAX_BYTES_PER_EXIT - if let Tail::Padded(_) = self.tail { AES_BLOCK as u32 } else { 0 };
        while chunk.count < max_entries {
            let remaining_bulk = self.bulk.min(u64::from(cap - chunk.bytes)) as u32;
            let piece = if remaining_bulk >= AES_BLOCK as u32 {
                let run = self.common_run()?.min(remaining_bulk);
                if run >= AES_BLOCK as u32 {
                    Piece::Direct(run - run % AES_BLOCK as u32)
                } else {
                    Piece::Bounced(AES_BLOCK as u32)
                }
            } else if let (0, Tail::Padded(partial)) = (self.bulk, self.tail) {
                Piece::Padded(partial)
            } else {
                break;
            };
            let entry = match piece {
                Piece::Direct(len) => {
                    let (s, d) = (self.src.peek(), self.dst.peek());
                    let (Some(s), Some(d)) = (s, d) else { return Err(TranslateError::ShortScatterlist) };
                    SgEntry { src: s.phys, dst: d.phys, len, reserved_0x14: 0 }
                }
                Piece::Bounced(_) | Piece::Padded(_) => {
                    if self.bounce_count == MAX_BOUNCES && self.bulk > 0 {
                        break;
                    }
                    // Blocks from the start of the area, the padded block after the last slot.
                    let at = if self.bulk > 0 { self.bounce_count * AES_BLOCK } else { MAX_BOUNCES * AES_BLOCK };
                    let phys = bounce.phys + at as u64;
                    SgEntry { src: phys, dst: phys, len: AES_BLOCK as u32, reserved_0x14: 0 }
                }
            };
            if !admission.admit(&entry)? {
                break;
            }
            // The request's bytes the entry stands for: a padded block only its own.
            let len = match piece {
                Piece::Direct(len) | Piece::Bounced(len) | Piece::Padded(len) => len,
            };
            if let Piece::Bounced(_) | Piece::Padded(_) = piece {
                let at = (entry.src - bounce.phys) as usize;
                // SAFETY: `at + 16 <= BOUNCE_BYTES`: inside the area `bounce` names.
                let area = unsafe { core::slice::from_raw_parts_mut(bounce.virt.add(at), AES_BLOCK) };
                // A padded block's bytes after the request's: zeros (the keystream over them
                // stays in the bounce page).
                area.fill(0);
                gather(&mut self.src.clone(), memory, &mut area[..len as usize])?;
                self.bounces[self.bounce_count] = BounceRecord { offset: chunk.bytes, at: at as u16, len: len as u16 };
                self.bounce_count += 1;
            }
            advance(&mut self.src, len)?;
            advance(&mut self.dst, len)?;
            if self.bulk > 0 {
                self.bulk -= u64::from(len);
            } else {
                self.tail = Tail::Done;
            }
            emit(chunk.count, &entry);
            chunk.count += 1;
            chunk.bytes += entry.len;
            // The bulk is out and no padded block follows: stealing goes on in chunks of its own.
            if self.bulk == 0 && !matches!(self.tail, Tail::Padded(_)) {
                break;
            }
        }
        if chunk.count == 0 {
            return Err(TranslateError::NoProgress);
        }
        self.done += u64::from(chunk.bytes);
        chunk.bounced = self.bounce_count;
        Ok(Some(chunk))
    }

    /// Stealing's next step as a chunk of its own, once the bulk is out: one bounced block
    /// with the tweak index of the step (`None` when the tail is no stealing step to hand
    /// out). Step 1 takes the last whole block; step 2 the block step 1's scatter made.
    fn stealing_step<A: Admission>(
        &mut self,
        admission: &mut A,
        max_entries: usize,
        bounce: Bounce,
        memory: &impl HostMemory,
        emit: &mut impl FnMut(usize, &SgEntry),
    ) -> Result<Option<ChunkInfo>, TranslateError> {
        let base = (self.done / AES_BLOCK as u64) as u32;
        // Encryption: the whole block through tweak `base`, the mixed one through `base + 1`;
        // decryption the other way round (IEEE 1619-2018 §5.3.2, §5.4.2).
        let first_block = match self.tail {
            Tail::Steal { direction, running: false, .. } => base + (direction == Direction::Decrypt) as u32,
            Tail::Stolen { direction, running: false, .. } => base + (direction == Direction::Encrypt) as u32,
            _ => return Ok(None),
        };
        let entry = SgEntry { src: bounce.phys, dst: bounce.phys, len: AES_BLOCK as u32, reserved_0x14: 0 };
        if max_entries == 0 || !admission.admit(&entry)? {
            return Err(TranslateError::NoProgress);
        }
        // SAFETY: the area's first block, inside the area `bounce` names.
        let area = unsafe { core::slice::from_raw_parts_mut(bounce.virt, AES_BLOCK) };
        match &mut self.tail {
            // Step 1: the last whole block, from the source, which then points at the partial
            // block (the destination stays at the whole one, for step 2).
            Tail::Steal { running, .. } => {
                gather(&mut self.src, memory, area)?;
                *running = true;
            }
            Tail::Stolen { block, running, .. } => {
                area.copy_from_slice(block);
                *running = true;
            }
            // Excluded by the match above.
            Tail::Done | Tail::Padded(_) => return Ok(None),
        }
        emit(0, &entry);
        Ok(Some(ChunkInfo { count: 1, bytes: AES_BLOCK as u32, first_block, bounced: 1 }))
    }

    /// After the vault answered the last chunk: copies its bounced results from `bounce` to
    /// their destinations. After stealing's step 1: the prefix of its result goes out as the
    /// partial block's output, and the partial input with the rest of the result becomes step
    /// 2's block; after step 2 its result goes out as the last whole block's.
    pub fn scatter(&mut self, bounce: Bounce, memory: &impl HostMemory) -> Result<(), TranslateError> {
        // A stealing step's result: the area's first block (`stealing_step`).
        let step_result = || -> [u8; AES_BLOCK] {
            let mut result = [0; AES_BLOCK];
            // SAFETY: the area's first block, inside the area `bounce` names; a plain copy.
            result.copy_from_slice(unsafe { core::slice::from_raw_parts(bounce.virt, AES_BLOCK) });
            result
        };
        match self.tail {
            Tail::Steal { partial, direction, running: true } => {
                let result = step_result();
                let mut block = result;
                // All reads before the writes: the partial block may be in place.
                gather(&mut self.src, memory, &mut block[..partial as usize])?;
                let mut out = self.dst.clone();
                advance(&mut out, AES_BLOCK as u32)?;
                scatter(&mut out, memory, &result[..partial as usize])?;
                self.tail = Tail::Stolen { partial, direction, block, running: false };
                return Ok(());
            }
            Tail::Stolen { partial, running: true, .. } => {
                scatter(&mut self.dst, memory, &step_result())?;
                advance(&mut self.dst, partial)?;
                self.tail = Tail::Done;
                return Ok(());
            }
            _ => {}
        }
        for record in &self.bounces[..self.bounce_count] {
            let mut dst = self.chunk_dst.clone();
            advance(&mut dst, record.offset)?;
            // SAFETY: the record names a range the chunk's gathering wrote, inside the area.
            let area = unsafe { core::slice::from_raw_parts(bounce.virt.add(record.at.into()), record.len.into()) };
            scatter(&mut dst, memory, area)?;
        }
        Ok(())
    }

    /// The run at the current position that is contiguous in both lists.
    fn common_run(&self) -> Result<u32, TranslateError> {
        match (self.src.peek(), self.dst.peek()) {
            (Some(s), Some(d)) => Ok(s.len.min(d.len)),
            _ => Err(TranslateError::ShortScatterlist),
        }
    }

    /// [`Translator::next_chunk_with`] of a chunk alone in its batch (a fresh copy of
    /// `admission`, every entry of the pool), collecting the entries.
    #[cfg(test)]
    pub fn next_chunk<A: Admission>(
        &mut self,
        admission: &A,
        bounce: Bounce,
        memory: &impl HostMemory,
    ) -> Result<Option<Chunk>, TranslateError> {
        let mut entries = Vec::new();
        let info =
            self.next_chunk_with(&mut admission.clone(), MAX_ENTRIES, bounce, memory, |_, e| entries.push(*e))?;
        Ok(info.map(|info| Chunk { entries, info }))
    }
}

/// What the next entry is made of.
#[derive(Clone, Copy, Debug)]
enum Piece {
    /// Straight from the lists: this many bytes of the common run.
    Direct(u32),
    /// Through the bounce area: this many bytes (one block) gathered from the lists.
    Bounced(u32),
    /// CTR's partial last block: this many bytes gathered, padded to a block with zeros.
    Padded(u32),
}

/// Consumes `n` bytes, across segments.
fn advance(cursor: &mut impl SegmentCursor, mut n: u32) -> Result<(), TranslateError> {
    while n > 0 {
        let segment = cursor.peek().ok_or(TranslateError::ShortScatterlist)?;
        let take = segment.len.min(n);
        cursor.advance(take);
        n -= take;
    }
    Ok(())
}

/// Fills `buf` from the list at `cursor`, across segments.
fn gather(cursor: &mut impl SegmentCursor, memory: &impl HostMemory, buf: &mut [u8]) -> Result<(), TranslateError> {
    let mut at = 0;
    while at < buf.len() {
        let segment = cursor.peek().ok_or(TranslateError::ShortScatterlist)?;
        let take = (segment.len as usize).min(buf.len() - at);
        memory.read(segment.phys, &mut buf[at..at + take]);
        cursor.advance(take as u32);
        at += take;
    }
    Ok(())
}

/// Writes `buf` to the list at `cursor`, across segments.
fn scatter(cursor: &mut impl SegmentCursor, memory: &impl HostMemory, buf: &[u8]) -> Result<(), TranslateError> {
    let mut at = 0;
    while at < buf.len() {
        let segment = cursor.peek().ok_or(TranslateError::ShortScatterlist)?;
        let take = (segment.len as usize).min(buf.len() - at);
        memory.write(segment.phys, &buf[at..at + take]);
        cursor.advance(take as u32);
        at += take;
    }
    Ok(())
}

/// Admission into a batch as the HV decides it: the entry lies in the host memory the HV
/// serves, names no page the HV keeps from the vault (`forbidden`: its own pages, the key
/// slots), and the vCPU's compact window has slots for its pages.
#[derive(Clone)]
pub struct WindowAdmission<F> {
    /// True when `[phys, phys + len)` touches memory the vault must not be given.
    pub forbidden: F,
    /// The window as it would be with the batch's entries so far mapped.
    pub plan: CompactWindow,
}

impl<F: Fn(u64, u64) -> bool + Clone> Admission for WindowAdmission<F> {
    fn admit(&mut self, entry: &SgEntry) -> Result<bool, TranslateError> {
        let len = u64::from(entry.len);
        for addr in [entry.src, entry.dst] {
            // Any host page a nested entry can name: the compact window maps each page of
            // the batch into a slot, so the vault never sees the address itself.
            if addr.checked_add(len).is_none_or(|end| end > crate::paging::MAX_PHYS) {
                return Err(TranslateError::OutsideWindow);
            }
            if (self.forbidden)(addr, len) {
                return Err(TranslateError::Forbidden);
            }
        }
        // Exactly the slots `CompactWindow::map_entry` will take.
        Ok(self.plan.reserve(CompactWindow::pages_for(entry)))
    }
}

/// A cursor over a slice of segments (host tests and benchmarks; the kernel walks real
/// scatterlists).
#[derive(Clone, Debug)]
pub struct SliceCursor<'a> {
    segments: &'a [Segment],
    index: usize,
    offset: u32,
}

impl<'a> SliceCursor<'a> {
    /// A cursor at the start of `segments`.
    pub fn new(segments: &'a [Segment]) -> Self {
        Self { segments, index: 0, offset: 0 }
    }
}

impl SegmentCursor for SliceCursor<'_> {
    fn peek(&self) -> Option<Segment> {
        self.segments[self.index.min(self.segments.len())..]
            .iter()
            .enumerate()
            .map(
                |(i, s)| {
                    if i == 0 {
                        Segment { phys: s.phys + u64::from(self.offset), len: s.len - self.offset }
                    } else {
                        *s
                    }
                },
            )
            .find(|s| s.len > 0)
    }

    fn advance(&mut self, mut n: u32) {
        while n > 0 || self.segments.get(self.index).is_some_and(|s| s.len == self.offset) {
            let Some(segment) = self.segments.get(self.index) else {
                return;
            };
            let take = n.min(segment.len - self.offset);
            self.offset += take;
            n -= take;
            if self.offset == segment.len {
                self.index += 1;
                self.offset = 0;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
