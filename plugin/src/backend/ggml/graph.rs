//! The GGML backend itself: models loaded through llama.cpp, shared by their contexts.

use super::backends::{self, Loaded};
use super::context::GgmlContext;
use super::native_log;
use super::options::Options;
use super::vision::Vision;
use crate::abi::ExecutionTarget;
use crate::backend::config::load_options;
use crate::backend::{Backend, ExecutionContext, Graph};
use crate::error::{NnError, NnResult};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use once_cell::sync::OnceCell;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct GgmlBackend;

/// llama.cpp's process-wide initialisation, done once: ggml's backends (the CPU variant for
/// this machine, a GPU backend when one is installed) are loaded first. The outcome is kept,
/// a failure too: ggml cannot unregister a backend, so loading them again would register a
/// GPU twice.
pub(super) fn llama_backend() -> NnResult<&'static (LlamaBackend, Loaded)> {
    static BACKEND: OnceCell<Result<(LlamaBackend, Loaded), String>> = OnceCell::new();
    let init = || -> NnResult<(LlamaBackend, Loaded)> {
        native_log::install();
        let dir = backends::dir().ok_or_else(|| {
            NnError::runtime(format!(
                "cannot tell which folder this plugin was loaded from, where ggml's backends are; set {}",
                backends::DIR_ENV
            ))
        })?;
        let loaded = backends::load_from(&dir)?;
        let backend =
            LlamaBackend::init().map_err(|e| NnError::runtime(format!("cannot initialise llama.cpp: {e}")))?;
        Ok((backend, loaded))
    };
    BACKEND.get_or_init(|| init().map_err(|e| e.message)).as_ref().map_err(|e| NnError::runtime(e.clone()))
}

pub struct GgmlGraph {
    pub(super) model: Arc<LlamaModel>,
    /// The load-time options: every context starts from these.
    pub(super) options: Options,
    /// Projectors for this model, by host path, loaded on first use and kept with the graph,
    /// with the sha256 pins each has been checked against.
    visions: Mutex<HashMap<PathBuf, PinnedVision>>,
}

/// A loaded projector, and the sha256 pins its file has been checked against.
type PinnedVision = (Arc<Vision>, HashSet<String>);

impl GgmlGraph {
    /// The projector a guest names (confined to its directories), loaded once per graph; with
    /// a pin, its file's sha256 is checked first (once per pin).
    pub(super) fn vision(&self, guest_path: &str, pin: Option<&str>, threads: u32) -> NnResult<Arc<Vision>> {
        let path = crate::confine::host_path(guest_path, "mmproj")?;
        let mut visions = self.visions.lock().unwrap_or_else(|p| p.into_inner());
        // The file is hashed before it is first loaded, and again for each new pin.
        if let Some(pin) = pin {
            if !visions.get(&path).is_some_and(|(_, checked)| checked.contains(pin)) {
                crate::integrity::verify_file(&path, pin)?;
            }
        }
        let (vision, checked) = match visions.entry(path) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let v = Vision::load(e.key(), &self.model, threads)?;
                e.insert((Arc::new(v), HashSet::new()))
            }
        };
        checked.extend(pin.map(str::to_owned));
        Ok(vision.clone())
    }
}

impl GgmlBackend {
    fn load(&self, path: &Path, options: Options) -> NnResult<Box<dyn Graph>> {
        let (backend, loaded) = llama_backend()?;
        if options.n_gpu_layers > 0 && !loaded.has_gpu() {
            log::warn!(
                "n-gpu-layers {} asked for, but no GPU backend is installed beside the plugin \
                 (libggml-cuda{}): {} runs on the CPU",
                options.n_gpu_layers,
                backends::SUFFIX,
                path.display()
            );
        }
        let params = LlamaModelParams::default()
            .with_n_gpu_layers(options.n_gpu_layers.clamp(0, u32::MAX as i64) as u32)
            .with_main_gpu(options.main_gpu.clamp(0, i32::MAX as i64) as i32)
            .with_use_mmap(options.use_mmap)
            .with_use_mlock(options.use_mlock);
        let started = std::time::Instant::now();
        let model = LlamaModel::load_from_file(backend, path, &params).map_err(|e| {
            NnError::invalid_argument(format!(
                "llama.cpp cannot load '{}' as a GGUF model ({e}); turn on the log for llama.cpp's reason",
                path.display()
            ))
        })?;
        log::info!(
            "loaded {} ({} parameters, {} MiB) in {} ms",
            path.display(),
            model.n_params(),
            model.size() >> 20,
            started.elapsed().as_millis()
        );
        let graph = GgmlGraph { model: Arc::new(model), options, visions: Mutex::default() };
        // A projector named at load time is loaded now, so a mismatched one is refused here.
        if let Some(mmproj) = &graph.options.mmproj {
            graph.vision(mmproj, graph.options.mmproj_sha256.as_deref(), graph.options.threads)?;
        }
        Ok(Box::new(Arc::new(graph)))
    }
}

impl Backend for GgmlBackend {
    fn recognizes(&self, model: &[u8]) -> bool {
        model.starts_with(b"GGUF")
    }

    fn load_from_builders(&self, builders: &[&[u8]], _target: ExecutionTarget) -> NnResult<Box<dyn Graph>> {
        let (model, config) = match builders {
            [model] => (*model, None),
            [model, config, ..] => (*model, Some(*config)),
            [] => return Err(NnError::invalid_argument("load needs the model bytes as builder 0")),
        };
        let options: Options = load_options(config)?;
        if let Some(pin) = crate::integrity::pin_in_config(config)? {
            crate::integrity::verify_bytes(model, &pin)?;
        }
        // llama.cpp loads from files: write the bytes to an unnamed-after-use temporary file.
        let mut file = tempfile::Builder::new()
            .prefix("wasmedge-nn-")
            .suffix(".gguf")
            .tempfile()
            .map_err(|e| NnError::runtime(format!("cannot create a temporary file for the model: {e}")))?;
        file.write_all(model)
            .map_err(|e| NnError::runtime(format!("cannot write the model to {}: {e}", file.path().display())))?;
        self.load(file.path(), options)
    }

    fn load_from_file(&self, path: &Path, config: Option<&[u8]>, _target: ExecutionTarget) -> NnResult<Box<dyn Graph>> {
        self.load(path, load_options(config)?)
    }
}

impl Graph for Arc<GgmlGraph> {
    fn init_execution_context(&self) -> NnResult<Box<dyn ExecutionContext>> {
        Ok(Box::new(GgmlContext::new(self.clone())))
    }
}
