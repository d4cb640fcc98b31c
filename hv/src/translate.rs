//! From a kernel request's scatterlists to the vault's per-exit entry lists.
//!
//! The source and destination scatterlists are walked together. The vault takes entries of
//! whole blocks only, except the request's last, which also holds the mode's tail (CTR's
//! partial block; XTS's last whole block and the partial one, for ciphertext stealing) — see
//! `sevault_abi::validate::ValidEntries`. So an entry is the longest run that is contiguous
//! in both lists, cut to whole blocks; a block that straddles runs is *bounced*: its 16
//! bytes are gathered into the vCPU's bounce page, the vault gets an in-place entry there,
//! and after the answer the HV scatters the result to the destination. The tail goes the
//! same way when it is not contiguous. Keeping straddles out of the vault keeps its image
//! within 4096 bytes (thesis-notes/memory-map.md); the data is the host's own, so bouncing
//! it through host memory shows the host nothing new.
//!
//! Entries go into a chunk until the chunk has as many entries as its batch has room for
//! (`MAX_ENTRIES` in all), `MAX_BYTES_PER_EXIT` bytes, [`MAX_BOUNCES`] bounced blocks, or the
//! vCPU's nested window cannot map more pages; the rest continues in the next chunk (one vault
//! request each, in a later batch) with the chained IV, or for XTS with the next tweak block
//! index. The requests of one batch share its entry pool, its nested window and its bounce
//! page ([`MAX_BATCH`] areas of [`BOUNCE_BYTES`]).
use sevault_abi::validate::tail_len;
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

/// What the request's length must be and where its tail goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailRule {
    /// ECB, CBC: whole blocks only, no tail.
    WholeBlocks,
    /// CTR: any length; a partial last block is the tail.
    PartialBlock,
    /// XTS: at least one block; with a partial last block, the tail is it and the whole
    /// block before it.
    Stealing,
}

impl TailRule {
    /// The rule of `mode`.
    pub fn of(mode: Mode) -> Self {
        match mode {
            Mode::Ecb | Mode::Cbc => Self::WholeBlocks,
            Mode::Ctr => Self::PartialBlock,
            Mode::Xts => Self::Stealing,
        }
    }

    /// The tail of a `len`-byte request (`sevault_abi::validate::tail_len`, the vault's
    /// rule), or `None` if the mode cannot take `len` bytes.
    pub fn tail_len(self, len: u64) -> Option<u32> {
        let partial = len % AES_BLOCK as u64;
        let mode = match self {
            Self::WholeBlocks if partial != 0 => return None,
            Self::Stealing if len < AES_BLOCK as u64 => return None,
            Self::WholeBlocks => Mode::Ecb,
            Self::PartialBlock => Mode::Ctr,
            Self::Stealing => Mode::Xts,
        };
        Some(tail_len(mode, partial as usize) as u32)
    }
}

/// Most blocks bounced per chunk (the records sit in the translator).
pub const MAX_BOUNCES: usize = 14;
/// Bytes of the bounce page a chunk can use: its blocks, then the tail (≤ 31 bytes). Each
/// request of a batch has its own area of the vCPU's bounce page.
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
    /// Total bytes (whole blocks, plus the tail in the chunk that carries it).
    pub bytes: u32,
    /// Blocks of the request before this chunk (XTS: the tweak block index).
    pub first_block: u32,
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
    /// The tail's length, 0 once handed out (or if there is none).
    tail: u32,
    /// Bytes handed out so far.
    done: u64,
    /// The destination where the current chunk starts, and the chunk's bounced ranges.
    chunk_dst: D,
    bounces: [BounceRecord; MAX_BOUNCES + 1],
    bounce_count: usize,
}

impl<S: SegmentCursor, D: SegmentCursor> Translator<S, D> {
    /// A translator for `len` bytes from `src` to `dst` under `rule`.
    pub fn new(src: S, dst: D, len: u64, rule: TailRule) -> Result<Self, TranslateError> {
        let tail = rule.tail_len(len).ok_or(TranslateError::UnalignedLength)?;
        Ok(Self {
            chunk_dst: dst.clone(),
            src,
            dst,
            bulk: len - u64::from(tail),
            tail,
            done: 0,
            bounces: [BounceRecord::default(); MAX_BOUNCES + 1],
            bounce_count: 0,
        })
    }

    /// Bytes not yet handed out.
    pub fn remaining(&self) -> u64 {
        self.bulk + u64::from(self.tail)
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
        let first_block = (self.done / AES_BLOCK as u64) as u32;
        let mut chunk = ChunkInfo { count: 0, bytes: 0, first_block };
        // Room for the tail when this chunk can end the bulk (the vault takes at most
        // MAX_BYTES_PER_EXIT in all).
        let cap = MAX_BYTES_PER_EXIT - if self.tail > 0 { 2 * AES_BLOCK as u32 } else { 0 };
        while chunk.count < max_entries {
            let remaining_bulk = self.bulk.min(u64::from(cap - chunk.bytes)) as u32;
            let piece = if remaining_bulk >= AES_BLOCK as u32 {
                let run = self.common_run()?.min(remaining_bulk);
                if run >= AES_BLOCK as u32 {
                    Piece::Direct(run - run % AES_BLOCK as u32)
                } else {
                    Piece::Bounced(AES_BLOCK as u32)
                }
            } else if self.bulk == 0 && self.tail > 0 {
                if self.common_run()? >= self.tail {
                    Piece::Direct(self.tail)
                } else {
                    Piece::Bounced(self.tail)
                }
            } else {
                break;
            };
            let entry = match piece {
                Piece::Direct(len) => {
                    let (s, d) = (self.src.peek(), self.dst.peek());
                    let (Some(s), Some(d)) = (s, d) else { return Err(TranslateError::ShortScatterlist) };
                    SgEntry { src: s.phys, dst: d.phys, len, reserved_0x14: 0 }
                }
                Piece::Bounced(len) => {
                    if self.bounce_count == MAX_BOUNCES && self.bulk > 0 {
                        break;
                    }
                    // Blocks from the start of the area, the tail after the last block slot.
                    let at = if self.bulk > 0 { self.bounce_count * AES_BLOCK } else { MAX_BOUNCES * AES_BLOCK };
                    let phys = bounce.phys + at as u64;
                    SgEntry { src: phys, dst: phys, len, reserved_0x14: 0 }
                }
            };
            if !admission.admit(&entry)? {
                break;
            }
            let len = entry.len;
            if let Piece::Bounced(_) = piece {
                let at = (entry.src - bounce.phys) as usize;
                // SAFETY: `at + len <= BOUNCE_BYTES`: inside the area `bounce` names.
                let area = unsafe { core::slice::from_raw_parts_mut(bounce.virt.add(at), len as usize) };
                gather(&mut self.src.clone(), memory, area)?;
                self.bounces[self.bounce_count] = BounceRecord { offset: chunk.bytes, at: at as u16, len: len as u16 };
                self.bounce_count += 1;
            }
            advance(&mut self.src, len)?;
            advance(&mut self.dst, len)?;
            if self.bulk > 0 {
                self.bulk -= u64::from(len);
            } else {
                self.tail = 0;
            }
            emit(chunk.count, &entry);
            chunk.count += 1;
            chunk.bytes += len;
            if self.bulk == 0 && self.tail == 0 {
                break;
            }
        }
        if chunk.count == 0 {
            return Err(TranslateError::NoProgress);
        }
        self.done += u64::from(chunk.bytes);
        Ok(Some(chunk))
    }

    /// After the vault answered the last chunk: copies its bounced results from `bounce` to
    /// their destinations.
    pub fn scatter(&self, bounce: Bounce, memory: &impl HostMemory) -> Result<(), TranslateError> {
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
    /// Through the bounce area: this many bytes gathered from the lists.
    Bounced(u32),
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
