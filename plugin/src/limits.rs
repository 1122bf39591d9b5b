//! Process-wide caps that keep many guests from growing the host without bound: how many
//! execution contexts and graphs may exist at once (beyond these: Busy), how large a context
//! (`ctx-size`) and an input tensor may be (beyond these: TooLarge), how many Whisper
//! transcriptions may stream at once (beyond: Busy), how many sequences one model's engine
//! decodes together (its slots, each a `ctx-size` of KV cache: more streams take turns), and
//! how much KV the engines keep in host memory for idle contexts (past it, their tokens are
//! evaluated again when they are used). The operation fails before allocating anything.
//!
//! Contexts themselves are cheap (options, prompt, output: kilobytes); their KV lives in the
//! engines, bounded by the slots and the swap budget, so the context cap is high.
//!
//! Set by the host (`--nn-max-contexts`, `--nn-max-workers`, `--nn-max-graphs`,
//! `--nn-max-ctx-size`, `--nn-max-input-mib`, `--nn-max-swap-mib`, `--nn-slots` on the
//! `wasmedge` command line, or the `WASMEDGE_NN_MAX_*` variables below for embedders); a guest cannot raise them.

use crate::abi::Errno;
use crate::error::{NnError, NnResult};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub const MAX_CONTEXTS_ENV: &str = "WASMEDGE_NN_MAX_CONTEXTS";
pub const MAX_WORKERS_ENV: &str = "WASMEDGE_NN_MAX_WORKERS";
pub const MAX_GRAPHS_ENV: &str = "WASMEDGE_NN_MAX_GRAPHS";
pub const MAX_CTX_SIZE_ENV: &str = "WASMEDGE_NN_MAX_CTX_SIZE";
pub const MAX_INPUT_MIB_ENV: &str = "WASMEDGE_NN_MAX_INPUT_MIB";
pub const MAX_SWAP_MIB_ENV: &str = "WASMEDGE_NN_MAX_SWAP_MIB";
pub const SLOTS_ENV: &str = "WASMEDGE_NN_SLOTS";
pub const DETERMINISTIC_ENV: &str = "WASMEDGE_NN_DETERMINISTIC";
pub const DEFAULT_MAX_CONTEXTS: usize = 65_536;
pub const DEFAULT_MAX_WORKERS: usize = 16;
pub const DEFAULT_MAX_GRAPHS: usize = 16;
pub const DEFAULT_MAX_CTX_SIZE: usize = 131_072;
pub const DEFAULT_MAX_INPUT_MIB: usize = 512;
pub const DEFAULT_MAX_SWAP_MIB: usize = 256;
/// llama.cpp's server runs 4 sequences by default too; each costs a `ctx-size` of KV cache.
pub const DEFAULT_SLOTS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_contexts: usize,
    pub max_workers: usize,
    pub max_graphs: usize,
    pub max_ctx_size: usize,
    pub max_input_mib: usize,
    pub max_swap_mib: usize,
    pub slots: usize,
    /// Decode every sequence in a `llama_decode` of its own, so a context's output never
    /// depends on what else runs; off: sequences are batched (many times the throughput),
    /// and a greedy answer can differ in the last bits where ggml's CPU kernels treat a
    /// batch's rows together (README: "Batching and determinism").
    pub deterministic: bool,
}

/// Caps given explicitly (on the command line); 0: not given.
#[derive(Clone, Copy, Debug, Default)]
pub struct Given {
    pub contexts: u32,
    pub workers: u32,
    pub graphs: u32,
    pub ctx_size: u32,
    pub input_mib: u32,
    pub swap_mib: u32,
    pub slots: u32,
    /// Non-zero: `--nn-deterministic` was given.
    pub deterministic: u32,
}

static LIMITS: OnceLock<Limits> = OnceLock::new();

impl Limits {
    /// The caps from explicit values (0: not given), then the environment, then the defaults.
    pub fn resolve(given: Given) -> Self {
        let pick = |given: u32, var: &str, default: usize| {
            if given > 0 {
                return given as usize;
            }
            match std::env::var(var).map(|v| v.trim().parse::<usize>()) {
                Ok(Ok(n)) if n > 0 => n,
                Ok(_) => {
                    log::error!("{var} must be a positive integer; using {default}");
                    default
                }
                Err(_) => default,
            }
        };
        Self {
            max_contexts: pick(given.contexts, MAX_CONTEXTS_ENV, DEFAULT_MAX_CONTEXTS),
            max_workers: pick(given.workers, MAX_WORKERS_ENV, DEFAULT_MAX_WORKERS),
            max_graphs: pick(given.graphs, MAX_GRAPHS_ENV, DEFAULT_MAX_GRAPHS),
            max_ctx_size: pick(given.ctx_size, MAX_CTX_SIZE_ENV, DEFAULT_MAX_CTX_SIZE),
            max_input_mib: pick(given.input_mib, MAX_INPUT_MIB_ENV, DEFAULT_MAX_INPUT_MIB),
            max_swap_mib: pick(given.swap_mib, MAX_SWAP_MIB_ENV, DEFAULT_MAX_SWAP_MIB),
            slots: pick(given.slots, SLOTS_ENV, DEFAULT_SLOTS).min(256),
            deterministic: given.deterministic > 0
                || std::env::var(DETERMINISTIC_ENV).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "off")),
        }
    }
}

/// Fix the caps; the first call wins.
pub fn set(limits: Limits) {
    if LIMITS.set(limits).is_ok() {
        log::debug!("limits: {limits:?}");
    }
}

pub fn get() -> Limits {
    *LIMITS.get_or_init(|| Limits::resolve(Given::default()))
}

/// A taken slot of a counted resource; dropping it gives the slot back.
pub struct Slot(&'static AtomicUsize);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

static WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Take one of the `max_workers` slots for a stream with a thread of its own (a Whisper
/// transcription streamed by segments), or fail with Busy. (GGML streams take turns in their
/// model's engine instead.)
pub fn worker_slot() -> NnResult<Slot> {
    let max = get().max_workers;
    WORKERS
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
        .map(|_| Slot(&WORKERS))
        .map_err(|_| {
            NnError::new(
                Errno::Busy,
                format!(
                    "{max} transcriptions are already streaming (the limit); end one with fini_single \
                     (or let it finish), use compute, or raise --nn-max-workers ({MAX_WORKERS_ENV})"
                ),
            )
        })
}

/// Busy when `open` contexts already fill the cap.
pub fn check_contexts(open: usize) -> NnResult<()> {
    let max = get().max_contexts;
    if open >= max {
        return Err(NnError::new(
            Errno::Busy,
            format!(
                "{open} execution contexts are open (the limit is {max}); finalize some first, \
                 or raise --nn-max-contexts ({MAX_CONTEXTS_ENV})"
            ),
        ));
    }
    Ok(())
}

/// Busy when `loaded` graphs (models loaded with `load`) already fill the cap.
pub fn check_graphs(loaded: usize) -> NnResult<()> {
    let max = get().max_graphs;
    if loaded >= max {
        return Err(NnError::new(
            Errno::Busy,
            format!(
                "{loaded} graphs are loaded (the limit is {max}); unload one first, or raise \
                 --nn-max-graphs ({MAX_GRAPHS_ENV})"
            ),
        ));
    }
    Ok(())
}

/// TooLarge when a guest asks for a context larger than the cap.
pub fn check_ctx_size(ctx_size: u64) -> NnResult<()> {
    let max = get().max_ctx_size as u64;
    if ctx_size > max {
        return Err(NnError::new(
            Errno::TooLarge,
            format!("ctx-size {ctx_size} is above this host's limit of {max}; ask for less, or raise --nn-max-ctx-size ({MAX_CTX_SIZE_ENV})"),
        ));
    }
    Ok(())
}

/// TooLarge when an input tensor is larger than the cap (checked before it is copied).
pub fn check_input(bytes: u64) -> NnResult<()> {
    let max = get().max_input_mib as u64;
    if bytes > max << 20 {
        return Err(NnError::new(
            Errno::TooLarge,
            format!("the input is {bytes} bytes, above this host's limit of {max} MiB; raise --nn-max-input-mib ({MAX_INPUT_MIB_ENV})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_values_win() {
        let given = Given {
            contexts: 3,
            workers: 5,
            graphs: 2,
            ctx_size: 512,
            input_mib: 1,
            swap_mib: 7,
            slots: 8,
            deterministic: 1,
        };
        assert_eq!(
            Limits::resolve(given),
            Limits {
                max_contexts: 3,
                max_workers: 5,
                max_graphs: 2,
                max_ctx_size: 512,
                max_input_mib: 1,
                max_swap_mib: 7,
                slots: 8,
                deterministic: true
            }
        );
    }
}
