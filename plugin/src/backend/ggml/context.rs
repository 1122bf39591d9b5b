//! A GGML execution context: its own options, prompt, output and llama.cpp session.

use super::options::Options;
use super::session::{End, Generation, Metrics, Prompt, Session};
use super::vision::{self, Image};
use super::worker::{Next, Worker};
use super::GgmlGraph;
use crate::abi::{Errno, Tensor};
use crate::backend::ExecutionContext;
use crate::error::{NnError, NnResult};
use crate::limits;
use llama_cpp_2::token::LlamaToken;
use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;

/// Input index of the metadata JSON.
const METADATA_INDEX: u32 = 1;
/// Input index of images (encoded bytes, or raw RGB8 pixels `[1, H, W, 3]`); every other
/// index is the prompt.
const IMAGE_INDEX: u32 = 2;

pub struct GgmlContext {
    graph: Arc<GgmlGraph>,
    options: Options,
    prompt: Vec<LlamaToken>,
    /// The prompt as given, for prompts with images (tokenized together with them).
    prompt_text: String,
    /// Images given as tensors, for the next prompt.
    images: Vec<Image>,
    /// A computation has used `images`: the next new input starts a fresh list.
    images_used: bool,
    /// What the last prompt came to in tokens (images included).
    input_tokens: usize,
    /// Made on first use, remade when the options it depends on change. Away (inside the
    /// worker) while a worker streams.
    session: Option<Session>,
    /// The finished generation a worker handed back (which answers further `compute_single`
    /// calls with its end).
    generation: Option<Generation>,
    /// The current generation, running on a computing thread.
    worker: Option<Worker>,
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
            session: None,
            generation: None,
            worker: None,
            streaming: false,
            output: Vec::new(),
            piece: 0,
            output_tokens: 0,
            metrics: Metrics::default(),
            last_error: None,
        }
    }

    fn session(&mut self) -> NnResult<&mut Session> {
        if self.session.as_ref().is_some_and(|s| !s.options().same_context(&self.options)) {
            self.session = None;
        }
        if self.session.is_none() {
            let s = Session::new(&super::llama_backend()?.0, self.graph.model.clone(), &self.options)?;
            log::debug!("new llama.cpp context: ctx-size {}, threads {}", s.n_ctx(), self.options.threads);
            self.session = Some(s);
        }
        let session = self.session.as_mut().expect("session was just made");
        session.set_options(&self.options);
        Ok(session)
    }

    /// Start a generation of the current prompt on a worker (the output starts empty).
    fn start_worker(&mut self, window: u32, slot: Option<limits::Slot>) -> NnResult<()> {
        let prompt = self.prompt()?;
        self.reset_output();
        self.session()?;
        let session = self.session.take().expect("made by session()");
        self.worker = Some(Worker::spawn(session, prompt, window, slot)?);
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
        Ok(Prompt::Media { chunks, vision })
    }

    fn reset_output(&mut self) {
        self.output.clear();
        self.piece = 0;
        self.output_tokens = 0;
        self.metrics = Metrics::default();
        self.generation = None;
    }

    /// One step of the current generation, from the worker (or the finished one): the token's
    /// bytes are appended to the output, or the end is returned.
    fn step(&mut self) -> NnResult<Option<End>> {
        let start = self.output.len();
        let end = if let Some(worker) = &self.worker {
            match worker.next(&mut self.output) {
                Next::Token(metrics) => {
                    self.output_tokens += 1;
                    self.metrics = metrics;
                    None
                }
                Next::End(end, metrics) => {
                    self.metrics = metrics;
                    // The worker has stopped: take the session back for the next prompt.
                    self.stop_worker(true);
                    Some(end?)
                }
            }
        } else {
            let (Some(generation), Some(session)) = (self.generation.as_mut(), self.session.as_mut()) else {
                return Err(NnError::runtime("no generation in progress"));
            };
            let end = generation.step(session, &mut self.output)?;
            self.output_tokens = generation.generated();
            self.metrics = generation.metrics();
            end
        };
        if end.is_none() {
            self.piece = start;
            if self.options.stream_stdout {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&self.output[start..]).and_then(|_| out.flush());
            }
        }
        Ok(end)
    }

    /// Stop a running worker and take its session back (and its generation, when `keep`).
    /// A worker that panicked loses the session; a new one is made on next use.
    fn stop_worker(&mut self, keep: bool) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        match worker.finish() {
            Ok(finished) => {
                self.session = Some(finished.session);
                self.generation = finished.generation.filter(|_| keep);
            }
            Err(e) => log::error!("{}", e.message),
        }
    }

    /// End any stream in progress (a stopped worker within one token's time).
    fn end_stream(&mut self) {
        self.stop_worker(false);
        self.streaming = false;
        self.generation = None;
    }

    /// Embedding mode's compute: the prompt's embedding, normalised, as output 0 (on a
    /// computing thread, as generation is).
    fn compute_embedding(&mut self) -> NnResult<()> {
        if self.prompt.is_empty() {
            return Err(NnError::invalid_argument("no prompt: call set_input with the text at index 0 first"));
        }
        self.reset_output();
        self.session()?;
        let mut session = self.session.take().expect("made by session()");
        let prompt = self.prompt.clone();
        let kind = self.options.embd_normalize;
        let started = std::time::Instant::now();
        let done = crate::compute_threads::spawn(move || {
            let embedding = session.embed(&prompt).map(|mut v| {
                super::embedding::normalize(&mut v, kind);
                v
            });
            (session, embedding)
        })?;
        let (session, embedding) =
            done.recv().map_err(|_| NnError::runtime("the embedding computation failed (see the log)"))?;
        self.session = Some(session);
        let embedding = embedding?;
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

    fn metadata_json(&self) -> String {
        let m = &self.metrics;
        let build = super::build_info::get();
        serde_json::json!({
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "prompt_tokens_evaluated": m.prompt_evaluated,
            "prompt_tokens_reused": m.prompt_reused,
            "prompt_ms": (m.prompt_ms * 1e3).round() / 1e3,
            "generation_ms": (m.generation_ms * 1e3).round() / 1e3,
            "tokens_per_second": (m.tokens_per_second * 1e3).round() / 1e3,
            "last_error": self.last_error,
            "llama_build_number": build.number,
            "llama_commit": build.commit,
        })
        .to_string()
    }
}

impl ExecutionContext for GgmlContext {
    fn set_input(&mut self, index: u32, tensor: Tensor<'_>) -> NnResult<()> {
        // New input ends a stream in progress.
        self.end_stream();
        if index == METADATA_INDEX {
            let mut next = self.options.clone();
            next.apply_json(tensor.data)?;
            if (&next.grammar, &next.json_schema) != (&self.options.grammar, &self.options.json_schema) {
                super::grammar::check(&self.graph.model, &next)?;
            }
            self.graph.warn_load_time_keys(&next);
            self.options = next;
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
        Ok(())
    }

    fn compute(&mut self) -> NnResult<()> {
        self.end_stream();
        if self.options.embedding {
            return self.compute_embedding();
        }
        // The whole answer from a worker that never waits for the guest (see `worker` on why
        // generation does not run on the guest's thread).
        self.start_worker(u32::MAX, None)?;
        if self.options.stream_stdout {
            // Each token goes to stdout as it comes.
            loop {
                if let Some(end) = self.step()? {
                    return Self::end_code(end);
                }
            }
        }
        let worker = self.worker.as_ref().expect("started above");
        let (tokens, last, end, metrics) = worker.drain(&mut self.output);
        self.output_tokens += tokens as i64;
        self.piece = self.output.len() - last;
        self.metrics = metrics;
        // The worker has stopped: take the session back for the next prompt.
        self.stop_worker(true);
        Self::end_code(end?)
    }

    fn get_output(&mut self, index: u32) -> NnResult<Cow<'_, [u8]>> {
        Ok(match index {
            METADATA_INDEX => Cow::Owned(self.metadata_json().into_bytes()),
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
        if !self.streaming || (self.generation.is_none() && self.worker.is_none()) {
            self.end_stream();
            // Take a worker slot before any work, so Busy costs nothing.
            let slot = limits::worker_slot()?;
            self.start_worker(self.options.run_ahead, Some(slot))?;
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
