//! A Whisper execution context: its options, its audio, and the transcript so far.

use super::options::Options;
use super::stream::Stream;
use super::{audio, WhisperGraph};
use crate::abi::{Errno, Tensor};
use crate::backend::ExecutionContext;
use crate::error::{NnError, NnResult};
use crate::limits;
use std::borrow::Cow;
use std::sync::Arc;

/// Input index of the metadata JSON; every other index is audio. Every output index is the
/// transcript, as in WasmEdge's plugin (so there is no output for `last_error`: Whisper's
/// errors are in the host's log only).
const METADATA_INDEX: u32 = 1;

pub struct WhisperContext {
    graph: Arc<WhisperGraph>,
    options: Options,
    /// 16 kHz mono samples; shared with a running transcription.
    audio: Option<Arc<Vec<f32>>>,
    /// The transcript so far; the last segment's line starts at `piece`.
    output: Vec<u8>,
    piece: usize,
    stream: Streaming,
}

/// Where `compute_single` stands.
enum Streaming {
    Idle,
    Running(Stream),
    /// The stream reached its end: EndOfSequence until new input, `compute` or
    /// `fini_single` (as the GGML backend does).
    Ended,
}

impl WhisperContext {
    pub fn new(graph: Arc<WhisperGraph>) -> Self {
        let options = graph.options.clone();
        Self { graph, options, audio: None, output: Vec::new(), piece: 0, stream: Streaming::Idle }
    }

    fn end_stream(&mut self) {
        self.stream = Streaming::Idle;
    }

    fn start(&mut self, slot: Option<limits::Slot>) -> NnResult<Stream> {
        let audio = self.audio.clone().ok_or_else(|| {
            NnError::invalid_argument("no audio: call set_input with WAV bytes (or raw f32 samples) at index 0 first")
        })?;
        self.output.clear();
        self.piece = 0;
        Stream::start(self.graph.model.clone(), self.options.params.clone(), audio, slot)
    }
}

impl ExecutionContext for WhisperContext {
    fn set_input(&mut self, index: u32, tensor: Tensor<'_>) -> NnResult<()> {
        self.end_stream();
        if index == METADATA_INDEX {
            // As WasmEdge's plugin: each metadata input starts from the graph's config.
            let mut options = self.graph.options.clone();
            options.apply_json(tensor.data)?;
            options.apply_logging();
            self.options = options;
            return Ok(());
        }
        let samples = audio::samples(&tensor)?;
        log::debug!("audio: {} bytes, {:.2} s at 16 kHz", tensor.data.len(), samples.len() as f64 / 16_000.0);
        self.audio = Some(Arc::new(samples));
        Ok(())
    }

    fn compute(&mut self) -> NnResult<()> {
        self.end_stream();
        let stream = self.start(None)?;
        while let Some(line) = stream.next()? {
            self.output.extend_from_slice(&line);
        }
        Ok(())
    }

    fn get_output(&mut self, _index: u32) -> NnResult<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(&self.output))
    }

    fn compute_single(&mut self) -> NnResult<()> {
        let end = || Err(NnError::new(Errno::EndOfSequence, "end of the transcript"));
        let next = match &self.stream {
            Streaming::Ended => return end(),
            Streaming::Running(stream) => stream.next(),
            Streaming::Idle => {
                // Take a worker slot before any work, so Busy costs nothing.
                let slot = limits::worker_slot()?;
                let stream = self.start(Some(slot))?;
                let next = stream.next();
                self.stream = Streaming::Running(stream);
                next
            }
        };
        match next {
            Ok(Some(line)) => {
                self.piece = self.output.len();
                self.output.extend_from_slice(&line);
                Ok(())
            }
            Ok(None) => {
                self.stream = Streaming::Ended;
                self.piece = self.output.len();
                end()
            }
            Err(e) => {
                self.stream = Streaming::Idle;
                Err(e)
            }
        }
    }

    fn get_output_single(&mut self, _index: u32) -> NnResult<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(&self.output[self.piece.min(self.output.len())..]))
    }

    fn fini_single(&mut self) -> NnResult<()> {
        self.end_stream();
        self.output.clear();
        self.piece = 0;
        Ok(())
    }
}
