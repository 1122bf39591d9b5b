//! The Whisper backend: speech to text through whisper.cpp (whisper-rs), which lives in a
//! runtime library of its own (see [`runtime`]) so that its ggml and llama.cpp's can share
//! the process. The model is loaded once per graph; each execution context transcribes with
//! its own whisper state, and streams segments as they are produced.

mod audio;
mod context;
pub mod model_file;
pub mod options;
mod runtime;
mod stream;

use crate::abi::ExecutionTarget;
use crate::backend::config::load_options;
use crate::backend::{Backend, ExecutionContext, Graph};
use crate::error::{NnError, NnResult};
use context::WhisperContext;
use options::Options;
use runtime::Model;
use std::path::Path;
use std::sync::Arc;

pub use runtime::{file_name as runtime_file_name, LIB_ENV as RUNTIME_ENV};

/// The first bytes of a whisper.cpp model file ("ggml" as a little-endian u32).
pub const MAGIC: &[u8; 4] = b"lmgg";

pub struct WhisperBackend;

pub struct WhisperGraph {
    model: Arc<Model>,
    /// The load-time config: every context, and every metadata input, starts from it.
    options: Options,
}

/// Refuse a broken model file before whisper.cpp sees it (see [`model_file`]).
fn checked<T>(what: &str, walked: Result<(), String>, load: impl FnOnce() -> NnResult<T>) -> NnResult<T> {
    walked.map_err(|why| NnError::invalid_argument(format!("{what} is not a whole whisper.cpp model: {why}")))?;
    load()
}

fn check_file(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    model_file::check(std::io::BufReader::new(file))
}

fn graph(
    model: NnResult<Model>,
    what: &str,
    options: Options,
    started: std::time::Instant,
) -> NnResult<Box<dyn Graph>> {
    let model = model?;
    let info = model.info();
    log::info!(
        "loaded Whisper model {what} ({}, {} audio / {} text layers) in {} ms",
        if info.multilingual { "multilingual" } else { "English only" },
        info.n_audio_layer,
        info.n_text_layer,
        started.elapsed().as_millis()
    );
    Ok(Box::new(Arc::new(WhisperGraph { model: Arc::new(model), options })))
}

impl Backend for WhisperBackend {
    fn recognizes(&self, model: &[u8]) -> bool {
        model.starts_with(MAGIC)
    }

    /// Builder 0 is the model: a whisper.cpp model file's bytes, or the path of one (which
    /// must be inside the guest's directories). Builder 1, if any, is the config.
    fn load_from_builders(&self, builders: &[&[u8]], _target: ExecutionTarget) -> NnResult<Box<dyn Graph>> {
        let Some(&model) = builders.first() else {
            return Err(NnError::invalid_argument("load needs the model (bytes or a path) as builder 0"));
        };
        if model.is_empty() {
            return Err(NnError::invalid_argument("builder 0 (the model's bytes or path) is empty"));
        }
        let options: Options = load_options(builders.get(1).copied())?;
        let pin = crate::integrity::pin_in_config(builders.get(1).copied())?;
        let started = std::time::Instant::now();
        if model.starts_with(MAGIC) {
            if let Some(pin) = &pin {
                crate::integrity::verify_bytes(model, pin)?;
            }
            let what = format!("the model of {} bytes", model.len());
            let loaded = checked(&what, model_file::check(std::io::Cursor::new(model)), || {
                Model::load_buffer(model, options.use_gpu)
            });
            return graph(loaded, &what, options, started);
        }
        let path =
            std::str::from_utf8(model).ok().filter(|p| p.len() < 4096 && !p.contains('\0')).ok_or_else(|| {
                NnError::invalid_argument(
                    "builder 0 is neither a whisper.cpp model (it does not start with the ggml magic) nor a file path",
                )
            })?;
        let host = crate::confine::host_path(path, "model")?;
        if let Some(pin) = &pin {
            crate::integrity::verify_file(&host, pin)?;
        }
        let loaded = checked(&format!("'{path}'"), check_file(&host), || Model::load_file(&host, options.use_gpu));
        graph(loaded, &format!("'{path}'"), options, started)
    }

    fn load_from_file(&self, path: &Path, config: Option<&[u8]>, _target: ExecutionTarget) -> NnResult<Box<dyn Graph>> {
        let options: Options = load_options(config)?;
        let started = std::time::Instant::now();
        let what = format!("'{}'", path.display());
        let loaded = checked(&what, check_file(path), || Model::load_file(path, options.use_gpu));
        graph(loaded, &what, options, started)
    }
}

impl Graph for Arc<WhisperGraph> {
    fn init_execution_context(&self) -> NnResult<Box<dyn ExecutionContext>> {
        Ok(Box::new(WhisperContext::new(self.clone())))
    }

    /// The same weights with another config (whisper.cpp's settings are all per
    /// transcription, except `use-gpu`, which stays the loaded model's).
    fn with_config(&self, config: &[u8]) -> NnResult<Box<dyn Graph>> {
        let options: Options = load_options(Some(config))?;
        if options.use_gpu != self.options.use_gpu {
            log::warn!(
                "use-gpu is a load-time setting: this graph keeps the loaded model's ({})",
                self.options.use_gpu
            );
        }
        Ok(Box::new(Arc::new(WhisperGraph { model: self.model.clone(), options })))
    }
}
