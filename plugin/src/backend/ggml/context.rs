//! A GGML execution context: its own options, prompt, output and llama.cpp session.

use super::options::Options;
use super::session::{End, Generation, Session};
use super::GgmlGraph;
use crate::abi::{Errno, Tensor};
use crate::backend::ExecutionContext;
use crate::error::{NnError, NnResult};
use llama_cpp_2::token::LlamaToken;
use std::borrow::Cow;
use std::sync::Arc;

/// Input index of the metadata JSON; every other index is the prompt.
const METADATA_INDEX: u32 = 1;

pub struct GgmlContext {
    graph: Arc<GgmlGraph>,
    options: Options,
    prompt: Vec<LlamaToken>,
    /// Made on first use, remade when the options it depends on change.
    session: Option<Session>,
    output: Vec<u8>,
    generation: Option<Generation>,
    /// Whether `generation` belongs to a `compute_single` stream.
    streaming: bool,
}

impl GgmlContext {
    pub fn new(graph: Arc<GgmlGraph>) -> Self {
        let options = graph.options.clone();
        Self { graph, options, prompt: Vec::new(), session: None, output: Vec::new(), generation: None, streaming: false }
    }

    fn session(&mut self) -> NnResult<&mut Session> {
        if self.session.as_ref().is_some_and(|s| !s.options().same_context(&self.options)) {
            self.session = None;
        }
        if self.session.is_none() {
            let s = Session::new(super::llama_backend()?, self.graph.model.clone(), &self.options)?;
            log::debug!("new llama.cpp context: ctx-size {}, threads {}", s.n_ctx(), self.options.threads);
            self.session = Some(s);
        }
        let session = self.session.as_mut().expect("session was just made");
        session.set_options(&self.options);
        Ok(session)
    }

    /// Evaluate the prompt and make a fresh generation (the output starts empty).
    fn start(&mut self) -> NnResult<()> {
        if self.prompt.is_empty() {
            return Err(NnError::invalid_argument("no prompt: call set_input with the prompt at index 0 first"));
        }
        self.output.clear();
        self.generation = None;
        let prompt = std::mem::take(&mut self.prompt);
        let started = self.session().and_then(|s| Generation::start(s, &prompt));
        self.prompt = prompt;
        self.generation = Some(started?);
        Ok(())
    }

    /// One step of the current generation.
    fn step(&mut self) -> NnResult<Option<End>> {
        let (Some(generation), Some(session)) = (self.generation.as_mut(), self.session.as_mut()) else {
            return Err(NnError::runtime("no generation in progress"));
        };
        generation.step(session, &mut self.output)
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
        let output_tokens = self.generation.as_ref().map_or(0, Generation::generated);
        let m = self.generation.as_ref().map(Generation::metrics).unwrap_or_default();
        serde_json::json!({
            "input_tokens": self.prompt.len(),
            "output_tokens": output_tokens,
            "prompt_tokens_evaluated": m.prompt_evaluated,
            "prompt_tokens_reused": m.prompt_reused,
            "prompt_ms": (m.prompt_ms * 1e3).round() / 1e3,
            "generation_ms": (m.generation_ms * 1e3).round() / 1e3,
            "tokens_per_second": (m.tokens_per_second * 1e3).round() / 1e3,
        })
        .to_string()
    }
}

impl ExecutionContext for GgmlContext {
    fn set_input(&mut self, index: u32, tensor: Tensor) -> NnResult<()> {
        if index == METADATA_INDEX {
            self.options.apply_json(&tensor.data)?;
            self.options.apply_logging();
            return Ok(());
        }
        let text = &tensor.data;
        if text.len() > i32::MAX as usize / 2 {
            return Err(NnError::new(Errno::TooLarge, "the prompt is larger than llama.cpp can tokenize"));
        }
        // Special tokens are added (BOS) and special-token text (<|im_start|>) is parsed, as
        // WasmEdge's plugin does.
        self.prompt = self.graph.model.vocab().tokenize(text, true, true);
        self.generation = None;
        self.streaming = false;
        log::debug!("prompt: {} bytes, {} tokens", text.len(), self.prompt.len());
        Ok(())
    }

    fn compute(&mut self) -> NnResult<()> {
        self.streaming = false;
        self.start()?;
        loop {
            if let Some(end) = self.step()? {
                return Self::end_code(end);
            }
        }
    }

    fn get_output(&mut self, index: u32) -> NnResult<Cow<'_, [u8]>> {
        Ok(match index {
            METADATA_INDEX => Cow::Owned(self.metadata_json().into_bytes()),
            _ => Cow::Borrowed(&self.output),
        })
    }

    fn compute_single(&mut self) -> NnResult<()> {
        if !self.streaming || self.generation.is_none() {
            self.streaming = true;
            self.start()?;
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
            _ => Cow::Borrowed(self.generation.as_ref().map_or(&[][..], |g| g.last_piece(&self.output))),
        })
    }

    fn fini_single(&mut self) -> NnResult<()> {
        self.streaming = false;
        self.generation = None;
        self.output.clear();
        Ok(())
    }
}
