//! A transcription on a computing thread ([`crate::compute_threads`]), handing over segments as whisper.cpp produces them.
//! `compute` drains one to the end; `compute_single` takes one segment per call. Both read the
//! same stream, so the segments joined are exactly the whole transcript. Dropping a stream
//! cancels the transcription (whisper.cpp checks between ggml computations) and waits for it.

use super::runtime::{Ended, Model};
use crate::error::{NnError, NnResult};
use crate::limits::Slot;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use wasmedge_nn_whisper_abi::Params;

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    cancel: AtomicBool,
}

#[derive(Default)]
struct Queue {
    /// Formatted segments not yet taken.
    segments: VecDeque<Vec<u8>>,
    /// Set once the transcription is over.
    end: Option<NnResult<()>>,
}

pub struct Stream {
    shared: Arc<Shared>,
    /// Answers (or closes) when the transcription's job is over.
    done: Receiver<()>,
}

/// `hh:mm:ss.mmm` from whisper.cpp's centiseconds.
fn timestamp(out: &mut Vec<u8>, t: i64) {
    let ms = t.max(0) * 10;
    let _ = write!(out, "{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
}

/// One output line: `[hh:mm:ss.mmm --> hh:mm:ss.mmm]  text` (whisper's text starts with a
/// space), or just the text with `no-timestamps`.
pub fn format_segment(t0: i64, t1: i64, text: &[u8], no_timestamps: bool) -> Vec<u8> {
    let mut line = Vec::with_capacity(text.len() + 36);
    if !no_timestamps {
        line.push(b'[');
        timestamp(&mut line, t0);
        line.extend_from_slice(b" --> ");
        timestamp(&mut line, t1);
        line.extend_from_slice(b"] ");
    }
    line.extend_from_slice(text);
    line.push(b'\n');
    line
}

impl Stream {
    /// Start transcribing `samples`; `slot` (a streaming worker's place) is held until the
    /// transcription ends.
    pub fn start(model: Arc<Model>, params: Params, samples: Arc<Vec<f32>>, slot: Option<Slot>) -> NnResult<Self> {
        let shared =
            Arc::new(Shared { queue: Mutex::default(), ready: Condvar::new(), cancel: AtomicBool::new(false) });
        let theirs = shared.clone();
        let done = crate::compute_threads::spawn(move || {
            let _slot = slot;
            let _ends = EndsOnDrop(theirs.clone());
            let started = std::time::Instant::now();
            let ended = {
                // whisper.cpp's ggml threads spin like llama.cpp's: share the cores.
                let _cores = crate::cores::cpu().acquire(params.threads.max(1) as usize);
                model.transcribe(&params, &samples, &theirs.cancel, |s| {
                    let line = format_segment(s.t0, s.t1, s.text, params.no_timestamps);
                    let mut q = theirs.queue.lock().unwrap_or_else(|p| p.into_inner());
                    q.segments.push_back(line);
                    theirs.ready.notify_one();
                    true
                })
            };
            log::info!(
                "transcribed {:.1} s of audio in {} ms ({:?})",
                samples.len() as f64 / super::audio::SAMPLE_RATE as f64,
                started.elapsed().as_millis(),
                ended.as_ref().map_err(|e| &e.message)
            );
            let mut q = theirs.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.end = Some(ended.map(|_: Ended| ()));
            theirs.ready.notify_one();
        })?;
        Ok(Self { shared, done })
    }

    /// The next segment's line, `Ok(None)` at the end, or the transcription's error.
    pub fn next(&self) -> NnResult<Option<Vec<u8>>> {
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(line) = q.segments.pop_front() {
                return Ok(Some(line));
            }
            if let Some(end) = &q.end {
                return end.clone().map(|()| None);
            }
            q = self.shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Makes sure a waiting guest hears of the end even when the job panicked.
struct EndsOnDrop(Arc<Shared>);

impl Drop for EndsOnDrop {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.end.is_none() && std::thread::panicking() {
            q.end = Some(Err(NnError::runtime("the transcription failed (a bug; please report it)")));
        }
        self.0.ready.notify_one();
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.cancel.store(true, Ordering::Release);
        // Returns when the job is over (its end of the channel dropped).
        let _ = self.done.recv();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_wasmedges() {
        let line = format_segment(0, 430, b" This is a test.", false);
        assert_eq!(String::from_utf8(line).unwrap(), "[00:00:00.000 --> 00:00:04.300]  This is a test.\n");
        let line = format_segment(366_012, 366_099, b" x", false);
        assert_eq!(String::from_utf8(line).unwrap(), "[01:01:00.120 --> 01:01:00.990]  x\n");
        assert_eq!(format_segment(0, 1, b" plain", true), b" plain\n");
    }
}
