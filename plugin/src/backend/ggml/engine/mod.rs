//! The batching engine: one llama.cpp context with many sequences per loaded model and
//! context shape, driven by one scheduler thread that decodes every generating sequence's
//! next token together in one `llama_decode`, with waiting prompts fed alongside in chunks
//! (continuous batching, as llama.cpp's server does).
//!
//! Execution contexts are cheap handles: each holds a [`Sequence`], its place in the engine.
//! A sequence holds a slot (a llama.cpp sequence id, its KV cells) only while it needs one;
//! when all slots are taken, the least recently used sequence that is not generating gives
//! its slot up, its KV copied out to host memory (`llama_state_seq_*`) and copied back on its
//! next use, so it resumes exactly where it was. Saved KV is bounded by a host budget; past
//! it the oldest idle sequences keep only their tokens and evaluate them again when used.
//! Memory is bounded by slots and that budget, not by open contexts.
//!
//! A text prompt is evaluated as soon as its context is given it (`set_input`), not when the
//! context asks for the generation: a guest that gives several contexts their prompts and
//! then streams them in turn (`compute_single` waits for a stream's first token) would
//! otherwise hand the engine one prompt per step. The logits of the prompt's last token are
//! kept, and the generation's first token is drawn from them on the context's own thread, so
//! it does not wait for the scheduler's step either. Such a prefill runs after every
//! generation's work in a step, and only in a slot that is free or an idle context's; one
//! that no generation took yet is rolled back when its slot is needed.
//!
//! Module map: [`stream`] is the token queue between a generation and its guest;
//! [`scheduler`] owns the llama.cpp context, the slots and the batching loop; [`persist`]
//! moves slots' KV to and from the prompt cache on disk.

mod media;
mod persist;
mod scheduler;
mod stream;

pub use stream::{Next, Stream};

use super::generation::{Generation, Prompt};
use super::options::Options;
use crate::error::{NnError, NnResult};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The options that shape a llama.cpp context: contexts that differ in them go to separate
/// engines. (`ctx-size` is each sequence's own room in the KV cache.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EngineKey {
    ctx_size: u32,
    batch_size: u32,
    ubatch_size: u32,
    threads: u32,
    threads_batch: u32,
    flash_attn: Option<bool>,
    embedding: bool,
}

impl EngineKey {
    pub fn of(o: &Options) -> Self {
        Self {
            ctx_size: o.ctx_size,
            batch_size: o.batch_size,
            ubatch_size: o.ubatch_size,
            threads: o.threads,
            threads_batch: o.threads_batch,
            flash_attn: o.flash_attn,
            embedding: o.embedding,
        }
    }
}

/// What a context asks of the engine.
enum Job {
    Generate {
        prompt: Prompt,
        options: Box<Options>,
        stream: Arc<stream::Shared>,
    },
    /// Evaluate a text prompt ahead of its generation (see [`Sequence::prefill`]).
    Prefill {
        tokens: Vec<LlamaToken>,
        serial: u64,
        ahead: Arc<Ahead>,
    },
    /// Go on with a generation whose prompt was evaluated ahead and whose first token its
    /// context drew (`None`: it ended there).
    Resume {
        generation: Option<Box<Generation>>,
        ctx_size: usize,
        stream: Arc<stream::Shared>,
    },
    Embed {
        tokens: Vec<LlamaToken>,
        reply: std::sync::mpsc::SyncSender<NnResult<Vec<f32>>>,
    },
}

enum Command {
    Start { seq: u64, job: Job },
    Release { seq: u64 },
}

#[derive(Default)]
struct InboxState {
    commands: Vec<Command>,
    /// Something the scheduler waits on may have changed (a token taken, a stream stopped).
    poked: bool,
    closed: bool,
}

/// Where contexts leave commands for the scheduler, and how they wake it.
pub struct Inbox {
    state: Mutex<InboxState>,
    wake: Condvar,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, command: Command) {
        self.lock().commands.push(command);
        self.wake.notify_one();
    }

    /// Wake the scheduler to look at its streams again.
    pub fn poke(&self) {
        self.lock().poked = true;
        self.wake.notify_one();
    }

    /// The commands waiting, and whether the engine is closing; the scheduler then looks at
    /// everything, so pokes until now are answered.
    fn take(&self) -> (Vec<Command>, bool) {
        let mut s = self.lock();
        s.poked = false;
        (std::mem::take(&mut s.commands), s.closed)
    }

    /// Sleep until there is a command, a poke, or the end.
    fn wait(&self) {
        let mut s = self.lock();
        while s.commands.is_empty() && !s.poked && !s.closed {
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A prompt evaluated ahead of its generation, once evaluated: the logits of its last token,
/// which the generation's first token is drawn from, and what the evaluation cost.
struct Ready {
    /// Which of its context's prefills this is.
    serial: u64,
    logits: Vec<f32>,
    evaluated: usize,
    reused: usize,
    restored: usize,
    ms: f64,
    batch_tokens: usize,
}

#[derive(Default)]
enum AheadState {
    #[default]
    Empty,
    /// Prefill `serial` was asked for and is not evaluated yet.
    Pending(u64),
    Ready(Ready),
    /// Its context took it to start a generation: the scheduler keeps the prompt's KV.
    Claimed,
}

/// What the scheduler and a context share of the prompt evaluated ahead for it: the scheduler
/// leaves the result here, and the context takes it when its generation starts, without
/// waiting for the scheduler's next step.
#[derive(Default)]
struct Ahead(Mutex<AheadState>);

impl Ahead {
    fn lock(&self) -> MutexGuard<'_, AheadState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take prefill `serial`'s result to start a generation from.
    fn claim(&self, serial: u64) -> Option<Ready> {
        let mut state = self.lock();
        match std::mem::take(&mut *state) {
            AheadState::Ready(ready) if ready.serial == serial => {
                *state = AheadState::Claimed;
                Some(ready)
            }
            other => {
                *state = other;
                None
            }
        }
    }

    /// Whether prefill `serial` is asked for and still under way (it ends evaluated, or
    /// given up: rolled back, failed, superseded).
    fn pending(&self, serial: u64) -> bool {
        matches!(*self.lock(), AheadState::Pending(s) if s == serial)
    }

    /// The prefill's result, for its context to take.
    fn publish(&self, ready: Ready) {
        *self.lock() = AheadState::Ready(ready);
    }

    /// Nothing is kept here any more (the scheduler has the generation).
    fn clear(&self) {
        *self.lock() = AheadState::Empty;
    }

    /// Take the result back (its KV is about to go); false when a context has claimed it.
    fn withdraw(&self) -> bool {
        let mut state = self.lock();
        if matches!(*state, AheadState::Claimed) {
            return false;
        }
        *state = AheadState::Empty;
        true
    }
}

/// One engine: its scheduler runs on a computing thread until the engine is dropped.
pub struct Engine {
    model: Arc<LlamaModel>,
    inbox: Arc<Inbox>,
    key: EngineKey,
    /// Answers when the scheduler has ended (and freed its llama.cpp context).
    done: Mutex<Option<Receiver<()>>>,
}

static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(1);

impl Engine {
    /// Start an engine for `model` with the context shape of `options`, keeping long prompts'
    /// KV in `cache` when the host set a prompt cache. Its llama.cpp context is made on first
    /// use, with `--nn-slots` sequences.
    pub fn start(
        model: Arc<LlamaModel>,
        rpc: Option<Arc<super::rpc::Watch>>,
        options: &Options,
        cache: Option<crate::prompt_cache::Namespace>,
    ) -> NnResult<Arc<Self>> {
        let inbox = Arc::new(Inbox { state: Mutex::default(), wake: Condvar::new() });
        let key = EngineKey::of(options);
        let limits = crate::limits::get();
        let scheduler = scheduler::Scheduler::new(model.clone(), options.clone(), inbox.clone(), limits, cache, rpc);
        let done = crate::compute_threads::spawn(move || scheduler.run())?;
        log::debug!("engine started: {key:?}");
        Ok(Arc::new(Self { model, inbox, key, done: Mutex::new(Some(done)) }))
    }

    pub fn key(&self) -> EngineKey {
        self.key
    }

    /// A new sequence: a context's place in this engine (no slot yet).
    pub fn sequence(self: &Arc<Self>) -> Sequence {
        Sequence {
            engine: self.clone(),
            id: NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed),
            ahead: Arc::default(),
            prefilled: None,
            serial: 0,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        {
            let mut s = self.inbox.lock();
            s.closed = true;
        }
        self.inbox.wake.notify_one();
        // The scheduler frees its llama.cpp context before this returns, so what an unload
        // releases is released when it returns.
        if let Some(done) = self.done.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = done.recv();
        }
    }
}

/// A context's place in an engine: its KV (in a slot, saved, or only as tokens), and the
/// generation it runs, if any. Dropping it frees all of that.
pub struct Sequence {
    engine: Arc<Engine>,
    id: u64,
    ahead: Arc<Ahead>,
    /// The last prompt sent to be evaluated ahead (not yet used by a generation), and the
    /// serial number of that prefill.
    prefilled: Option<Vec<LlamaToken>>,
    serial: u64,
}

impl Sequence {
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Generate from `prompt` with `options` (sampling, limits), at most `window` tokens
    /// ahead of the guest (`u32::MAX`: never waiting for it). A generation already running
    /// on this sequence is stopped first.
    pub fn generate(&mut self, prompt: Prompt, options: &Options, window: u32) -> Stream {
        let (stream, shared) = Stream::new(window, self.engine.inbox.clone());
        let ready = match (&prompt, self.prefilled.take()) {
            (Prompt::Tokens(tokens), Some(prefilled)) if *tokens == prefilled => self.ahead.claim(self.serial),
            _ => None,
        };
        let job = match ready {
            Some(ready) => self.first_token(ready, options, shared),
            None => Job::Generate { prompt, options: Box::new(options.clone()), stream: shared },
        };
        self.engine.inbox.send(Command::Start { seq: self.id, job });
        stream
    }

    /// The first token of a generation whose prompt was evaluated ahead, drawn here from the
    /// logits kept (the same sampler over the same numbers as the scheduler would use), so
    /// the guest has it without waiting for the scheduler's step; the scheduler goes on from
    /// there.
    fn first_token(&self, ready: Ready, options: &Options, stream: Arc<stream::Shared>) -> Job {
        let ctx_size = options.ctx_size as usize;
        let mut generation = match Generation::new(&self.engine.model, options) {
            Ok(g) => g,
            Err(e) => {
                stream.finish(Err(e), Default::default());
                return Job::Resume { generation: None, ctx_size, stream };
            }
        };
        generation.prompt_done_in(ready.evaluated, ready.reused, ready.restored, ready.ms);
        generation.set_batch_tokens(ready.batch_tokens);
        let mut piece = Vec::with_capacity(16);
        let generation = match generation.sample_logits(&self.engine.model, &ready.logits, &mut piece) {
            Ok(None) => {
                stream.push(&piece, generation.metrics());
                Some(Box::new(generation))
            }
            Ok(Some(end)) => {
                stream.finish(Ok(end), generation.metrics());
                None
            }
            Err(e) => {
                stream.finish(Err(e), generation.metrics());
                None
            }
        };
        Job::Resume { generation, ctx_size, stream }
    }

    /// Start evaluating the prompt `tokens` now, before a generation asks for it, at the
    /// lowest priority and only in a slot that is free or held by an idle context. Prompts
    /// given to several contexts one after another are then evaluated in one batch, and a
    /// generation of exactly these tokens that starts later begins from the result: its first
    /// token drawn from the logits kept, as it would have been right after the evaluation.
    pub fn prefill(&mut self, tokens: Vec<LlamaToken>) {
        self.serial += 1;
        self.prefilled = Some(tokens.clone());
        *self.ahead.lock() = AheadState::Pending(self.serial);
        let job = Job::Prefill { tokens, serial: self.serial, ahead: self.ahead.clone() };
        self.engine.inbox.send(Command::Start { seq: self.id, job });
    }

    /// Whether the prompt given to [`prefill`](Self::prefill) last is still being
    /// evaluated: a generation of it started now would wait for that.
    pub fn prefill_pending(&self) -> bool {
        self.prefilled.is_some() && self.ahead.pending(self.serial)
    }

    /// The embedding of `tokens` (not normalised): pooled over the sequence, or the last
    /// token's where the model does no pooling.
    pub fn embed(&self, tokens: Vec<LlamaToken>) -> NnResult<Vec<f32>> {
        let (reply, answer) = sync_channel(1);
        self.engine.inbox.send(Command::Start { seq: self.id, job: Job::Embed { tokens, reply } });
        answer.recv().map_err(|_| NnError::runtime("the embedding computation failed (see the log)"))?
    }
}

impl Drop for Sequence {
    fn drop(&mut self) {
        self.engine.inbox.send(Command::Release { seq: self.id });
    }
}
