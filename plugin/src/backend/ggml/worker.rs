//! A streaming generation on its own thread. The worker computes tokens ahead of the guest,
//! at most `window` of them, and hands them over one at a time; while the guest handles a
//! token the next one is being computed. With a window of 0 it computes each token only
//! when the guest asks for it. The tokens are those of [`Generation::step`], so a stream
//! through a worker is exactly the stream without one.
//!
//! `compute` drains a worker with an unbounded window: the guest's thread sleeps until the
//! end. Generation never runs on the guest's
//! thread but on one of [`crate::compute_threads`]: ggml (with OpenMP) keeps a team of
//! threads for every thread that has computed, and once a process has more of them than
//! cores, OpenMP makes them sleep between computations, which measured about 40% slower per
//! token on 2 cores once the guest's thread had computed as well as a worker. For the same
//! reason a stream left unfinished (its worker parked, its thread busy) makes the next one
//! take another thread: end streams with `fini_single`.
//!
//! Stopping (on `fini_single`, a new input or the context's end) sets a flag the worker
//! checks between tokens, so it stops within one token's time; the session, with its KV
//! cache, comes back to the context for the next prompt.

use super::session::{End, Generation, Metrics, Prompt, Session};
use crate::error::{NnError, NnResult};
use crate::limits::Slot;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What the worker hands back when it is done (no generation if the prompt failed).
pub struct Finished {
    pub session: Session,
    pub generation: Option<Generation>,
}

/// One token waiting for the guest: the length of its bytes in `Queue::bytes`, and the
/// generation's costs when it was made.
struct Token {
    len: usize,
    metrics: Metrics,
}

#[derive(Default)]
struct Queue {
    bytes: VecDeque<u8>,
    tokens: VecDeque<Token>,
    /// Set once the worker has stopped producing: how the generation ended, with its costs.
    end: Option<(NnResult<End>, Metrics)>,
    /// The guest is blocked waiting for a token.
    waiting: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a token or the end is queued.
    produced: Condvar,
    /// Signalled when the guest takes a token, or on stop.
    taken: Condvar,
    stop: AtomicBool,
    window: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding this lock; recover from poisoning anyway.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Makes sure a waiting guest hears of the end even when the job panicked.
struct EndsOnDrop(Arc<Shared>);

impl Drop for EndsOnDrop {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        if q.end.is_none() && std::thread::panicking() {
            q.end =
                Some((Err(NnError::runtime("the generation failed (a bug; please report it)")), Metrics::default()));
        }
        self.0.produced.notify_one();
    }
}

/// What the guest gets from [`Worker::next`].
pub enum Next {
    /// A token; its bytes were appended to the output.
    Token(Metrics),
    /// The generation is over.
    End(NnResult<End>, Metrics),
}

pub struct Worker {
    shared: Arc<Shared>,
    /// Where the session comes back when the worker's job ends (closed if it panicked).
    finished: Option<Receiver<Finished>>,
}

impl Worker {
    /// Start generating on a computing thread, at most `window` tokens ahead of the guest.
    /// `slot` (a streaming worker's place, if any) is held until the generation ends.
    pub fn spawn(mut session: Session, prompt: Prompt, window: u32, slot: Option<Slot>) -> NnResult<Self> {
        let window = window as usize;
        let room = window.min(64);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                bytes: VecDeque::with_capacity(room * 32),
                tokens: VecDeque::with_capacity(room),
                end: None,
                waiting: false,
            }),
            produced: Condvar::new(),
            taken: Condvar::new(),
            stop: AtomicBool::new(false),
            window,
        });
        let theirs = shared.clone();
        let finished = crate::compute_threads::spawn(move || {
            let _slot = slot;
            let _ends = EndsOnDrop(theirs.clone());
            // The prompt is evaluated here too: one thread does all of a stream's computing.
            let generation = match Generation::start(&mut session, &prompt) {
                Ok(mut generation) => {
                    // The worker's own copy of the output, which the reverse-prompt check reads.
                    let mut output = Vec::with_capacity(4096);
                    produce(&theirs, &mut session, &mut generation, &mut output);
                    Some(generation)
                }
                Err(e) => {
                    theirs.lock().end = Some((Err(e), Metrics::default()));
                    theirs.produced.notify_one();
                    None
                }
            };
            Finished { session, generation }
        })?;
        Ok(Self { shared, finished: Some(finished) })
    }

    /// Wait for the next token and append its bytes to `output`.
    pub fn next(&self, output: &mut Vec<u8>) -> Next {
        let mut q = self.shared.lock();
        loop {
            if let Some(token) = q.tokens.pop_front() {
                output.extend(q.bytes.drain(..token.len));
                q.waiting = false;
                drop(q);
                self.shared.taken.notify_one();
                return Next::Token(token.metrics);
            }
            if let Some((end, metrics)) = &q.end {
                return Next::End(end.clone(), *metrics);
            }
            q.waiting = true;
            // A worker with a window of 0 computes only for a waiting guest.
            self.shared.taken.notify_one();
            q = self.shared.produced.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Wait for the end of a generation with an unbounded window, then append all its
    /// tokens' bytes to `output`; returns how many tokens there were, the length of the last
    /// one's bytes, and how it ended. For
    /// `compute`, which wants the whole answer: the guest's thread sleeps until the end
    /// instead of waking for every token on the cores the computation is using.
    pub fn drain(&self, output: &mut Vec<u8>) -> (usize, usize, NnResult<End>, Metrics) {
        assert_eq!(self.shared.window, u32::MAX as usize, "drain needs a worker that never waits for the guest");
        let mut q = self.shared.lock();
        while q.end.is_none() {
            q = self.shared.produced.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        let (tokens, last) = (q.tokens.len(), q.tokens.back().map_or(0, |t| t.len));
        q.tokens.clear();
        output.extend(q.bytes.drain(..));
        let (end, metrics) = q.end.clone().expect("the loop above waited for it");
        (tokens, last, end, metrics)
    }

    /// Stop the worker (if it still runs) and take back the session. Errors only when the
    /// worker panicked, in which case the session is lost.
    pub fn finish(mut self) -> NnResult<Finished> {
        self.stop();
        let finished = self.finished.take().expect("a worker is finished once");
        finished.recv().map_err(|_| NnError::runtime("the generation failed (a bug; please report it)"))
    }

    fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        // Take the lock so the worker is either before its check or waiting, never between.
        drop(self.shared.lock());
        self.shared.taken.notify_one();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(finished) = self.finished.take() {
            self.stop();
            let _ = finished.recv();
        }
    }
}

/// The worker's loop: step, queue the token, wait while the window is full.
fn produce(shared: &Shared, session: &mut Session, generation: &mut Generation, output: &mut Vec<u8>) {
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let step = generation.step(session, output);
        let mut q = shared.lock();
        match step {
            Ok(None) => {
                let piece = generation.last_piece(output);
                q.bytes.extend(piece);
                q.tokens.push_back(Token { len: piece.len(), metrics: generation.metrics() });
                // Only a guest waiting for a token is woken by one (not one that drains).
                if q.waiting {
                    shared.produced.notify_one();
                }
            }
            Ok(Some(end)) => {
                q.end = Some((Ok(end), generation.metrics()));
                shared.produced.notify_one();
                return;
            }
            Err(e) => {
                q.end = Some((Err(e), generation.metrics()));
                shared.produced.notify_one();
                return;
            }
        }
        // Go on while the window has room; with a window of 0, only for a guest that waits.
        // The step after the last token makes none: it ends the stream (and the thread).
        loop {
            let may_go =
                q.tokens.len() < shared.window || (q.waiting && q.tokens.is_empty()) || generation.at_limit(session);
            if may_go || shared.stop.load(Ordering::Acquire) {
                break;
            }
            q = shared.taken.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }
}
