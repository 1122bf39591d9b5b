//! The threads that run the models' computations, kept from one job to the next.
//!
//! ggml (built with OpenMP) gives every thread that computes a team of helper threads of its
//! own. A thread made for each stream or `compute` therefore makes a new team each time and
//! runs its first computation cold; measured on 2 cores, evaluating a prompt on a fresh thread
//! took 6–10% longer than on a thread that had computed before. And teams that outlive their
//! use count against the cores: once a process holds more OpenMP threads than cores, OpenMP
//! makes them sleep between computations instead of spinning, which costs far more per token.
//!
//! So jobs go to an idle computing thread when there is one (the one idle the shortest time,
//! whose team and caches are warmest), and a new thread is made only when all are busy. A
//! thread idle for [`IDLE_EXIT`] ends, with its team: a burst of parallel contexts does not
//! leave threads behind. One guest computing with one context at a time uses one thread (and
//! one team) for all its computations, llama.cpp's and whisper.cpp's alike.
//!
//! How many jobs run at once is bounded by the callers: streams by the worker slots of
//! [`crate::limits`], blocking computations by the guests' threads that wait for them.

use crate::error::{NnError, NnResult};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

/// How long a thread waits for another job before it hands free memory back ([`trim_heap`]).
pub const TRIM_AFTER: Duration = Duration::from_secs(10);
/// How long a thread waits for another job before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(30);

/// A job runs and returns how to deliver its result, which the thread does once it is idle
/// again: a caller that waits for the result then finds the thread free for its next job.
type Job = Box<dyn FnOnce() -> Deliver + Send + 'static>;
type Deliver = Box<dyn FnOnce() + Send + 'static>;

/// Idle threads, the most recently idle last: each one's id and the sender of its jobs.
static IDLE: Mutex<Vec<(u64, Sender<Job>)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn idle() -> std::sync::MutexGuard<'static, Vec<(u64, Sender<Job>)>> {
    // Nothing panics while holding this lock; recover from poisoning anyway.
    IDLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `job` on a computing thread; its result arrives on the returned receiver once the
/// thread is idle again (what it produces on the way goes however the caller arranges). A
/// job that panics loses only itself: the panic is logged, the receiver sees its sender
/// dropped, and the thread takes the next job.
pub fn spawn<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> NnResult<Receiver<T>> {
    let (result, receiver) = sync_channel(1);
    let mut job: Job = Box::new(move || {
        let value = job();
        Box::new(move || {
            let _ = result.send(value);
        })
    });
    loop {
        let Some((_, jobs)) = idle().pop() else { break };
        match jobs.send(job) {
            Ok(()) => return Ok(receiver),
            // That thread ended meanwhile; try the next.
            Err(returned) => job = returned.0,
        }
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    std::thread::Builder::new()
        .name("wasmedge-nn-compute".into())
        .spawn(move || serve(id, job))
        .map(|_| receiver)
        .map_err(|e| NnError::runtime(format!("cannot start a computing thread: {e}")))
}

/// Hand free heap memory back to the system. glibc keeps what computations free in its
/// arenas (blocks under its mmap threshold, which it raises up to 32 MiB to the largest block
/// freed): that is what lets the next computation reuse KV caches, compute buffers and
/// whisper states without page faults, as a process calling llama.cpp directly does. Trimming
/// after every job made each transcription fault its tens of MB in again (about 2% of its
/// time on this VM); never trimming leaves a long-running host larger than it needs to be
/// once it goes quiet. So a computing thread trims once it has been idle for [`TRIM_AFTER`]
/// (all arenas at once, including the guest threads'), and the registry trims at the explicit
/// release points (`unload`, a guest instance's end), so what they freed is handed back before
/// they return.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory that is free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The bytes the heap has handed out and not had back (glibc's `mallinfo2`: in use in the
/// arenas plus the large blocks mapped apart), for the log at release points: unlike the
/// resident size, it does not depend on how freed memory lies in the arenas, so the same work
/// released leaves the same figure, and a leak shows.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: a plain query of the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(target_env = "gnu"))]
    None
}

/// Say, at debug level, what the heap holds after `point` (a release point, or an engine
/// that has just run out of work): tests compare these figures over long runs.
pub fn log_heap(point: &str) {
    if let Some(bytes) = heap_in_use().filter(|_| log::log_enabled!(log::Level::Debug)) {
        log::debug!("heap after {point}: {bytes} bytes in use");
    }
}

/// A computing thread's life: run its first job, then whatever comes while it is idle.
fn serve(id: u64, first: Job) {
    let (sender, jobs) = channel::<Job>();
    let mut job = first;
    loop {
        let deliver = catch_unwind(AssertUnwindSafe(job));
        if deliver.is_err() {
            log::error!("a computation panicked (a bug; please report it); its context reports the failure");
        }
        idle().push((id, sender.clone()));
        if let Ok(deliver) = deliver {
            deliver();
        }
        match next_job(id, &jobs) {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// Thread `id`'s next job, or `None` when it has been idle for [`IDLE_EXIT`] and ends. Its
/// heap is trimmed once it has been idle for [`TRIM_AFTER`].
fn next_job(id: u64, jobs: &Receiver<Job>) -> Option<Job> {
    match jobs.recv_timeout(TRIM_AFTER) {
        Ok(next) => return Some(next),
        Err(RecvTimeoutError::Disconnected) => return None,
        Err(RecvTimeoutError::Timeout) => trim_heap(),
    }
    match jobs.recv_timeout(IDLE_EXIT - TRIM_AFTER) {
        Ok(next) => return Some(next),
        Err(RecvTimeoutError::Disconnected) => return None,
        Err(RecvTimeoutError::Timeout) => {}
    }
    let mut list = idle();
    if let Some(at) = list.iter().position(|(i, _)| *i == id) {
        list.remove(at);
        return None;
    }
    drop(list);
    // Taken from the list just now: its job is on the way.
    jobs.recv().ok()
}

/// How many computing threads are idle now.
#[cfg(test)]
fn idle_count() -> usize {
    idle().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool is process-wide: these tests take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// Run a job and wait until its thread is idle again; the thread it ran on.
    fn thread_of_job(job: impl FnOnce() + Send + 'static) -> Option<std::thread::ThreadId> {
        let before = idle_count();
        let id = spawn(move || {
            job();
            std::thread::current().id()
        })
        .unwrap()
        .recv()
        .ok();
        // The result comes once the thread is idle; a panicking job's thread follows soon.
        while idle_count() < before.max(1) {
            std::thread::yield_now();
        }
        id
    }

    #[test]
    fn a_job_started_once_the_last_result_is_in_gets_the_same_thread() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let first = spawn(|| std::thread::current().id()).unwrap().recv().unwrap();
        for _ in 0..100 {
            // No waiting for idleness: the result comes after the thread is idle.
            assert_eq!(spawn(|| std::thread::current().id()).unwrap().recv().unwrap(), first);
        }
    }

    #[test]
    fn jobs_one_after_another_share_a_thread_and_survive_panics() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let first = thread_of_job(|| ()).unwrap();
        assert_eq!(thread_of_job(|| ()), Some(first));
        // The job's sender is dropped by the panic: the caller sees the failure.
        assert_eq!(thread_of_job(|| panic!("a job that fails")), None);
        assert_eq!(thread_of_job(|| ()), Some(first), "the thread outlives a panicking job");
    }

    #[test]
    fn jobs_at_once_get_threads_of_their_own() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let gate = std::sync::Arc::new(std::sync::Barrier::new(3));
        // All three wait for each other: they finish only if each has its own thread.
        let results: Vec<_> = (0..3)
            .map(|_| {
                let gate = gate.clone();
                spawn(move || {
                    gate.wait();
                    std::thread::current().id()
                })
                .unwrap()
            })
            .collect();
        let mut ids: Vec<_> = results.iter().map(|r| r.recv().unwrap()).collect();
        ids.sort_by_key(|i| format!("{i:?}"));
        ids.dedup();
        assert_eq!(ids.len(), 3);
    }
}
