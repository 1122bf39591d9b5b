//! Process-wide caps that keep many guests from growing the host without bound: how many
//! execution contexts may exist at once, and how many streaming workers may run at once.
//! Beyond a cap the operation fails with Busy instead of allocating.
//!
//! Set by the host (`--nn-max-contexts` / `--nn-max-workers` on the `wasmedge` command line,
//! or `WASMEDGE_NN_MAX_CONTEXTS` / `WASMEDGE_NN_MAX_WORKERS` for embedders); a guest cannot
//! raise them.

use crate::abi::Errno;
use crate::error::{NnError, NnResult};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub const MAX_CONTEXTS_ENV: &str = "WASMEDGE_NN_MAX_CONTEXTS";
pub const MAX_WORKERS_ENV: &str = "WASMEDGE_NN_MAX_WORKERS";
pub const DEFAULT_MAX_CONTEXTS: usize = 64;
pub const DEFAULT_MAX_WORKERS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_contexts: usize,
    pub max_workers: usize,
}

static LIMITS: OnceLock<Limits> = OnceLock::new();

impl Limits {
    /// The caps from explicit values (0: not given), then the environment, then the defaults.
    pub fn resolve(max_contexts: u32, max_workers: u32) -> Self {
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
            max_contexts: pick(max_contexts, MAX_CONTEXTS_ENV, DEFAULT_MAX_CONTEXTS),
            max_workers: pick(max_workers, MAX_WORKERS_ENV, DEFAULT_MAX_WORKERS),
        }
    }
}

/// Fix the caps; the first call wins.
pub fn set(limits: Limits) {
    if LIMITS.set(limits).is_ok() {
        log::debug!("limits: {} execution contexts, {} streaming workers", limits.max_contexts, limits.max_workers);
    }
}

pub fn get() -> Limits {
    *LIMITS.get_or_init(|| Limits::resolve(0, 0))
}

/// A taken slot of a counted resource; dropping it gives the slot back.
pub struct Slot(&'static AtomicUsize);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

static WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Take one of the `max_workers` streaming-worker slots, or fail with Busy.
pub fn worker_slot() -> NnResult<Slot> {
    let max = get().max_workers;
    WORKERS
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
        .map(|_| Slot(&WORKERS))
        .map_err(|_| {
            NnError::new(
                Errno::Busy,
                format!(
                    "{max} streams are already generating (the limit); end one with fini_single \
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_values_win() {
        assert_eq!(Limits::resolve(3, 5), Limits { max_contexts: 3, max_workers: 5 });
    }
}
