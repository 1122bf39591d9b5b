//! The interface every backend implements. A backend turns model bytes or a model file into a
//! [`Graph`]; a graph makes [`ExecutionContext`]s, each with its own inference state. Backends
//! know nothing about WasmEdge or guest memory: they see copied-out tensors and return bytes.

pub mod config;
pub mod ggml;
pub mod whisper;

use crate::abi::{ExecutionTarget, GraphEncoding, Tensor};
use crate::error::NnResult;
use std::borrow::Cow;
use std::path::Path;

/// The backends built into this plugin, by the encoding each serves, in the order `AUTO`
/// asks them whether they recognise a model.
pub fn builtin() -> &'static [(GraphEncoding, &'static dyn Backend)] {
    &[
        #[cfg(feature = "ggml")]
        (GraphEncoding::Ggml, &ggml::GgmlBackend),
        (GraphEncoding::Whisper, &whisper::WhisperBackend),
    ]
}

pub trait Backend: Send + Sync {
    /// Whether `model` (the start of a model's bytes) is in this backend's format, for the
    /// `AUTO` encoding.
    fn recognizes(&self, model: &[u8]) -> bool;

    /// `load` with the guest's builder buffers (model bytes first, then backend-specific ones).
    fn load_from_builders(&self, builders: &[&[u8]], target: ExecutionTarget) -> NnResult<Box<dyn Graph>>;

    /// A model preloaded from the host's command line, with the optional config JSON of
    /// `load_by_name_with_config`.
    fn load_from_file(&self, path: &Path, config: Option<&[u8]>, target: ExecutionTarget) -> NnResult<Box<dyn Graph>>;
}

pub trait Graph: Send + Sync {
    fn init_execution_context(&self) -> NnResult<Box<dyn ExecutionContext>>;

    /// The same model as if loaded with `config` instead of this graph's config (for a name
    /// asked for again with another config), sharing what it can with this graph.
    fn with_config(&self, _config: &[u8]) -> NnResult<Box<dyn Graph>> {
        Err(crate::error::NnError::new(
            crate::abi::Errno::UnsupportedOperation,
            "this backend cannot load a model again with another config",
        ))
    }

    /// Why this graph can no longer compute (a machine holding part of its model was lost),
    /// or None. A name whose graph is broken is loaded again when next asked for.
    fn broken(&self) -> Option<String> {
        None
    }
}

pub trait ExecutionContext: Send {
    fn set_input(&mut self, index: u32, tensor: Tensor<'_>) -> NnResult<()>;
    /// Run to the end and keep the whole result for `get_output`.
    fn compute(&mut self) -> NnResult<()>;
    fn get_output(&mut self, index: u32) -> NnResult<Cow<'_, [u8]>>;
    /// Advance the stream by one step; `get_output_single` then returns that step's bytes.
    fn compute_single(&mut self) -> NnResult<()>;
    fn get_output_single(&mut self, index: u32) -> NnResult<Cow<'_, [u8]>>;
    /// End the stream and make the context ready for a new one.
    fn fini_single(&mut self) -> NnResult<()>;
    /// A call on this context failed with `message`: a backend whose output 1 is metadata
    /// shows the last one there (`last_error`), for guests that do not see the host's log.
    fn note_error(&mut self, _message: &str) {}
}
