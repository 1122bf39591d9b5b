//! The engine's one thread: it owns the llama.cpp context, gives sequences slots, and runs
//! the batching loop. Every step decodes, in one `llama_decode`, the pending token of every
//! generating sequence whose guest has room for another, plus up to one micro-batch of
//! waiting prompt tokens; then each sequence draws its next token from its own logits with
//! its own sampler. Sequences are taken in the order they started, so a step's batch does
//! not depend on timing beyond which sequences are in it.
//!
//! Each slot is a llama.cpp sequence with its own KV stream of `ctx-size` cells (the cache is
//! not unified), so a sequence's attention sees the cells a context of its own would.
//!
//! Whether a sequence's numbers depend on what it is batched with is up to ggml's CPU
//! kernels: most compute each row alone, but some do not (weight repacking that multiplies
//! rows in groups of four; flash attention, which splits a lone token's KV of 512 cells or
//! more across threads but not a batch's). With `--nn-deterministic` every sequence is decoded
//! on its own instead, as if it ran alone.

use super::media::{self, Resume};
use super::persist::{self, Restored};
use super::stream::Shared as StreamShared;
use super::{Ahead, Command, Inbox, Job, Ready};
use crate::abi::Errno;
use crate::backend::ggml::generation::{End, Generation, Prompt};
use crate::backend::ggml::options::Options;
use crate::backend::ggml::rpc::Watch;
use crate::backend::ggml::vision::{MediaPrompt, Vision};
use crate::error::{NnError, NnResult};
use crate::limits::Limits;
use crate::prompt_cache::Namespace;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::MtmdInputChunks;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Ctx<'model> = LlamaContext<'model>;

self_cell::self_cell!(
    /// A llama.cpp context together with the model it borrows.
    struct ModelContext {
        owner: Arc<LlamaModel>,
        #[covariant]
        dependent: Ctx,
    }
);

/// llama.cpp's context creation writes to the model (see llama-cpp-2's `new_context`): never
/// create two at once.
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

/// Stands in a sequence's token list for positions filled by images, so a later text prompt
/// never matches them.
const NOT_A_TOKEN: LlamaToken = LlamaToken(-1);

/// The llama.cpp context, and the batch the loop fills for it (kept: llama.cpp's batch makes
/// an allocation per token it can hold).
struct Llama {
    cell: ModelContext,
    batch: LlamaBatch<'static>,
}

/// A sequence, as the scheduler keeps it.
#[derive(Default)]
struct Record {
    /// Its slot while it holds one.
    slot: Option<usize>,
    /// The tokens at positions `0..` of its KV (in its slot, or in `saved`), for prompt-prefix
    /// reuse; empty when it has nothing kept.
    cached: Vec<LlamaToken>,
    /// Its KV, copied out while it has no slot.
    saved: Option<SeqState>,
    /// When it was last in a batch (for least-recently-used eviction).
    last_used: u64,
    /// (Boxed, as `prefill`: a record lives as long as its context, idle ones by the
    /// thousand, and these are hundreds of bytes each only while in use.)
    active: Option<Box<Active>>,
    /// Its prompt evaluated ahead of a generation (never while `active` is set).
    prefill: Option<Box<Prefill>>,
}

impl Record {
    /// Neither generating nor evaluating a prompt ahead: its slot may be taken.
    fn idle(&self) -> bool {
        self.active.is_none() && self.prefill.is_none()
    }
}

/// A prompt's evaluation, in chunks.
struct PromptEval {
    tokens: Vec<LlamaToken>,
    /// The next token to evaluate (`None`: what the KV shares with the prompt not yet
    /// worked out).
    next: Option<usize>,
    /// Tokens kept from the KV instead of evaluated.
    reused: usize,
    /// Tokens restored from the prompt cache instead of evaluated.
    restored: usize,
    /// Evaluated as a fresh context evaluates the prompt alone (see [`persist::exact_point`]):
    /// from position 0 or an exact restore, every micro-batch this prompt's alone and as long
    /// as alignment allows. Only such a prompt's KV is saved to the prompt cache.
    exact: bool,
}

/// A text prompt evaluated ahead of its generation (`Sequence::prefill`): after every
/// generation's work in a step, and only in a slot that was free or held by an idle context.
struct Prefill {
    eval: PromptEval,
    serial: u64,
    /// Where its result goes for its context.
    ahead: Arc<Ahead>,
    /// When it was asked for: prefills are batched in this order.
    started: u64,
    began: Instant,
    /// Evaluated (its result left in `ahead`).
    done: bool,
}

/// A generation in progress.
struct Active {
    stream: Arc<StreamShared>,
    phase: Phase,
    generation: Generation,
    ctx_size: usize,
    /// When it started: sequences are batched in this order.
    started: u64,
}

enum Phase {
    /// Prompt tokens to evaluate.
    Prompt(PromptEval),
    Media {
        chunks: MtmdInputChunks,
        vision: Arc<Vision>,
        media: MediaPrompt,
    },
    Generate,
}

/// What one sequence put in a step's batch.
enum Entry {
    Token { seq: u64, token: LlamaToken, logits: Option<i32> },
    Prompt { seq: u64, count: usize, logits: Option<i32> },
    Prefill { seq: u64, count: usize, logits: Option<i32> },
}

impl Entry {
    fn seq(&self) -> u64 {
        match *self {
            Entry::Token { seq, .. } | Entry::Prompt { seq, .. } | Entry::Prefill { seq, .. } => seq,
        }
    }
}

/// What a step's batch has left for prompt tokens, and how prompts are cut into it.
struct PromptRoom<'a> {
    /// Tokens the batch can still take.
    left: usize,
    /// Chunks end on multiples of this (the micro-batch size).
    ubatch: usize,
    /// The prompt cache, for a prompt's first chunk.
    cache: Option<&'a Namespace>,
}

impl PromptEval {
    fn new(tokens: Vec<LlamaToken>) -> Self {
        Self { tokens, next: None, reused: 0, restored: 0, exact: true }
    }

    /// Tokens evaluated rather than reused or restored.
    fn evaluated(&self) -> usize {
        self.tokens.len() - self.reused - self.restored
    }

    /// Add the next chunk, at most `room` tokens and never past a multiple of `ubatch`, to
    /// `batch` for `slot`; the first works out what the KV (`cached`) shares with the prompt
    /// and drops the rest, or puts a longer prefix there from the prompt cache. The chunk's
    /// length and, when it ends the prompt, the batch index of the last token's logits.
    ///
    /// (Chunks end on multiples of `ubatch`, as a fresh evaluation's do, so a prompt resumed
    /// after a restore is computed in the same micro-batches as it would be from the start.)
    fn add_chunk(
        &mut self,
        cached: &mut Vec<LlamaToken>,
        cell: &mut ModelContext,
        slot: usize,
        batch: &mut LlamaBatch,
        room: &mut PromptRoom,
    ) -> Option<(usize, Option<i32>)> {
        let PromptRoom { left, ubatch, cache } = room;
        let (ubatch, cache) = (*ubatch, *cache);
        let from = match self.next {
            Some(from) => from,
            None => {
                let keep = shared_prefix(cached, &self.tokens);
                let keep = if forget(cell, slot, keep) { keep } else { 0 };
                cached.truncate(keep);
                self.reused = keep;
                // What was kept was computed in other batches (a conversation's answers one
                // token at a time): not what a fresh evaluation computes.
                self.exact = keep == 0;
                let restored = cache.map_or(Restored::Nothing, |cache| {
                    cell.with_dependent_mut(|_, ctx| persist::restore(cache, ctx, slot, &self.tokens, keep, ubatch))
                });
                if let Restored::Prefix(n) = restored {
                    cached.clear();
                    cached.extend_from_slice(&self.tokens[..n]);
                    (self.reused, self.restored, self.exact) = (0, n, true);
                }
                self.next = Some(cached.len());
                cached.len()
            }
        };
        if *left == 0 {
            return None;
        }
        let whole = (self.tokens.len() - from).min(ubatch - from % ubatch);
        let count = whole.min(*left);
        self.exact &= count == whole;
        *left -= count;
        let last = from + count == self.tokens.len();
        let mut logits = None;
        for (i, &token) in self.tokens[from..from + count].iter().enumerate() {
            let is_last = last && i + 1 == count;
            if is_last {
                logits = Some(batch.n_tokens());
            }
            let _ = batch.add(token, (from + i) as i32, &[slot as i32], is_last);
        }
        Some((count, logits))
    }

    /// The chunk of `count` tokens added last is in the KV.
    fn chunk_done(&mut self, cached: &mut Vec<LlamaToken>, count: usize) {
        let from = self.next.expect("set when the chunk was added");
        cached.extend_from_slice(&self.tokens[from..from + count]);
        self.next = Some(from + count);
    }

    /// Where the KV stood before this evaluation (after a restore).
    fn base(&self, cached: &[LlamaToken]) -> usize {
        self.next.map_or(cached.len(), |_| self.reused + self.restored)
    }
}

pub struct Scheduler {
    model: Arc<LlamaModel>,
    options: Options,
    inbox: Arc<Inbox>,
    limits: Limits,
    llama: Option<Llama>,
    /// Which sequence holds each slot.
    slots: Vec<Option<u64>>,
    records: HashMap<u64, Record>,
    /// Bytes of KV saved for sequences without a slot.
    saved_bytes: usize,
    /// What one token's KV takes, saved (known from the first save).
    bytes_per_token: usize,
    tick: u64,
    piece: Vec<u8>,
    /// Where long prompts' KV is kept across processes (the host's prompt cache).
    cache: Option<Namespace>,
    /// The RPC servers holding some of the model's layers (None: all on this machine).
    rpc: Option<Arc<Watch>>,
}

impl Scheduler {
    pub fn new(
        model: Arc<LlamaModel>,
        options: Options,
        inbox: Arc<Inbox>,
        limits: Limits,
        cache: Option<Namespace>,
        rpc: Option<Arc<Watch>>,
    ) -> Self {
        Self {
            model,
            options,
            inbox,
            limits,
            llama: None,
            slots: Vec::new(),
            records: HashMap::new(),
            saved_bytes: 0,
            bytes_per_token: 0,
            tick: 0,
            piece: Vec::with_capacity(64),
            cache,
            rpc,
        }
    }

    /// The loop, until the engine closes.
    pub fn run(mut self) {
        let mut worked = false;
        loop {
            let (commands, closed) = self.inbox.take();
            if closed {
                break;
            }
            for command in commands {
                self.handle(command);
            }
            if self.step() {
                worked = true;
            } else {
                // Out of work: every stream is done or waits on its guest (the tests' memory
                // checks read the heap here).
                if std::mem::take(&mut worked) {
                    crate::compute_threads::log_heap("the engine's work");
                }
                self.inbox.wait();
            }
        }
        let Self { llama, records, .. } = self;
        for record in records.into_values() {
            if let Some(active) = record.active {
                active.stream.finish(Err(NnError::runtime("the model was unloaded")), active.generation.metrics());
            }
        }
        drop(llama);
        crate::compute_threads::trim_heap();
        log::debug!("engine ended");
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Start { seq, job: Job::Generate { prompt, options, stream } } => {
                self.tick += 1;
                self.keep_low(seq);
                let mut generation = match Generation::new(&self.model, &options) {
                    Ok(g) => g,
                    Err(e) => return stream.finish(Err(e), Default::default()),
                };
                let record = self.records.entry(seq).or_default();
                let mut ready = None;
                let phase = match (prompt, record.prefill.take()) {
                    // The prompt evaluated ahead (its context did not take the result): go
                    // on from where it is.
                    (Prompt::Tokens(tokens), Some(p)) if p.eval.tokens == tokens => {
                        generation.prompt_began(p.began);
                        if p.done {
                            ready = p.ahead.claim(p.serial);
                            p.ahead.clear();
                        }
                        if let Some(r) = &ready {
                            generation.prompt_done_in(r.evaluated, r.reused, r.restored, r.ms);
                        }
                        Phase::Prompt(p.eval)
                    }
                    (prompt, prefill) => {
                        // (What was evaluated ahead stays in the KV for prefix reuse.)
                        if let Some(p) = prefill {
                            p.ahead.clear();
                        }
                        match prompt {
                            Prompt::Tokens(tokens) => Phase::Prompt(PromptEval::new(tokens)),
                            Prompt::Media { chunks, vision, media } => Phase::Media { chunks, vision, media },
                        }
                    }
                };
                let ctx_size = options.ctx_size as usize;
                // A generation still running on this sequence is replaced.
                let active =
                    record.active.insert(Box::new(Active { stream, phase, generation, ctx_size, started: self.tick }));
                if let Some(ready) = ready {
                    // Its first token, from the logits its evaluation left.
                    let result = active.generation.sample_logits(&self.model, &ready.logits, &mut self.piece);
                    settle(&mut self.records, seq, result, ready.batch_tokens, &self.piece);
                }
            }
            Command::Start { seq, job: Job::Prefill { tokens, serial, ahead } } => {
                self.tick += 1;
                let record = self.records.entry(seq).or_default();
                if record.active.as_ref().is_some_and(|a| !a.stream.stopped()) {
                    // (New input ends a context's stream before it comes here.)
                    ahead.clear();
                    return;
                }
                record.active = None;
                // (`ahead` says this prefill is pending: its context set that when it asked.)
                self.keep_low(seq);
                let record = self.records.get_mut(&seq).expect("made above");
                // (A prompt evaluated ahead before stays in the KV for prefix reuse.)
                let eval = PromptEval::new(tokens);
                let started = self.tick;
                record.prefill =
                    Some(Box::new(Prefill { eval, serial, ahead, started, began: Instant::now(), done: false }));
            }
            Command::Start { seq, job: Job::Resume { generation, ctx_size, stream } } => {
                self.tick += 1;
                let record = self.records.entry(seq).or_default();
                // Its prompt is in the KV (a claimed prefill is never rolled back).
                if let Some(p) = record.prefill.take() {
                    p.ahead.clear();
                }
                if let Some(generation) = generation {
                    let started = self.tick;
                    let generation = *generation;
                    record.active =
                        Some(Box::new(Active { stream, phase: Phase::Generate, generation, ctx_size, started }));
                }
            }
            Command::Start { seq, job: Job::Embed { tokens, reply } } => {
                let result = self.embed(seq, &tokens);
                let _ = reply.send(result);
            }
            Command::Release { seq } => {
                if let Some(record) = self.records.remove(&seq) {
                    if let Some(slot) = record.slot {
                        self.slots[slot] = None;
                        if let Some(llama) = &mut self.llama {
                            forget(&mut llama.cell, slot, 0);
                        }
                    }
                    if let Some(saved) = record.saved {
                        self.saved_bytes -= saved.byte_len();
                    }
                }
            }
        }
    }

    /// One step: every sequence that can go on does. False when none could (nothing to do
    /// until a command or a poke).
    fn step(&mut self) -> bool {
        let runnable = self.runnable();
        if runnable.is_empty() {
            return false;
        }
        let placed = self.place(&runnable);
        if placed.is_empty() {
            return false;
        }
        // Prompts with images are evaluated on their own (mtmd decodes them itself).
        let mut text = Vec::with_capacity(placed.len());
        for seq in placed {
            if matches!(self.records[&seq].active.as_ref().map(|a| &a.phase), Some(Phase::Media { .. })) {
                self.eval_media(seq);
            } else {
                text.push(seq);
            }
        }
        // In slot order: llama.cpp splits a batch of several KV streams into micro-batches
        // of consecutive sequence ids, so out of order, one step would cost two passes
        // over the weights.
        text.sort_unstable_by_key(|seq| self.records[seq].slot);
        if self.limits.deterministic {
            // Each sequence in a llama_decode of its own: what it computes never depends on
            // what else runs (see `Limits::deterministic`).
            for seq in text {
                self.decode(&[seq]);
            }
        } else if !text.is_empty() {
            self.decode(&text);
        }
        true
    }

    /// The sequences that can go on now, in the order they started; streams stopped by their
    /// guest and generations that ended without needing the model are settled on the way.
    fn runnable(&mut self) -> Vec<u64> {
        // Generations first, then prompts evaluated ahead.
        let mut runnable: Vec<(bool, u64, u64)> = Vec::new();
        for (&seq, record) in &mut self.records {
            let Some(active) = &mut record.active else {
                if let Some(p) = record.prefill.as_ref().filter(|p| !p.done) {
                    runnable.push((true, p.started, seq));
                }
                continue;
            };
            if active.stream.stopped() {
                record.active = None;
                continue;
            }
            match active.phase {
                Phase::Prompt(_) | Phase::Media { .. } => runnable.push((false, active.started, seq)),
                Phase::Generate => {
                    if let Some(end) = active.generation.ended() {
                        // A reverse prompt ended it when its last token was drawn.
                        let end = active.generation.end(end);
                        active.stream.finish(Ok(end), active.generation.metrics());
                        record.active = None;
                    } else if active.generation.at_limit() || active.stream.has_room() {
                        if record.cached.len() >= active.ctx_size {
                            let end = active.generation.end(End::ContextFull);
                            active.stream.finish(Ok(end), active.generation.metrics());
                            record.active = None;
                        } else {
                            runnable.push((false, active.started, seq));
                        }
                    }
                }
            }
        }
        runnable.sort_unstable();
        runnable.into_iter().map(|(_, _, seq)| seq).collect()
    }

    /// Give the runnable sequences slots (taking idle sequences' slots as needed); those
    /// that got one, in order.
    fn place(&mut self, runnable: &[u64]) -> Vec<u64> {
        if self.llama.is_none() {
            if let Err(e) = self.open() {
                log::warn!("{}", e.message);
                // Nothing can run: fail the generations that wait.
                for seq in runnable {
                    self.fail(*seq, e.clone());
                }
                return Vec::new();
            }
        }
        let mut placed = Vec::with_capacity(runnable.len());
        for &seq in runnable {
            let has_slot = self.records[&seq].slot.is_some() || self.take_slot(seq, runnable);
            // (A generation whose KV was lost on the way in has ended.)
            let record = &self.records[&seq];
            if has_slot && (record.active.is_some() || record.prefill.is_some()) {
                placed.push(seq);
            }
        }
        placed
    }

    /// The llama.cpp context, with its slots: made once, on first use, and kept in this
    /// shape for the engine's life. (A sequence's KV copied between contexts of different
    /// shapes was measured to change its later tokens, so the shape never changes.)
    fn open(&mut self) -> NnResult<()> {
        let slots = self.limits.slots.max(1);
        let started = Instant::now();
        let cell = new_context(&self.model, &self.options, slots)?;
        rpc_check(&self.rpc, cell.borrow_dependent())?;
        log::info!(
            "engine context: {slots} sequences of ctx-size {} (threads {}, batch-size {}), made in {} ms",
            self.options.ctx_size,
            self.options.threads,
            cell.borrow_dependent().n_batch(),
            started.elapsed().as_millis()
        );
        let batch = LlamaBatch::new(cell.borrow_dependent().n_batch() as usize, 1);
        self.llama = Some(Llama { cell, batch });
        self.slots = vec![None; slots];
        Ok(())
    }

    /// Give `seq` a slot: a free one, or the least recently used one whose sequence is not
    /// running now (for a prompt evaluated ahead: one whose context is idle). Its saved KV
    /// (if any) is copied in.
    fn take_slot(&mut self, seq: u64, runnable: &[u64]) -> bool {
        let free = self.slots.iter().position(Option::is_none);
        let ahead = self.records[&seq].active.is_none();
        let slot = match free {
            Some(slot) => slot,
            None => {
                let victim = self
                    .slots
                    .iter()
                    .flatten()
                    .filter(|s| !runnable.contains(s))
                    .filter(|s| !ahead || self.records.get(s).is_some_and(Record::idle))
                    .min_by_key(|s| self.records.get(s).map_or(0, |r| r.last_used))
                    .copied();
                let Some(victim) = victim else { return false };
                let slot = self.records[&victim].slot.expect("a slot holder");
                self.evict(victim);
                slot
            }
        };
        let Some(llama) = &mut self.llama else { return false };
        let record = self.records.get_mut(&seq).expect("a runnable sequence");
        self.slots[slot] = Some(seq);
        record.slot = Some(slot);
        forget(&mut llama.cell, slot, 0);
        if let Some(saved) = record.saved.take() {
            self.saved_bytes -= saved.byte_len();
            let restored = llama.cell.with_dependent_mut(|_, ctx| ctx.state_seq_set(&saved, slot as i32));
            if let Err(e) = restored {
                log::warn!("a sequence's saved KV could not be restored ({e}); its tokens are evaluated again");
                forget(&mut llama.cell, slot, 0);
                record.cached = Vec::new();
                if matches!(record.active.as_ref().map(|a| &a.phase), Some(Phase::Generate)) {
                    let active = record.active.take().expect("matched");
                    let e = NnError::runtime(format!("this stream's KV cache could not be restored ({e})"));
                    active.stream.finish(Err(e), active.generation.metrics());
                }
            }
        } else if !record.cached.is_empty() {
            // Only its tokens were kept: a prompt evaluates them again; a generation in
            // progress (whose KV is always kept) cannot go on without them.
            record.cached = Vec::new();
            if matches!(record.active.as_ref().map(|a| &a.phase), Some(Phase::Generate)) {
                let active = record.active.take().expect("matched");
                let e = NnError::runtime("this stream's KV cache was lost (see the log); start it again");
                active.stream.finish(Err(e), active.generation.metrics());
            }
        }
        true
    }

    /// Keep the sequences at work in the lowest slots: a sequence starting work (a prompt, a
    /// generation) in a slot above one that is free or held by an idle sequence moves down
    /// into it, its KV copied over (the idle holder's saved, as any evicted one's).
    ///
    /// llama.cpp computes a batch over the KV streams from its lowest sequence's to its
    /// highest's: eight streams in slots 0, 1, 3, 5, 9, 10, 11 and 12 (as a server's contexts
    /// end up after serving sixteen clients) took 20 ms a step with SmolLM2 where the same
    /// eight in slots 0 to 7 take 12.
    fn keep_low(&mut self, seq: u64) {
        let Some(from) = self.records.get(&seq).and_then(|r| r.slot) else { return };
        let Some(to) = (0..from).find(|&t| match self.slots[t] {
            None => true,
            Some(holder) => self.records.get(&holder).is_some_and(Record::idle),
        }) else {
            return;
        };
        if let Some(holder) = self.slots[to] {
            self.evict(holder);
        }
        let Some(llama) = &mut self.llama else { return };
        let record = self.records.get_mut(&seq).expect("has a slot");
        if !record.cached.is_empty() {
            let moved = llama
                .cell
                .borrow_dependent()
                .state_seq_get(from as i32, LlamaStateSeqFlags::empty())
                .and_then(|state| llama.cell.with_dependent_mut(|_, ctx| ctx.state_seq_set(&state, to as i32)));
            if let Err(e) = moved {
                // Where it is, it still works: only slower.
                log::warn!("a sequence's KV could not be moved from slot {from} to {to} ({e})");
                forget(&mut llama.cell, to, 0);
                return;
            }
        }
        forget(&mut llama.cell, from, 0);
        self.slots[from] = None;
        self.slots[to] = Some(seq);
        record.slot = Some(to);
        log::trace!("sequence {seq} moved from slot {from} to {to}");
    }

    /// Take `seq`'s slot away, its KV copied out (or, past the budget, dropped).
    fn evict(&mut self, seq: u64) {
        let Some(llama) = &mut self.llama else { return };
        let Some(record) = self.records.get_mut(&seq) else { return };
        let Some(slot) = record.slot.take() else { return };
        self.slots[slot] = None;
        if record.prefill.as_ref().is_some_and(|p| p.ahead.withdraw()) {
            // A prompt evaluated ahead that no generation has taken is rolled back: its
            // generation evaluates it as it would have without it. (One that was taken stays:
            // its generation goes on from it.)
            let p = record.prefill.take().expect("just seen");
            let base = p.eval.base(&record.cached);
            if forget(&mut llama.cell, slot, base) {
                record.cached.truncate(base);
            } else {
                record.cached.clear();
            }
        }
        if !record.cached.is_empty() {
            match llama.cell.borrow_dependent().state_seq_get(slot as i32, LlamaStateSeqFlags::empty()) {
                Ok(state) => {
                    self.saved_bytes += state.byte_len();
                    if self.bytes_per_token == 0 {
                        self.bytes_per_token = state.byte_len() / record.cached.len();
                    }
                    log::debug!("sequence {seq} out of slot {slot}: {} KV bytes saved", state.byte_len());
                    record.saved = Some(state);
                }
                Err(e) => {
                    log::warn!("a sequence's KV could not be saved ({e}); its tokens will be evaluated again");
                    record.cached.clear();
                }
            }
        }
        forget(&mut llama.cell, slot, 0);
        self.keep_budget();
    }

    /// Past the budget for saved KV, the least recently used idle sequences keep only their
    /// tokens (a generation in progress keeps its KV). The budget is what the engine's own KV
    /// cache holds (its slots' cells), and at most `--nn-max-swap-mib`: idle contexts never
    /// keep more KV than the live ones can.
    fn keep_budget(&mut self) {
        let cache = self.bytes_per_token * self.options.ctx_size as usize * self.slots.len();
        let budget = (self.limits.max_swap_mib << 20).min(cache);
        while self.saved_bytes > budget {
            let oldest = self
                .records
                .iter()
                .filter(|(_, r)| r.saved.is_some() && r.idle())
                .min_by_key(|(_, r)| r.last_used)
                .map(|(&s, _)| s);
            let Some(seq) = oldest else { break };
            let record = self.records.get_mut(&seq).expect("just found");
            let saved = record.saved.take().expect("just found");
            self.saved_bytes -= saved.byte_len();
            record.cached = Vec::new();
        }
    }

    fn fail(&mut self, seq: u64, e: NnError) {
        if let Some(record) = self.records.get_mut(&seq) {
            if let Some(p) = record.prefill.take() {
                p.ahead.clear();
            }
            if let Some(active) = record.active.take() {
                active.stream.finish(Err(e), active.generation.metrics());
            }
        }
    }

    /// One `llama_decode` for the text sequences placed this step.
    fn decode(&mut self, seqs: &[u64]) {
        let Self { llama, records, options, piece, tick, cache, rpc, .. } = self;
        let cache = cache.as_ref();
        let Some(llama) = llama else { return };
        *tick += 1;
        let n_batch = llama.cell.borrow_dependent().n_batch() as usize;
        let n_ubatch = llama.cell.borrow_dependent().n_ubatch() as usize;
        // (As llama.cpp splits a batch: the prompt chunks below fit one micro-batch.)
        let ubatch = n_ubatch.min(n_batch);
        let batch = &mut llama.batch;
        batch.clear();
        let mut entries = Vec::with_capacity(seqs.len());
        // Generating sequences first (one token each), then prompts in the room left (those
        // evaluated ahead come last in `seqs`).
        let generating =
            seqs.iter().filter(|s| records[s].active.as_ref().is_some_and(|a| matches!(a.phase, Phase::Generate)));
        let left = n_ubatch.min(n_batch.saturating_sub(generating.count())).max(1);
        let mut room = PromptRoom { left, ubatch, cache };
        for &seq in seqs {
            let record = records.get_mut(&seq).expect("placed");
            let slot = record.slot.expect("placed") as i32;
            record.last_used = *tick;
            let Some(active) = record.active.as_mut() else {
                let p = record.prefill.as_mut().expect("runnable");
                let chunk = p.eval.add_chunk(&mut record.cached, &mut llama.cell, slot as usize, batch, &mut room);
                if let Some((count, logits)) = chunk {
                    entries.push(Entry::Prefill { seq, count, logits });
                }
                continue;
            };
            match &mut active.phase {
                Phase::Generate => {
                    let Some(token) = active.generation.take_pending() else {
                        // Nothing to evaluate: the limit was reached before a token.
                        entries.push(Entry::Token { seq, token: NOT_A_TOKEN, logits: None });
                        continue;
                    };
                    let logits = !active.generation.at_limit();
                    let idx = batch.n_tokens();
                    if batch.add(token, record.cached.len() as i32, &[slot], logits).is_err() {
                        continue;
                    }
                    entries.push(Entry::Token { seq, token, logits: logits.then_some(idx) });
                }
                Phase::Prompt(eval) => {
                    let chunk = eval.add_chunk(&mut record.cached, &mut llama.cell, slot as usize, batch, &mut room);
                    if let Some((count, logits)) = chunk {
                        entries.push(Entry::Prompt { seq, count, logits });
                    }
                }
                Phase::Media { .. } => unreachable!("evaluated apart"),
            }
        }
        let batch_tokens = batch.n_tokens() as usize;
        let decoded = if batch_tokens == 0 {
            Ok(())
        } else {
            let threads = if batch_tokens > 1 { options.threads_batch } else { options.threads };
            let _cores = crate::cores::cpu().acquire(threads as usize);
            let started = std::time::Instant::now();
            let decoded = llama.cell.with_dependent_mut(|_, ctx| {
                ctx.decode(batch).map_err(decode_error)?;
                rpc_check(rpc, ctx)
            });
            log::debug!(
                "decoded {batch_tokens} tokens of {} sequences in {:.2} ms (slots {:?})",
                seqs.len(),
                started.elapsed().as_secs_f64() * 1e3,
                seqs.iter().map(|s| records[s].slot).collect::<Vec<_>>()
            );
            decoded
        };
        if let Err(e) = decoded {
            log::warn!("a batch of {batch_tokens} tokens failed: {}", e.message);
            for entry in entries {
                let record = records.get_mut(&entry.seq()).expect("in the batch");
                forget(&mut llama.cell, record.slot.expect("placed"), 0);
                record.cached.clear();
                if let Some(p) = record.prefill.take() {
                    p.ahead.clear();
                }
                if let Some(active) = record.active.take() {
                    active.stream.finish(Err(e.clone()), active.generation.metrics());
                }
            }
            return;
        }
        // Prompts evaluated now that are worth keeping for later processes: saved once every
        // sequence's token of this step is out.
        let mut to_save = Vec::new();
        // A prompt chunk batched with other sequences' work is computed in the last bits as
        // that batch makes it, not as a prompt alone.
        let alone = entries.len() == 1;
        for entry in entries {
            match entry {
                Entry::Token { seq, token, logits } => {
                    let record = records.get_mut(&seq).expect("in the batch");
                    if token != NOT_A_TOKEN {
                        record.cached.push(token);
                    }
                    let active = record.active.as_mut().expect("in the batch");
                    let result = match logits {
                        Some(idx) => {
                            llama.cell.with_dependent_mut(|m, ctx| active.generation.sample(m, ctx, idx, piece))
                        }
                        None => Ok(Some(End::Limit)),
                    };
                    settle(records, seq, result, batch_tokens, piece);
                }
                Entry::Prompt { seq, count, logits } => {
                    let record = records.get_mut(&seq).expect("in the batch");
                    let active = record.active.as_mut().expect("in the batch");
                    let Phase::Prompt(eval) = &mut active.phase else { unreachable!() };
                    eval.chunk_done(&mut record.cached, count);
                    eval.exact &= alone;
                    if let Some(idx) = logits {
                        if cache.is_some() && eval.exact && eval.evaluated() >= persist::SAVE_AFTER {
                            to_save.push(seq);
                        }
                        active.generation.prompt_done(eval.evaluated(), eval.reused, eval.restored);
                        let result =
                            llama.cell.with_dependent_mut(|m, ctx| active.generation.sample(m, ctx, idx, piece));
                        settle(records, seq, result, batch_tokens, piece);
                    }
                }
                Entry::Prefill { seq, count, logits } => {
                    let record = records.get_mut(&seq).expect("in the batch");
                    let p = record.prefill.as_mut().expect("in the batch");
                    p.eval.chunk_done(&mut record.cached, count);
                    p.eval.exact &= alone;
                    if let Some(idx) = logits {
                        // Kept for the generation's first token (the next decode overwrites
                        // the context's).
                        let logits = llama.cell.borrow_dependent().get_logits_ith(idx).to_vec();
                        let ms = p.began.elapsed().as_secs_f64() * 1e3;
                        let (evaluated, reused, restored) = (p.eval.evaluated(), p.eval.reused, p.eval.restored);
                        if cache.is_some() && p.eval.exact && evaluated >= persist::SAVE_AFTER {
                            to_save.push(seq);
                        }
                        let serial = p.serial;
                        p.ahead.publish(Ready { serial, logits, evaluated, reused, restored, ms, batch_tokens });
                        p.done = true;
                    }
                }
            }
        }
        if let Some(cache) = cache {
            // (The first generated token is not in the KV yet: it holds the prompt alone.)
            for seq in to_save {
                let record = &records[&seq];
                let slot = record.slot.expect("in the batch");
                persist::save(cache, llama.cell.borrow_dependent(), slot, &record.cached);
            }
        }
    }

    /// Evaluate a prompt with images into `seq`'s slot, then draw its first token. What the
    /// slot's KV shares with the prompt (the same text and the same pictures, by their bytes'
    /// hash) is kept, and only the rest is evaluated (see [`media`]).
    fn eval_media(&mut self, seq: u64) {
        let Some(llama) = &mut self.llama else { return };
        self.tick += 1;
        let record = self.records.get_mut(&seq).expect("placed");
        record.last_used = self.tick;
        let slot = record.slot.expect("placed");
        let active = record.active.as_mut().expect("runnable");
        let Phase::Media { chunks, vision, media: prompt } = &active.phase else { unreachable!() };
        let n_batch = llama.cell.borrow_dependent().n_batch() as usize;
        let threads = self.options.threads_batch as usize;
        let keys = if vision.uses_mrope() { None } else { media::position_keys(chunks) };
        // Where to resume, and the prompt's part from the next picture on, tokenized again
        // (checked to be the same chunks, or nothing is kept).
        let mut plan = keys.as_ref().and_then(|k| media::resume(chunks, shared_prefix(&record.cached, k)));
        let mut rest = None;
        if let Some(Resume { rest: Some((picture, chunk)), .. }) = &plan {
            let marker = llama_cpp_2::mtmd::mtmd_default_marker();
            let part =
                prompt.text.match_indices(marker).nth(*picture).and_then(|(at, _)| {
                    vision.tokenize_part(&prompt.text[at..], &prompt.images[*picture..], false).ok()
                });
            match part {
                Some(part) if media::same_chunks(&part, chunks, *chunk) => rest = Some(part),
                _ => plan = None,
            }
        }
        let plan = plan.filter(|p| p.keep > 0 && forget(&mut llama.cell, slot, p.keep));
        if plan.is_none() {
            forget(&mut llama.cell, slot, 0);
        }
        let keep = plan.as_ref().map_or(0, |p| p.keep);
        record.cached.truncate(keep);
        let evaluated = llama.cell.with_dependent_mut(|_, ctx| -> Result<i32, String> {
            let _cores = crate::cores::cpu().acquire(threads);
            let Some(plan) = &plan else {
                return chunks
                    .eval_chunks(&mut vision.lock(), ctx, 0, slot as i32, n_batch as i32, true)
                    .map_err(|e| e.to_string());
            };
            let mut n_past = keep;
            let pieces = plan.tail.chunks(n_batch.max(1)).count();
            for (i, piece) in plan.tail.chunks(n_batch.max(1)).enumerate() {
                let mut batch = LlamaBatch::new(piece.len(), 1);
                let last_piece = i + 1 == pieces && rest.is_none();
                for (j, &token) in piece.iter().enumerate() {
                    let logits = last_piece && j + 1 == piece.len();
                    batch.add(token, (n_past + j) as i32, &[slot as i32], logits).map_err(|e| e.to_string())?;
                }
                ctx.decode(&mut batch).map_err(|e| e.to_string())?;
                n_past += piece.len();
            }
            match &rest {
                Some(part) => part
                    .eval_chunks(&mut vision.lock(), ctx, n_past as i32, slot as i32, n_batch as i32, true)
                    .map_err(|e| e.to_string()),
                None => Ok(n_past as i32),
            }
        });
        let rpc = &self.rpc;
        let evaluated = evaluated.and_then(|end| {
            llama.cell.with_dependent_mut(|_, ctx| rpc_check(rpc, ctx)).map_err(|e| e.message)?;
            Ok(end)
        });
        let result = match evaluated {
            Ok(end) => {
                let positions = end.max(0) as usize;
                match &keys {
                    Some(keys) if keys.len() == positions => record.cached.clone_from(keys),
                    _ => record.cached.resize(positions, NOT_A_TOKEN),
                }
                active.generation.prompt_done(positions - keep, keep, 0);
                if keep > 0 {
                    log::debug!("prompt with images: {keep} positions kept, {} evaluated", positions - keep);
                }
                let piece = &mut self.piece;
                llama.cell.with_dependent_mut(|m, ctx| active.generation.sample(m, ctx, -1, piece))
            }
            Err(e) => {
                forget(&mut llama.cell, slot, 0);
                record.cached.clear();
                Err(NnError::runtime(format!("llama.cpp failed to evaluate the images and prompt: {e}")))
            }
        };
        settle(&mut self.records, seq, result, 1, &self.piece);
    }

    /// The embedding of `tokens` in `seq`'s slot, as llama.cpp's embedding example computes
    /// it: the text in one batch from an empty sequence, every token an output, then the
    /// pooled embedding of the sequence (or the last token's where the model does no
    /// pooling). The slot keeps nothing of it.
    fn embed(&mut self, seq: u64, tokens: &[LlamaToken]) -> NnResult<Vec<f32>> {
        self.records.entry(seq).or_default();
        let runnable = [seq];
        if self.llama.is_none() {
            self.open()?;
        }
        if self.records[&seq].slot.is_none() && !self.take_slot(seq, &runnable) {
            return Err(NnError::new(Errno::Busy, "no sequence slot is free for the embedding"));
        }
        let llama = self.llama.as_mut().expect("opened above");
        let record = self.records.get_mut(&seq).expect("made above");
        let slot = record.slot.expect("placed above");
        record.cached.clear();
        forget(&mut llama.cell, slot, 0);
        let n_batch = llama.cell.borrow_dependent().n_batch() as usize;
        if tokens.len() > n_batch {
            return Err(NnError::new(
                Errno::PromptTooLong,
                format!(
                    "the text has {} tokens but an embedding takes at most batch-size ({n_batch}): \
                     raise batch-size (and ctx-size) or embed shorter pieces",
                    tokens.len()
                ),
            ));
        }
        let mut batch = LlamaBatch::new(tokens.len().max(1), 1);
        for (i, &tok) in tokens.iter().enumerate() {
            batch.add(tok, i as i32, &[slot as i32], true).map_err(|e| NnError::runtime(e.to_string()))?;
        }
        let threads = self.options.threads_batch as usize;
        let result = llama.cell.with_dependent_mut(|_, ctx| {
            {
                let _cores = crate::cores::cpu().acquire(threads);
                ctx.decode(&mut batch).map_err(decode_error)?;
                rpc_check(&self.rpc, ctx)?;
            }
            let embedding = match ctx.embeddings_seq_ith(slot as i32) {
                Ok(pooled) => pooled,
                Err(_) => ctx
                    .embeddings_ith(tokens.len() as i32 - 1)
                    .map_err(|e| NnError::runtime(format!("llama.cpp gave no embedding: {e}")))?,
            };
            Ok(embedding.to_vec())
        });
        forget(&mut llama.cell, slot, 0);
        result
    }
}

/// Settle `seq`'s generation after its sampling: the token (its bytes in `piece`) goes to its
/// guest, or the end does.
fn settle(
    records: &mut HashMap<u64, Record>,
    seq: u64,
    sampled: NnResult<Option<End>>,
    batch_tokens: usize,
    piece: &[u8],
) {
    let record = records.get_mut(&seq).expect("a sequence in the batch");
    let active = record.active.as_mut().expect("an active sequence in the batch");
    active.generation.set_batch_tokens(batch_tokens);
    match sampled {
        Ok(None) => {
            active.phase = Phase::Generate;
            active.stream.push(piece, active.generation.metrics());
        }
        Ok(Some(end)) => {
            let end = active.generation.end(end);
            active.stream.finish(Ok(end), active.generation.metrics());
            record.active = None;
        }
        Err(e) => {
            active.stream.finish(Err(e), active.generation.metrics());
            record.active = None;
        }
    }
}

/// How many leading tokens the KV shares with a prompt; at least the prompt's last token is
/// evaluated, since its logits start the generation.
fn shared_prefix(cached: &[LlamaToken], prompt: &[LlamaToken]) -> usize {
    cached.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len().saturating_sub(1))
}

/// Drop `slot`'s KV cells from position `from` on; false when the cache cannot drop part of a
/// sequence (recurrent or sliding-window models) and the whole sequence was dropped instead.
///
/// Only the cells' bookkeeping goes: emptied cells are masked out of attention, so nothing
/// needs their data zeroed.
fn forget(cell: &mut ModelContext, slot: usize, from: usize) -> bool {
    cell.with_dependent_mut(|_, ctx| {
        let seq = slot as i32;
        if u32::try_from(from).is_ok_and(|from| ctx.kv_cache_seq_rm(seq, Some(from), None).is_ok()) {
            return true;
        }
        let _ = ctx.kv_cache_seq_rm(seq, None, None);
        false
    })
}

/// With layers on RPC servers: wait for their part of what was computed, and fail it when a
/// server was lost meanwhile (its replies then read as zeros).
fn rpc_check(rpc: &Option<Arc<Watch>>, ctx: &LlamaContext) -> NnResult<()> {
    let Some(watch) = rpc else { return Ok(()) };
    ctx.synchronize();
    watch.check()
}

fn decode_error(e: DecodeError) -> NnError {
    match e {
        DecodeError::NoKvCacheSlot => NnError::new(Errno::ContextFull, "no room left in the KV cache"),
        e => NnError::runtime(format!("llama.cpp failed to evaluate tokens: {e}")),
    }
}

/// A llama.cpp context for `slots` sequences of `ctx-size` cells each.
fn new_context(model: &Arc<LlamaModel>, options: &Options, slots: usize) -> NnResult<ModelContext> {
    let backend = &crate::backend::ggml::llama_backend()?.0;
    let flash = match options.flash_attn {
        None => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
        Some(true) => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
        Some(false) => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
    };
    let ctx_size = options.ctx_size;
    let n_ctx = ctx_size.saturating_mul(slots as u32);
    // Embeddings pool over the whole text, which must then be one micro-batch (as llama.cpp's
    // embedding example sets it), at most batch-size long; a generation's batch has room for
    // every sequence's next token at least.
    let (batch, ubatch) = if options.embedding {
        let batch = options.batch_size.min(ctx_size);
        (batch, batch)
    } else {
        let batch = options.batch_size.min(n_ctx).max(slots as u32 + 1);
        (batch, options.ubatch_size.min(batch))
    };
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_seq_max(slots as u32)
        .with_kv_unified(false)
        .with_n_batch(batch)
        .with_n_ubatch(ubatch)
        .with_embeddings(options.embedding)
        .with_n_threads(options.threads as i32)
        .with_n_threads_batch(options.threads_batch as i32)
        .with_flash_attention_policy(flash);
    let _guard = CONTEXT_CREATION.lock().unwrap_or_else(|p| p.into_inner());
    ModelContext::try_new(model.clone(), |m| m.new_context(backend, params)).map_err(|e| {
        NnError::runtime(format!(
            "cannot create a llama.cpp context for {slots} sequences of ctx-size {ctx_size} (out of memory?): {e}; \
             lower ctx-size or --nn-max-workers"
        ))
    })
}
