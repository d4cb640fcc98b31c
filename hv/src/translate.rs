//! From a kernel request's scatterlists to the vault's per-exit entry lists.
//!
//! The source and destination scatterlists are walked together: each [`SgEntry`] is the
//! longest run that is contiguous in both. Entries go into a chunk until the chunk has
//! `MAX_ENTRIES` entries, `MAX_BYTES_PER_EXIT` bytes, or the vCPU's nested window cannot map
//! more pages; the chunk is then cut back to a multiple of the block size (blocks may
//! straddle entries, but never chunks, since each chunk is one vault request) and the rest
//! continues in the next chunk with the chained IV.
use sevault_abi::{SgEntry, AES_BLOCK, MAX_BYTES_PER_EXIT, MAX_ENTRIES};

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

/// Why a request cannot be translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// A scatterlist ends before the request's length.
    ShortScatterlist,
    /// The request length is not a multiple of the block size.
    UnalignedLength,
    /// Not even one block fits a chunk (the nested window is too small for the entries).
    NoProgress,
    /// An entry names memory the vault must not be given (one of its own pages).
    Forbidden,
    /// An entry lies beyond the host window.
    OutsideWindow,
}

/// What a chunk came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Entries in it.
    pub count: usize,
    /// Total bytes: a non-zero multiple of 16.
    pub bytes: u32,
}

/// One vault request's worth of entries, collected (host tests; the kernel writes entries
/// straight into the comm block through [`Translator::next_chunk_with`]).
#[cfg(test)]
#[derive(Clone, Debug)]
pub struct Chunk {
    entries: Vec<SgEntry>,
    bytes: u32,
}

#[cfg(test)]
impl Chunk {
    /// The entries.
    pub fn entries(&self) -> &[SgEntry] {
        &self.entries
    }

    /// Total bytes.
    pub fn bytes(&self) -> u32 {
        self.bytes
    }
}

/// Walks a request's source and destination lists chunk by chunk.
#[derive(Clone, Debug)]
pub struct Translator<S, D> {
    src: S,
    dst: D,
    remaining: u64,
}

impl<S: SegmentCursor, D: SegmentCursor> Translator<S, D> {
    /// A translator for `len` bytes from `src` to `dst`.
    pub fn new(src: S, dst: D, len: u64) -> Result<Self, TranslateError> {
        if !len.is_multiple_of(AES_BLOCK as u64) {
            return Err(TranslateError::UnalignedLength);
        }
        Ok(Self { src, dst, remaining: len })
    }

    /// Bytes not yet handed out.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next chunk, `None` when done: `emit(i, entry)` receives its entries in order.
    /// `admission` starts fresh for each chunk.
    pub fn next_chunk_with<A: Admission>(
        &mut self,
        admission: &A,
        mut emit: impl FnMut(usize, &SgEntry),
    ) -> Result<Option<ChunkInfo>, TranslateError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let cap = self.remaining.min(u64::from(MAX_BYTES_PER_EXIT)) as u32;
        // Plan on copies to learn how far the chunk can go, then cut it to whole blocks and
        // walk it for real (everything up to the plan's end was admitted).
        let (mut src, mut dst) = (self.src.clone(), self.dst.clone());
        let planned = fill(&mut src, &mut dst, Some(&mut admission.clone()), cap, |_, _| {})?;
        let aligned = planned.bytes - planned.bytes % AES_BLOCK as u32;
        if aligned == 0 {
            return Err(TranslateError::NoProgress);
        }
        let chunk = fill::<S, D, A>(&mut self.src, &mut self.dst, None, aligned, &mut emit)?;
        self.remaining -= u64::from(chunk.bytes);
        Ok(Some(chunk))
    }

    /// [`Translator::next_chunk_with`], collecting the entries.
    #[cfg(test)]
    pub fn next_chunk<A: Admission>(&mut self, admission: &A) -> Result<Option<Chunk>, TranslateError> {
        let mut entries = Vec::new();
        let info = self.next_chunk_with(admission, |_, e| entries.push(*e))?;
        Ok(info.map(|info| Chunk { entries, bytes: info.bytes }))
    }
}

/// Walks entries until `cap` bytes, `MAX_ENTRIES`, or the admission (if any) says stop.
fn fill<S: SegmentCursor, D: SegmentCursor, A: Admission>(
    src: &mut S,
    dst: &mut D,
    mut admission: Option<&mut A>,
    cap: u32,
    mut emit: impl FnMut(usize, &SgEntry),
) -> Result<ChunkInfo, TranslateError> {
    let mut chunk = ChunkInfo { count: 0, bytes: 0 };
    while chunk.bytes < cap && chunk.count < MAX_ENTRIES {
        let (Some(s), Some(d)) = (src.peek(), dst.peek()) else {
            return Err(TranslateError::ShortScatterlist);
        };
        let len = s.len.min(d.len).min(cap - chunk.bytes);
        let entry = SgEntry { src: s.phys, dst: d.phys, len, reserved_0x14: 0 };
        if let Some(admission) = admission.as_mut() {
            if !admission.admit(&entry)? {
                break;
            }
        }
        emit(chunk.count, &entry);
        chunk.count += 1;
        chunk.bytes += len;
        src.advance(len);
        dst.advance(len);
    }
    Ok(chunk)
}

/// A cursor over a slice of segments (host tests; the kernel walks real scatterlists).
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
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    /// Admits everything.
    #[derive(Clone)]
    struct Unlimited;
    impl Admission for Unlimited {
        fn admit(&mut self, _: &SgEntry) -> Result<bool, TranslateError> {
            Ok(true)
        }
    }

    /// Admits `n` entries per chunk.
    #[derive(Clone)]
    struct AtMost(usize);
    impl Admission for AtMost {
        fn admit(&mut self, _: &SgEntry) -> Result<bool, TranslateError> {
            if self.0 == 0 {
                return Ok(false);
            }
            self.0 -= 1;
            Ok(true)
        }
    }

    /// Splits `total` bytes at random into segments placed at scattered addresses.
    fn random_list(rng: &mut SmallRng, total: u32, base: u64) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut left = total;
        let mut addr = base;
        while left > 0 {
            let len = match rng.gen_range(0..4) {
                0 => rng.gen_range(1..=16),
                1 => rng.gen_range(1..=4096),
                2 => 4096,
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

    /// The byte map (source address → destination address) of every byte.
    fn byte_map(src: &[Segment], dst: &[Segment]) -> Vec<(u64, u64)> {
        let flatten = |list: &[Segment]| -> Vec<u64> {
            list.iter().flat_map(|s| (0..u64::from(s.len)).map(move |i| s.phys + i)).collect()
        };
        flatten(src).into_iter().zip(flatten(dst)).collect()
    }

    #[test]
    fn random_requests_translate_to_block_aligned_chunks_that_cover_every_byte_once() {
        let mut rng = SmallRng::seed_from_u64(4);
        for case in 0..300 {
            let total = 16 * rng.gen_range(1..=12_000u32); // up to ~190 KiB: several chunks
            let src = random_list(&mut rng, total, 0x10_0000);
            let in_place = rng.gen_bool(0.3);
            let dst = if in_place { src.clone() } else { random_list(&mut rng, total, 0x900_0000) };
            // At least 16 entries per chunk: one block always fits (entries hold ≥ 1 byte).
            let per_chunk = rng.gen_range(16..=MAX_ENTRIES + 10);
            let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&dst), u64::from(total)).unwrap();
            let mut got = Vec::new();
            while let Some(chunk) = t.next_chunk(&AtMost(per_chunk)).unwrap() {
                assert_eq!(chunk.bytes() % 16, 0, "case {case}");
                assert!(chunk.bytes() > 0 && chunk.bytes() <= MAX_BYTES_PER_EXIT);
                assert!(chunk.entries().len() <= per_chunk.min(MAX_ENTRIES));
                assert_eq!(chunk.entries().iter().map(|e| e.len).sum::<u32>(), chunk.bytes());
                for e in chunk.entries() {
                    assert!(e.len > 0);
                    if in_place {
                        assert_eq!(e.src, e.dst);
                    }
                    got.extend((0..u64::from(e.len)).map(|i| (e.src + i, e.dst + i)));
                }
            }
            assert_eq!(t.remaining(), 0);
            assert_eq!(got, byte_map(&src, &dst), "case {case}");
        }
    }

    #[test]
    fn a_64_kib_request_in_pages_is_one_chunk() {
        let src: Vec<Segment> = (0..16).map(|i| Segment { phys: 0x100_0000 + i * 0x3000, len: 4096 }).collect();
        let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&src), 65536).unwrap();
        let chunk = t.next_chunk(&Unlimited).unwrap().unwrap();
        assert_eq!((chunk.bytes(), chunk.entries().len()), (65536, 16));
        assert!(t.next_chunk(&Unlimited).unwrap().is_none());
    }

    #[test]
    fn refusals() {
        let src = [Segment { phys: 0, len: 32 }];
        assert_eq!(
            Translator::new(SliceCursor::new(&src), SliceCursor::new(&src), 31).unwrap_err(),
            TranslateError::UnalignedLength
        );
        let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&src), 48).unwrap();
        assert_eq!(t.next_chunk(&Unlimited).unwrap_err(), TranslateError::ShortScatterlist);
        // Entries of 1 byte with room for 8 per chunk: no whole block.
        let tiny: Vec<Segment> = (0..32).map(|i| Segment { phys: i * 100, len: 1 }).collect();
        let mut t = Translator::new(SliceCursor::new(&tiny), SliceCursor::new(&tiny), 32).unwrap();
        assert_eq!(t.next_chunk(&AtMost(8)).unwrap_err(), TranslateError::NoProgress);
        #[derive(Clone)]
        struct Refuse;
        impl Admission for Refuse {
            fn admit(&mut self, _: &SgEntry) -> Result<bool, TranslateError> {
                Err(TranslateError::Forbidden)
            }
        }
        let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&src), 32).unwrap();
        assert_eq!(t.next_chunk(&Refuse).unwrap_err(), TranslateError::Forbidden);
    }

    #[test]
    fn straddling_blocks_are_cut_at_chunk_ends_and_continue() {
        // 3 entries of 20 bytes, at most 2 per chunk: 40 → 32 bytes, then the rest.
        let src: Vec<Segment> = (0..3).map(|i| Segment { phys: i * 1000, len: 20 }).collect();
        let dst = [Segment { phys: 50_000, len: 60 }];
        let mut t = Translator::new(SliceCursor::new(&src), SliceCursor::new(&dst), 48).unwrap();
        let first = t.next_chunk(&AtMost(2)).unwrap().unwrap();
        assert_eq!(first.bytes(), 32);
        assert_eq!(first.entries()[1], SgEntry { src: 1000, dst: 50_020, len: 12, reserved_0x14: 0 });
        let second = t.next_chunk(&AtMost(2)).unwrap().unwrap();
        assert_eq!(second.bytes(), 16);
        assert_eq!(second.entries()[0], SgEntry { src: 1012, dst: 50_032, len: 8, reserved_0x14: 0 });
        assert!(t.next_chunk(&AtMost(2)).unwrap().is_none());
    }
}
