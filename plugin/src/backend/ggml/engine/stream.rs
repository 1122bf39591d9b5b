//! The queue between one generation in the engine and the guest that reads it. The engine
//! puts tokens in, at most `window` ahead of the guest (with a window of 0, only when the
//! guest waits for one); the guest takes them one at a time (`compute_single`) or all at the
//! end (`compute`). A stream dropped or stopped by the guest is left by the engine within one
//! batch.

use super::Inbox;
use crate::backend::ggml::generation::{End, Metrics};
use crate::error::NnResult;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

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
    /// Set once the engine has stopped producing: how the generation ended, with its costs.
    end: Option<(NnResult<End>, Metrics)>,
    /// The guest is blocked waiting for a token.
    waiting: bool,
}

/// The engine's side and the guest's side share this.
pub struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a token or the end is queued.
    produced: Condvar,
    stop: AtomicBool,
    window: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding this lock; recover from poisoning anyway.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    // The engine's side.

    /// Whether the guest has stopped or dropped the stream.
    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether the engine may produce the next token now: the window has room, or the guest
    /// waits for one.
    pub(super) fn has_room(&self) -> bool {
        let q = self.lock();
        q.tokens.len() < self.window || (q.waiting && q.tokens.is_empty())
    }

    pub(super) fn push(&self, piece: &[u8], metrics: Metrics) {
        let mut q = self.lock();
        q.bytes.extend(piece);
        q.tokens.push_back(Token { len: piece.len(), metrics });
        // Only a guest waiting for a token is woken by one (not one that drains).
        if q.waiting {
            self.produced.notify_one();
        }
    }

    pub(super) fn finish(&self, end: NnResult<End>, metrics: Metrics) {
        let mut q = self.lock();
        if q.end.is_none() {
            q.end = Some((end, metrics));
        }
        self.produced.notify_one();
    }
}

/// What the guest gets from [`Stream::next`].
pub enum Next {
    /// A token; its bytes were appended to the output.
    Token(Metrics),
    /// The generation is over.
    End(NnResult<End>, Metrics),
}

/// The guest's side of a generation.
pub struct Stream {
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
}

impl Stream {
    pub(super) fn new(window: u32, inbox: Arc<Inbox>) -> (Self, Arc<Shared>) {
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
            stop: AtomicBool::new(false),
            window,
        });
        (Self { shared: shared.clone(), inbox }, shared)
    }

    /// Whether the next token is being computed ahead of the guest (and not there yet):
    /// [`next`](Self::next) would wait for it. (With a window of 0 nothing is computed until
    /// the guest asks.)
    pub fn computing(&self) -> bool {
        let q = self.shared.lock();
        self.shared.window > 0 && q.tokens.is_empty() && q.end.is_none()
    }

    /// Wait for the next token and append its bytes to `output`.
    pub fn next(&self, output: &mut Vec<u8>) -> Next {
        let mut q = self.shared.lock();
        let mut asked = false;
        loop {
            if let Some(token) = q.tokens.pop_front() {
                let was_full = q.tokens.len() + 1 >= self.shared.window;
                output.extend(q.bytes.drain(..token.len));
                q.waiting = false;
                drop(q);
                // The window has room again: the engine may go on with this stream.
                if was_full {
                    self.inbox.poke();
                }
                return Next::Token(token.metrics);
            }
            if let Some((end, metrics)) = &q.end {
                return Next::End(end.clone(), *metrics);
            }
            q.waiting = true;
            if !asked {
                // A stream with a window of 0 (or a full one) goes on for a waiting guest.
                asked = true;
                drop(q);
                self.inbox.poke();
                q = self.shared.lock();
                continue;
            }
            q = self.shared.produced.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Wait for the end of a generation with an unbounded window, then append all its
    /// tokens' bytes to `output`; returns how many tokens there were, the length of the last
    /// one's bytes, and how it ended. For `compute`, which wants the whole answer: the
    /// guest's thread sleeps until the end instead of waking for every token.
    pub fn drain(&self, output: &mut Vec<u8>) -> (usize, usize, NnResult<End>, Metrics) {
        assert_eq!(self.shared.window, u32::MAX as usize, "drain needs a stream that never waits for the guest");
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
}

impl Drop for Stream {
    /// The engine leaves the stream at its next batch; the sequence keeps what was evaluated.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.inbox.poke();
    }
}
