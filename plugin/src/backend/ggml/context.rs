//! A GGML execution context: its own options, prompt and output, and its sequence in the
//! model's batching engine (engine/), which holds its KV and runs its generations.

use super::engine::{Next, Sequence, Stream};
use super::generation::{End, Metrics, Prompt};
use super::options::Options;
use super::vision::{self, Image};
use super::GgmlGraph;
use crate::abi::{Errno, Tensor};
use crate::backend::ExecutionContext;
use crate::error::{NnError, NnResult};
use llama_cpp_2::token::LlamaToken;
use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;

/// Input index of the metadata JSON.
const METADATA_INDEX: u32 = 1;
/// Input index of images (encoded bytes, or raw RGB8 pixels `[1, H, W, 3]`); every other
/// index is the prompt.
const IMAGE_INDEX: u32 = 2;
/// Output index of the model's description (its chat template, special tokens, sizes).
const MODEL_INFO_INDEX: u32 = 2;
/// Output index of whether `compute_single` is ready: a little-endian u32, 0 while it would
/// wait for work the engine is doing anyway (the prompt evaluated ahead, the next token
/// computed ahead), 1 otherwise. A single-threaded guest serving many streams (the server)
/// steps those that are ready, so one client's long prompt never holds up the others.
const READY_INDEX: u32 = 3;

pub struct GgmlContext {
    graph: Arc<GgmlGraph>,
    /// Shared with the graph until metadata changes them (most contexts never do: an idle
    /// context then costs a pointer here, not a copy).
    options: Arc<Options>,
    prompt: Vec<LlamaToken>,
    /// The prompt as given, for prompts with images (tokenized together with them).
    prompt_text: String,
    /// Images given as tensors, for the next prompt.
    images: Vec<Image>,
    /// A computation has used `images`: the next new input starts a fresh list.
    images_used: bool,
    /// What the last prompt came to in tokens (images included).
    input_tokens: usize,
    /// This context's place in the engine for its options' context shape: taken on first
    /// use, taken anew (in another engine) when those options change.
    sequence: Option<Sequence>,
    /// The current generation, running in the engine.
    stream: Option<Stream>,
    /// How the last generation ended (which answers further `compute_single` calls).
    ended: Option<End>,
    /// Whether the current generation is a `compute_single` stream.
    streaming: bool,
    /// Everything the current generation has handed out; the last token's bytes start at
    /// `piece`.
    output: Vec<u8>,
    piece: usize,
    /// Tokens handed out and what they cost so far, for output 1.
    output_tokens: i64,
    metrics: Metrics,
    /// The message of the last call on this context that failed, for output 1.
    last_error: Option<String>,
}

impl GgmlContext {
    pub fn new(graph: Arc<GgmlGraph>) -> Self {
        let options = graph.options.clone();
        Self {
            graph,
            options,
            prompt: Vec::new(),
            prompt_text: String::new(),
            images: Vec::new(),
            images_used: false,
            input_tokens: 0,
            sequence: None,
            stream: None,
            ended: None,
            streaming: false,
            output: Vec::new(),
            piece: 0,
            output_tokens: 0,
            metrics: Metrics::default(),
            last_error: None,
        }
    }

    /// This context's sequence in the engine for its current options.
    fn sequence(&mut self) -> NnResult<&mut Sequence> {
        let key = super::engine::EngineKey::of(&self.options);
        if self.sequence.as_ref().is_some_and(|s| s.engine().key() != key) {
            self.sequence = None;
        }
        if self.sequence.is_none() {
            self.sequence = Some(self.graph.engine(&self.options)?.sequence());
        }
        Ok(self.sequence.as_mut().expect("made above"))
    }

    /// Start a generation of the current prompt in the engine (the output starts empty).
    fn start(&mut self, window: u32) -> NnResult<()> {
        let prompt = self.prompt()?;
        let n_ctx = self.options.ctx_size as usize;
        if prompt.positions() + 4 > n_ctx {
            return Err(NnError::new(
                Errno::PromptTooLong,
                format!(
                    "the prompt has {} tokens but ctx-size is {n_ctx} (at most ctx-size - 4 fit); \
                     raise ctx-size or shorten the prompt",
                    prompt.positions()
                ),
            ));
        }
        self.reset_output();
        let options = self.options.clone();
        let stream = self.sequence()?.generate(prompt, &options, window);
        self.stream = Some(stream);
        Ok(())
    }

    /// What the next generation starts from: the prompt's tokens or, with images, the prompt
    /// and its images tokenized together by the projector.
    fn prompt(&mut self) -> NnResult<Prompt> {
        if self.prompt.is_empty() {
            return Err(NnError::invalid_argument("no prompt: call set_input with the prompt at index 0 first"));
        }
        let mut images = Vec::new();
        if let Some(file) = &self.options.image {
            let path = crate::confine::host_path(file, "image")?;
            let bytes = std::fs::read(&path)
                .map_err(|e| NnError::invalid_argument(format!("image '{file}' cannot be read: {e}")))?;
            images.push(Image::Encoded(bytes));
        }
        images.extend(self.images.iter().cloned());
        self.images_used = true;
        let Some(media) = vision::media_prompt(&self.prompt_text, images)? else {
            self.input_tokens = self.prompt.len();
            return Ok(Prompt::Tokens(self.prompt.clone()));
        };
        let mmproj = self.options.mmproj.clone().ok_or_else(|| {
            NnError::invalid_argument(
                "the prompt has an image but no projector was given: set \"mmproj\" (the model's mmproj \
                 GGUF) in the load config or the metadata",
            )
        })?;
        let vision = self.graph.vision(&mmproj, self.options.mmproj_sha256.as_deref(), self.options.threads)?;
        let chunks = vision.tokenize(&media)?;
        self.input_tokens = chunks.total_tokens();
        log::debug!("prompt with {} images: {} tokens", media.images.len(), self.input_tokens);
        Ok(Prompt::Media { chunks, vision, media })
    }

    /// Start evaluating a text prompt as soon as it is given: prompts given to several
    /// contexts one after another are then evaluated together, and a generation that starts
    /// later finds the work done (or under way). Nothing here fails the call: what is wrong
    /// with the prompt is reported by the computation.
    fn prefill(&mut self) {
        let text_only = !self.options.embedding && self.options.image.is_none() && self.images.is_empty();
        if !text_only || self.prompt.len() + 4 > self.options.ctx_size as usize {
            return;
        }
        let tokens = self.prompt.clone();
        if let Ok(sequence) = self.sequence() {
            sequence.prefill(tokens);
        }
    }

    /// Output 3 (see [`READY_INDEX`]).
    fn ready(&self) -> bool {
        match &self.stream {
            Some(stream) => !stream.computing(),
            // A stream that ended answers at once; one not started waits for its prompt only
            // while that is evaluated ahead.
            None if self.streaming && self.ended.is_some() => true,
            None => !self.sequence.as_ref().is_some_and(|s| s.prefill_pending()),
        }
    }

    fn reset_output(&mut self) {
        self.output.clear();
        self.piece = 0;
        self.output_tokens = 0;
        self.metrics = Metrics::default();
        self.ended = None;
    }

    /// One step of the current generation: the token's bytes are appended to the output, or
    /// the end is returned (again on every call after it).
    fn step(&mut self) -> NnResult<Option<End>> {
        let start = self.output.len();
        let Some(stream) = &self.stream else {
            return self.ended.map(Some).ok_or_else(|| NnError::runtime("no generation in progress"));
        };
        match stream.next(&mut self.output) {
            Next::Token(metrics) => {
                self.output_tokens += 1;
                self.metrics = metrics;
            }
            Next::End(end, metrics) => {
                self.metrics = metrics;
                self.stream = None;
                let end = end?;
                self.ended = Some(end);
                return Ok(Some(end));
            }
        }
        self.piece = start;
        if self.options.stream_stdout {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&self.output[start..]).and_then(|_| out.flush());
        }
        Ok(None)
    }

    /// End any stream in progress (the engine leaves it within one batch).
    fn end_stream(&mut self) {
        self.stream = None;
        self.streaming = false;
        self.ended = None;
    }

    /// Embedding mode's compute: the prompt's embedding, normalised, as output 0 (computed in
    /// the engine, as generation is).
    fn compute_embedding(&mut self) -> NnResult<()> {
        if self.prompt.is_empty() {
            return Err(NnError::invalid_argument("no prompt: call set_input with the text at index 0 first"));
        }
        self.reset_output();
        let prompt = self.prompt.clone();
        let kind = self.options.embd_normalize;
        let started = std::time::Instant::now();
        let mut embedding = self.sequence()?.embed(prompt)?;
        super::embedding::normalize(&mut embedding, kind);
        self.output = super::embedding::to_json(&embedding);
        self.input_tokens = self.prompt.len();
        self.metrics.prompt_evaluated = self.prompt.len();
        self.metrics.prompt_ms = started.elapsed().as_secs_f64() * 1e3;
        log::info!(
            "embedding of {} tokens: {} numbers in {:.1} ms",
            self.prompt.len(),
            embedding.len(),
            self.metrics.prompt_ms
        );
        Ok(())
    }

    fn end_code(end: End) -> NnResult<()> {
        match end {
            End::EndOfGeneration | End::Limit | End::ReversePrompt => Ok(()),
            End::ContextFull => Err(NnError::new(
                Errno::ContextFull,
                "the context is full: the output so far is readable; raise ctx-size for longer answers",
            )),
        }
    }

    fn model_info_json(&self) -> String {
        super::model_info::json(&self.graph.model, &self.options)
    }

    fn metadata_json(&self) -> String {
        let m = &self.metrics;
        let build = super::build_info::get();
        serde_json::json!({
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "prompt_tokens_evaluated": m.prompt_evaluated,
            "prompt_tokens_reused": m.prompt_reused,
            "prompt_tokens_cached": m.prompt_restored,
            "prompt_ms": (m.prompt_ms * 1e3).round() / 1e3,
            "generation_ms": (m.generation_ms * 1e3).round() / 1e3,
            "tokens_per_second": (m.tokens_per_second * 1e3).round() / 1e3,
            "batch_tokens": m.batch_tokens,
            "last_error": self.last_error,
            "llama_build_number": build.number,
            "llama_commit": build.commit,
            "llama_version": build.version,
            "ggml_version": build.ggml_version,
        })
        .to_string()
    }
}

impl ExecutionContext for GgmlContext {
    fn set_input(&mut self, index: u32, tensor: Tensor<'_>) -> NnResult<()> {
        // New input ends a stream in progress.
        self.end_stream();
        if index == METADATA_INDEX {
            let mut next = Options::clone(&self.options);
            next.apply_json(tensor.data)?;
            if (&next.grammar, &next.json_schema) != (&self.options.grammar, &self.options.json_schema) {
                super::grammar::check(&self.graph.model, &next)?;
            }
            self.graph.warn_load_time_keys(&next);
            self.options = Arc::new(next);
            self.options.apply_logging();
            return Ok(());
        }
        // Images used by a computation belong to it; new input starts a new list.
        if std::mem::take(&mut self.images_used) {
            self.images.clear();
        }
        if index == IMAGE_INDEX {
            self.images.push(Image::from_tensor(tensor)?);
            return Ok(());
        }
        let text = tensor.data;
        if text.len() > i32::MAX as usize / 2 {
            return Err(NnError::new(Errno::TooLarge, "the prompt is larger than llama.cpp can tokenize"));
        }
        // Special tokens are added (BOS) and special-token text (<|im_start|>) is parsed, as
        // WasmEdge's plugin does.
        self.prompt = self.graph.model.vocab().tokenize(text, true, true);
        self.prompt_text = String::from_utf8_lossy(text).into_owned();
        self.input_tokens = self.prompt.len();
        log::debug!("prompt: {} bytes, {} tokens", text.len(), self.prompt.len());
        self.prefill();
        Ok(())
    }

    fn compute(&mut self) -> NnResult<()> {
        self.end_stream();
        if self.options.embedding {
            return self.compute_embedding();
        }
        // The whole answer from a stream that never waits for the guest.
        self.start(u32::MAX)?;
        if self.options.stream_stdout {
            // Each token goes to stdout as it comes.
            loop {
                if let Some(end) = self.step()? {
                    return Self::end_code(end);
                }
            }
        }
        let stream = self.stream.take().expect("started above");
        let (tokens, last, end, metrics) = stream.drain(&mut self.output);
        self.output_tokens += tokens as i64;
        self.piece = self.output.len() - last;
        self.metrics = metrics;
        let end = end?;
        self.ended = Some(end);
        Self::end_code(end)
    }

    fn get_output(&mut self, index: u32) -> NnResult<Cow<'_, [u8]>> {
        Ok(match index {
            METADATA_INDEX => Cow::Owned(self.metadata_json().into_bytes()),
            MODEL_INFO_INDEX => Cow::Owned(self.model_info_json().into_bytes()),
            READY_INDEX => Cow::Owned(u32::from(self.ready()).to_le_bytes().to_vec()),
            _ => Cow::Borrowed(&self.output),
        })
    }

    fn compute_single(&mut self) -> NnResult<()> {
        if self.options.embedding {
            return Err(NnError::invalid_argument(
                "this context is in embedding mode (\"embedding\": true): compute gives the embedding; \
                 there is nothing to stream",
            ));
        }
        if !self.streaming || (self.ended.is_none() && self.stream.is_none()) {
            self.end_stream();
            self.start(self.options.run_ahead)?;
            self.streaming = true;
        }
        match self.step()? {
            None => Ok(()),
            Some(End::ContextFull) => Self::end_code(End::ContextFull),
            Some(end) => Err(NnError::new(Errno::EndOfSequence, format!("end of the stream ({end:?})"))),
        }
    }

    fn get_output_single(&mut self, index: u32) -> NnResult<Cow<'_, [u8]>> {
        Ok(match index {
            METADATA_INDEX => Cow::Owned(self.metadata_json().into_bytes()),
            MODEL_INFO_INDEX => Cow::Owned(self.model_info_json().into_bytes()),
            READY_INDEX => Cow::Owned(u32::from(self.ready()).to_le_bytes().to_vec()),
            _ => Cow::Borrowed(&self.output[self.piece.min(self.output.len())..]),
        })
    }

    fn fini_single(&mut self) -> NnResult<()> {
        self.end_stream();
        self.output.clear();
        self.piece = 0;
        Ok(())
    }

    fn note_error(&mut self, message: &str) {
        self.last_error = Some(message.to_owned());
    }
}
