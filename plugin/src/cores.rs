//! Sharing the CPU cores between contexts that compute at the same time.
//!
//! ggml's worker threads spin while they wait for each other, so two contexts that each run
//! as many threads as there are cores do not share the machine: they fight, and both run
//! many times slower than one alone. Before a CPU computation a context takes as many
//! permits as it runs threads (at most one per core); the rest wait their turn. Contexts
//! whose threads fit together run in parallel.

use std::sync::{Condvar, Mutex};

pub struct Cores {
    free: Mutex<usize>,
    released: Condvar,
    total: usize,
}

/// Held while computing; gives the cores back when dropped.
pub struct Permit<'a> {
    cores: &'a Cores,
    taken: usize,
}

impl Cores {
    pub const fn new(total: usize) -> Self {
        Self { free: Mutex::new(total), released: Condvar::new(), total }
    }

    /// Wait until `threads` cores (at most all of them) are free and take them.
    pub fn acquire(&self, threads: usize) -> Permit<'_> {
        let taken = threads.clamp(1, self.total);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free < taken {
            free = self.released.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= taken;
        Permit { cores: self, taken }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.cores.free.lock().unwrap_or_else(|p| p.into_inner()) += self.taken;
        self.cores.released.notify_all();
    }
}

/// The cores this process may run on (affinity and cgroup quotas included).
pub fn available() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// The process's cores, shared by every backend.
pub fn cpu() -> &'static Cores {
    static CPU: once_cell::sync::Lazy<Cores> = once_cell::sync::Lazy::new(|| Cores::new(available() as usize));
    &CPU
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn never_more_threads_than_cores_at_once() {
        let cores = Arc::new(Cores::new(4));
        let busy = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (1..=6)
            .map(|i| {
                let (cores, busy, peak) = (cores.clone(), busy.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let threads = 1 + i % 3;
                        let _p = cores.acquire(threads);
                        let now = busy.fetch_add(threads, Ordering::SeqCst) + threads;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        busy.fetch_sub(threads, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= 4, "{peak} threads ran at once on 4 cores");
        assert!(peak >= 2, "work that fits together should overlap");
        // More threads than cores still runs (alone).
        drop(cores.acquire(64));
    }
}
