//! Batches of vault requests: which requests go into one comm block, and what their answers
//! come to — the part of the HV's request path that needs no CPU. The kernel's request path
//! (`kernel::vault`) runs it around each VMRUN; the host tests run it against the real vault
//! (`guest`'s `Vault::serve`), so the batches the kernel builds are the ones tested.
//!
//! A kernel request becomes a [`Job`]: a translator over its scatterlists and the template
//! of its vault requests. [`serve_jobs`] runs rounds until every job is done; in each round
//! every pending job offers its next chunk as a [`Call`], [`post`] writes as many as fit into
//! the comm block (in order: at most `max_batch`, the pool's `MAX_ENTRIES` entries, what the
//! nested window can map; request `k` bounces its straddling blocks through area `k` of the
//! bounce page), the caller runs the vault once, and [`read_answers`] takes each answer and
//! scatters the bounced results. A chunk that does not fit waits for the next round; a
//! request's chunks go one per round, each with the IV (or XTS tweak block) its predecessor
//! left.
use sevault_abi::comm::{CommBlockPtr, Header, Request};
use sevault_abi::{Mode, Op, SgEntry, Status, AES_BLOCK, MAX_BATCH, MAX_BYTES_PER_EXIT, MAX_ENTRIES, MAX_STREAMS};

use crate::translate::{
    Admission, Bounce, ChunkInfo, HostMemory, SegmentCursor, TranslateError, Translator, BOUNCE_BYTES,
};

/// The vault's answer to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Its status.
    pub status: Status,
    /// Bytes processed.
    pub bytes_done: u32,
    /// CBC/CTR: the IV that continues the chain.
    pub iv_out: [u8; 16],
}

/// Why a call has no answer from the vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Its next chunk could not be made (or names memory the vault must not get).
    Translate(TranslateError),
    /// A page of the chunk could not be mapped although the window admitted it.
    Unmapped,
    /// The bounced results could not be written back.
    Scatter,
    /// The vault did not answer the batch as it must (the caller rebuilds it).
    Vault,
    /// The vault was rebuilt while the batch ran: its output is not trusted.
    StaleKeys,
}

/// One vault request offered to a batch.
pub struct Call<'a, S, D> {
    /// Op, mode, key slot, key length and IV; [`post`] fills in entries, lengths and the XTS
    /// tweak block.
    pub request: Request,
    /// Set key: the key bytes (a batch has one key field: key operations go alone).
    pub key: &'a [u8],
    /// Encrypt/decrypt: the translator whose next chunk this request takes.
    pub chunk_of: Option<&'a mut Translator<S, D>>,
    /// Not yet counted as a kernel request (its first chunk); [`post`] clears it.
    pub first: bool,
    /// Set once the call was in a batch that ran, or could not be posted. `None`: it did not
    /// fit this batch; offer it again.
    pub answer: Option<Result<Answer, CallError>>,
}

impl<'a, S, D> Call<'a, S, D> {
    /// A call not yet posted.
    pub fn new(request: Request, key: &'a [u8], chunk_of: Option<&'a mut Translator<S, D>>) -> Self {
        Self { request, key, chunk_of, first: true, answer: None }
    }
}

/// One call in a batch: the request that carries it, and its stream in that request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PostedCall {
    call: usize,
    request: u8,
    stream: u8,
}

/// The calls one batch holds, in comm-block order: each request carries one call, or — a
/// `Mode::CbcStreams` request — 2 to `MAX_STREAMS` CBC encryptions of one key and length.
#[derive(Clone, Copy, Debug)]
pub struct Posted {
    calls: [PostedCall; MAX_BATCH],
    call_count: usize,
    /// Streams of each request (1 for a request of one call).
    streams: [u8; MAX_BATCH],
    count: usize,
    /// Calls posted with `first` set (kernel requests begun).
    pub first_chunks: u64,
    /// Calls that went as a stream of a CBC-streams request.
    pub streamed: u64,
}

impl Posted {
    const fn empty() -> Self {
        Self {
            calls: [PostedCall { call: 0, request: 0, stream: 0 }; MAX_BATCH],
            call_count: 0,
            streams: [0; MAX_BATCH],
            count: 0,
            first_chunks: 0,
            streamed: 0,
        }
    }

    /// Indices into the calls, in comm-block order (a CBC-streams request's calls by stream).
    pub fn calls(&self) -> impl Iterator<Item = usize> + '_ {
        self.calls[..self.call_count].iter().map(|c| c.call)
    }

    /// Calls in the batch.
    pub fn call_count(&self) -> usize {
        self.call_count
    }

    /// Requests in the batch.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// CBC encryptions of one key and length gathered into one `Mode::CbcStreams` request while
/// [`post`] goes through the calls: its request is a plain CBC encryption of its first call
/// until a second joins. Its streams' entries follow each other in the pool from
/// `first_entry`; the pool's next entry is kept for the IVs, which go to the request's bounce
/// area (a stream has no bounced blocks).
#[derive(Clone, Copy, Debug)]
struct Streams {
    request: usize,
    first_entry: usize,
    key_slot: u32,
    key_len: u32,
    /// Bytes per stream.
    len: u32,
    count: usize,
    ivs: [[u8; 16]; MAX_STREAMS],
}

impl Streams {
    /// Whether `request` (before translation) may join: a CBC encryption of the same key, with
    /// a stream left.
    fn takes(&self, request: &Request) -> bool {
        is_cbc_encryption(request)
            && (request.key_slot, request.key_len) == (self.key_slot, self.key_len)
            && self.count < MAX_STREAMS
    }

    /// Whether a chunk (after translation) may join: one entry, nothing bounced, the streams'
    /// length, and the request still within `MAX_BYTES_PER_EXIT` with it and its IV.
    fn fits(&self, info: &ChunkInfo) -> bool {
        let total = (self.count as u64 + 1) * (u64::from(self.len) + AES_BLOCK as u64);
        info.count == 1 && info.bounced == 0 && info.bytes == self.len && total <= u64::from(MAX_BYTES_PER_EXIT)
    }

    /// Makes the request a CBC-streams one if a second stream joined: writes the IVs to the
    /// request's bounce area, their entry at `pool` (the one kept), the request itself.
    /// Returns the pool entries it took, or `None` if the IVs could not be mapped.
    fn close(
        &self,
        comm: CommBlockPtr,
        bounce: Bounce,
        pool: usize,
        map: &mut impl FnMut(&SgEntry) -> Option<SgEntry>,
    ) -> Option<usize> {
        if self.count < 2 {
            return Some(0);
        }
        let area = bounce.area(self.request);
        let bytes = AES_BLOCK * self.count;
        // SAFETY: the request's bounce area is BOUNCE_BYTES >= 16 × MAX_STREAMS bytes of the
        // HV's bounce page, this request's alone in the batch.
        let ivs = unsafe { core::slice::from_raw_parts_mut(area.virt, bytes) };
        for (out, iv) in ivs.chunks_exact_mut(AES_BLOCK).zip(&self.ivs) {
            out.copy_from_slice(iv);
        }
        let entry = SgEntry { src: area.phys, dst: area.phys, len: bytes as u32, reserved_0x14: 0 };
        comm.write_entry(pool, &map(&entry)?);
        let request = Request {
            op: Op::Encrypt as u32,
            mode: Mode::CbcStreams as u32,
            key_slot: self.key_slot,
            key_len: self.key_len,
            first_entry: self.first_entry as u32,
            entry_count: self.count as u32 + 1,
            total_len: (self.count as u32) * self.len + bytes as u32,
            ..Request::default()
        };
        comm.write_request(self.request, &request);
        Some(1)
    }
}

/// [`PostedCall::request`] of a stream dropped by [`Streams::close_or_drop`].
const DROPPED: u8 = u8::MAX;

impl Streams {
    /// [`Self::close`]; if the IVs could not be mapped, marks the streams after the first
    /// [`DROPPED`] (the request stays the first's CBC encryption). Returns the pool entries
    /// taken.
    fn close_or_drop(
        &self,
        comm: CommBlockPtr,
        bounce: Bounce,
        pool: usize,
        map: &mut impl FnMut(&SgEntry) -> Option<SgEntry>,
        posted: &mut Posted,
    ) -> usize {
        if let Some(taken) = self.close(comm, bounce, pool, map) {
            return taken;
        }
        for posted_call in &mut posted.calls[..posted.call_count] {
            if usize::from(posted_call.request) == self.request && posted_call.stream > 0 {
                posted_call.request = DROPPED;
            }
        }
        posted.streams[self.request] = 1;
        0
    }
}

// The IVs of a CBC-streams request fit its bounce area.
const _: () = assert!(AES_BLOCK * MAX_STREAMS <= BOUNCE_BYTES);

fn is_cbc_encryption(request: &Request) -> bool {
    request.op == Op::Encrypt as u32 && request.mode == Mode::Cbc as u32
}

/// Writes into `comm` as many of the unanswered `calls` as fit, in order (the header is the
/// caller's, last): at most `limit` calls, the pool's entries, what `admission` admits;
/// request `k`'s bounced blocks go through `bounce.area(k)`, from `memory`; `map(entry)` maps
/// an entry's pages for the vault and returns the entry as the vault must see it (its
/// compact-window addresses), or `None` if it could not. A call that cannot be posted gets
/// its error; one that does not fit beside those already in stays unanswered. CBC
/// encryptions of one key whose chunks are one entry each, of one length, go together as the
/// streams of one `Mode::CbcStreams` request ([`Streams`]): their blocks then run through the
/// AES unit together.
pub fn post<S: SegmentCursor, D: SegmentCursor, A: Admission>(
    calls: &mut [Call<'_, S, D>],
    limit: usize,
    comm: CommBlockPtr,
    admission: &mut A,
    bounce: Bounce,
    memory: &impl HostMemory,
    mut map: impl FnMut(&SgEntry) -> Option<SgEntry>,
) -> Posted {
    let mut posted = Posted::empty();
    let limit = limit.clamp(1, MAX_BATCH);
    let mut pool = 0;
    let mut open: Option<Streams> = None;
    for (index, call) in calls.iter_mut().enumerate() {
        if posted.call_count == limit {
            break;
        }
        if call.answer.is_some() {
            continue;
        }
        let mut request = call.request;
        let joining = open.is_some_and(|s| s.takes(&request) && call.chunk_of.is_some());
        if !joining {
            if let Some(streams) = open.take() {
                pool += streams.close_or_drop(comm, bounce, pool, &mut map, &mut posted);
            }
        }
        if let Some(translator) = call.chunk_of.as_mut() {
            // A stream that joins takes the pool's next entry; the one after it is kept for the
            // IVs until then.
            let base = pool + usize::from(joining);
            let mut mapped = true;
            let mut seen_last = None;
            let info = translator.next_chunk_with(
                admission,
                MAX_ENTRIES.saturating_sub(base),
                bounce.area(posted.count),
                memory,
                |i, entry| match map(entry) {
                    Some(seen) => {
                        comm.write_entry(base + i, &seen);
                        seen_last = Some(seen);
                    }
                    None => mapped = false,
                },
            );
            match info {
                Ok(Some(info)) if mapped => {
                    if let (Some(streams), Some(seen)) = (open.as_mut().filter(|s| joining && s.fits(&info)), seen_last)
                    {
                        comm.write_entry(pool, &seen);
                        pool += 1;
                        streams.ivs[streams.count] = request.iv;
                        posted.calls[posted.call_count] =
                            PostedCall { call: index, request: streams.request as u8, stream: streams.count as u8 };
                        posted.call_count += 1;
                        streams.count += 1;
                        posted.streams[streams.request] = streams.count as u8;
                        if core::mem::take(&mut call.first) {
                            posted.first_chunks += 1;
                        }
                        continue;
                    }
                    if joining {
                        // It does not fit the streams after all: they end, in the kept entry.
                        if let Some(streams) = open.take() {
                            streams.close_or_drop(comm, bounce, pool, &mut map, &mut posted);
                        }
                        pool = base;
                    }
                    pool += info.count;
                    request.first_entry = base as u32;
                    request.entry_count = info.count as u32;
                    request.total_len = info.bytes;
                    if request.mode == Mode::Xts as u32 {
                        request.tweak_block = info.first_block;
                    }
                    // A CBC encryption of one direct entry may be the first of streams, if the
                    // window can take their IVs (one entry of the request's bounce area).
                    let ivs = bounce.area(posted.count);
                    let iv_entry = SgEntry {
                        src: ivs.phys,
                        dst: ivs.phys,
                        len: (AES_BLOCK * MAX_STREAMS) as u32,
                        reserved_0x14: 0,
                    };
                    let first_of_streams = is_cbc_encryption(&request)
                        && info.count == 1
                        && info.bounced == 0
                        && pool < MAX_ENTRIES
                        && admission.admit(&iv_entry) == Ok(true);
                    if first_of_streams {
                        open = Some(Streams {
                            request: posted.count,
                            first_entry: base,
                            key_slot: request.key_slot,
                            key_len: request.key_len,
                            len: info.bytes,
                            count: 1,
                            ivs: [request.iv; MAX_STREAMS],
                        });
                    }
                }
                // Does not fit beside the requests already in: a later batch.
                Err(TranslateError::NoProgress) if posted.call_count > 0 => continue,
                Ok(Some(_)) => {
                    call.answer = Some(Err(CallError::Unmapped));
                    continue;
                }
                Ok(None) => {
                    call.answer = Some(Err(CallError::Translate(TranslateError::NoProgress)));
                    continue;
                }
                Err(error) => {
                    call.answer = Some(Err(CallError::Translate(error)));
                    continue;
                }
            }
        } else {
            if posted.call_count > 0 {
                continue;
            }
            comm.write_key(call.key);
        }
        comm.write_request(posted.count, &request);
        if core::mem::take(&mut call.first) {
            posted.first_chunks += 1;
        }
        posted.calls[posted.call_count] = PostedCall { call: index, request: posted.count as u8, stream: 0 };
        posted.call_count += 1;
        posted.streams[posted.count] = 1;
        posted.count += 1;
        if call.chunk_of.is_none() {
            // A key operation goes alone.
            break;
        }
    }
    if let Some(streams) = open {
        streams.close_or_drop(comm, bounce, pool, &mut map, &mut posted);
    }
    // Streams whose IVs could not be mapped (the window admitted them: not expected) fail;
    // their request stays the plain CBC encryption of its first call.
    let mut kept = 0;
    for k in 0..posted.call_count {
        let posted_call = posted.calls[k];
        if posted_call.request == DROPPED {
            calls[posted_call.call].answer = Some(Err(CallError::Unmapped));
        } else {
            posted.calls[kept] = posted_call;
            kept += 1;
        }
    }
    posted.call_count = kept;
    posted.streamed = posted.streams[..posted.count].iter().filter(|&&n| n >= 2).map(|&n| u64::from(n)).sum();
    posted
}

/// After the vault ran batch `header`: `Err(status)` unless it answered the whole batch —
/// the sequence echoed, the batch status Ok, every posted request answered with a known
/// status. (Anything else is a vault that broke the protocol.)
pub fn check_answer(comm: CommBlockPtr, header: &Header, posted: &Posted) -> Result<(), u32> {
    let batch = comm.read_batch_response();
    let complete = batch.sequence == header.sequence
        && batch.status == Status::Ok as u32
        && batch.count as usize == posted.count
        && (0..posted.count).all(|k| Status::try_from(comm.read_response(k).status).is_ok());
    if complete {
        Ok(())
    } else {
        Err(batch.status)
    }
}

/// Gives every posted call `error`.
pub fn fail<S, D>(calls: &mut [Call<'_, S, D>], posted: &Posted, error: CallError) {
    for index in posted.calls() {
        calls[index].answer = Some(Err(error));
    }
}

/// What a batch's answers came to, for the statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Bytes the vault processed.
    pub bytes: u64,
    /// Requests that failed.
    pub errors: u64,
}

/// After [`check_answer`] passed: each posted call's answer, and its bounced results
/// scattered from `bounce.area(k)` to `memory`.
pub fn read_answers<S: SegmentCursor, D: SegmentCursor>(
    calls: &mut [Call<'_, S, D>],
    posted: &Posted,
    comm: CommBlockPtr,
    bounce: Bounce,
    memory: &impl HostMemory,
) -> Tally {
    let mut tally = Tally::default();
    for posted_call in &posted.calls[..posted.call_count] {
        let k = usize::from(posted_call.request);
        let response = comm.read_response(k);
        let call = &mut calls[posted_call.call];
        let Ok(status) = Status::try_from(response.status) else {
            // `check_answer` let no unknown status through.
            call.answer = Some(Err(CallError::Vault));
            tally.errors += 1;
            continue;
        };
        let mut answer = Answer { status, bytes_done: response.bytes_done, iv_out: response.iv_out };
        let streams = u32::from(posted.streams[k]);
        if streams >= 2 {
            // A stream of a CBC-streams request: its share of the bytes (the vault's count
            // includes the IVs; `serve_jobs` checks the share against the chunk), its output
            // IV from the request's bounce area.
            answer.bytes_done = (response.bytes_done / streams).saturating_sub(AES_BLOCK as u32);
            let at = AES_BLOCK * usize::from(posted_call.stream);
            // SAFETY: inside the request's bounce area, which holds its 16 × streams bytes of
            // IVs (`Streams::close`); a plain byte copy.
            unsafe { core::ptr::copy_nonoverlapping(bounce.area(k).virt.add(at), answer.iv_out.as_mut_ptr(), 16) };
        }
        call.answer = Some(Ok(answer));
        if status != Status::Ok {
            tally.errors += 1;
            continue;
        }
        tally.bytes += u64::from(answer.bytes_done);
        if let Some(translator) = call.chunk_of.as_mut() {
            if translator.scatter(bounce.area(k), memory).is_err() {
                tally.errors += 1;
                call.answer = Some(Err(CallError::Scatter));
            }
        }
    }
    tally
}

/// A kernel request between the rounds that serve its chunks.
pub struct Job<S, D> {
    /// Its scatterlists.
    pub translator: Translator<S, D>,
    /// Op, mode, key slot and key length of its vault requests, and the IV of the next one.
    pub request: Request,
    /// Its first chunk has been posted.
    pub counted: bool,
}

/// How a job failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobError {
    /// One of its calls got no answer.
    Call(CallError),
    /// The vault refused one of its requests.
    Status(Status),
    /// The vault said it processed other than the chunk's bytes.
    ShortAnswer,
    /// A round made no progress at all (cannot happen: the first request of a batch always
    /// fits an empty window).
    Stuck,
}

/// What a round left of one call: its answer, the bytes its job has left, whether it was
/// counted.
type Outcome = (Option<Result<Answer, CallError>>, u64, bool);

/// Serves `jobs` (the `Some` places; `None` is no job) to the end: `round(calls)` must run
/// one batch of the calls it is given ([`post`], the vault, [`check_answer`],
/// [`read_answers`]). Returns, for each job, the IV its last chunk left (CBC, CTR; XTS keeps
/// its own) or why it failed; `None` for the places without a job.
pub fn serve_jobs<S: SegmentCursor, D: SegmentCursor, const N: usize>(
    jobs: &mut [Option<&mut Job<S, D>>; N],
    mut round: impl FnMut(&mut [Call<'_, S, D>]),
) -> [Option<Result<[u8; 16], JobError>>; N] {
    let mut results: [Option<Result<[u8; 16], JobError>>; N] = [None; N];
    loop {
        // This round: the pending jobs, in order.
        let mut index_of = [0usize; N];
        let mut n = 0;
        for (i, job) in jobs.iter().enumerate() {
            if job.is_some() && results[i].is_none() {
                index_of[n] = i;
                n += 1;
            }
        }
        if n == 0 {
            return results;
        }
        let mut expected = [0u64; N];
        let mut outcome: [Outcome; N] = [(None, 0, false); N];
        {
            let mut pending = jobs
                .iter_mut()
                .zip(results.iter())
                .filter(|(_, result)| result.is_none())
                .filter_map(|(job, _)| job.as_deref_mut());
            // The places beyond `n` stay unused (never handed to `round`).
            let mut calls: [Call<'_, S, D>; N] = core::array::from_fn(|k| match pending.next() {
                Some(job) => {
                    expected[k] = job.translator.remaining();
                    let first = !job.counted;
                    Call { first, ..Call::new(job.request, &[], Some(&mut job.translator)) }
                }
                None => Call::new(Request::default(), &[], None),
            });
            round(&mut calls[..n]);
            for (k, call) in calls[..n].iter().enumerate() {
                let remaining = call.chunk_of.as_ref().map_or(0, |t| t.remaining());
                outcome[k] = (call.answer, remaining, !call.first);
            }
        }
        let mut progress = false;
        for (k, &(answer, remaining, counted)) in outcome[..n].iter().enumerate() {
            let i = index_of[k];
            let Some(job) = jobs[i].as_deref_mut() else { continue };
            job.counted |= counted;
            let Some(answer) = answer else { continue };
            progress = true;
            let done_now = expected[k] - remaining;
            results[i] = match answer {
                Ok(Answer { status: Status::Ok, bytes_done, iv_out }) if u64::from(bytes_done) == done_now => {
                    // XTS keeps its IV: the tweak stays in the vault, the next chunk names its
                    // block.
                    if job.request.mode != Mode::Xts as u32 {
                        job.request.iv = iv_out;
                    }
                    (remaining == 0).then_some(Ok(job.request.iv))
                }
                Ok(Answer { status: Status::Ok, .. }) => Some(Err(JobError::ShortAnswer)),
                Ok(Answer { status, .. }) => Some(Err(JobError::Status(status))),
                Err(error) => Some(Err(JobError::Call(error))),
            };
        }
        if !progress {
            for (i, result) in results.iter_mut().enumerate() {
                if jobs[i].is_some() && result.is_none() {
                    *result = Some(Err(JobError::Stuck));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
