//! The GGML backend itself: models loaded through llama.cpp, shared by their contexts.

use super::backends::{self, Loaded};
use super::context::GgmlContext;
use super::engine::{Engine, EngineKey};
use super::native_log;
use super::options::Options;
use super::rpc;
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
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

pub struct GgmlBackend;

/// llama.cpp's process-wide initialisation, done once: ggml's backends (the CPU variant for
/// this machine, a GPU backend when one is installed) are loaded first. The outcome is kept,
/// a failure too: ggml cannot unregister a backend, so loading them again would register a
/// GPU twice.
pub(super) fn llama_backend() -> NnResult<&'static (LlamaBackend, Loaded)> {
    static BACKEND: OnceCell<Result<(LlamaBackend, Loaded), String>> = OnceCell::new();
    let init = || -> NnResult<(LlamaBackend, Loaded)> {
        native_log::install();
        let loaded = backends::load(None)?;
        let backend =
            LlamaBackend::init().map_err(|e| NnError::runtime(format!("cannot initialise llama.cpp: {e}")))?;
        Ok((backend, loaded))
    };
    BACKEND.get_or_init(|| init().map_err(|e| e.message)).as_ref().map_err(|e| NnError::runtime(e.clone()))
}

pub struct GgmlGraph {
    pub(super) model: Arc<LlamaModel>,
    /// The RPC servers holding some of the model's layers, watched for failures (None: the
    /// model is all on this machine).
    pub(super) rpc: Option<Arc<rpc::Watch>>,
    /// The load-time options: every context starts from these (sharing them).
    pub(super) options: Arc<Options>,
    /// The model's file, for loading it again with other load-time settings (None: loaded
    /// from the guest's bytes).
    path: Option<PathBuf>,
    /// A context was told about load-time keys it cannot change (said once per graph).
    warned_load_time: AtomicBool,
    /// Projectors for this model, by host path, loaded on first use and kept with the graph,
    /// with the sha256 pins each has been checked against.
    visions: Mutex<HashMap<PathBuf, PinnedVision>>,
    /// The batching engines of this graph's contexts, one per context shape, alive while a
    /// context uses them.
    engines: Mutex<HashMap<EngineKey, Weak<Engine>>>,
    /// The model's identity for the prompt cache (its bytes' sha256), worked out when the
    /// cache is first used; `None` inside: it could not be (logged).
    identity: OnceCell<Option<[u8; 32]>>,
}

/// A loaded projector, and the sha256 pins its file has been checked against.
type PinnedVision = (Arc<Vision>, HashSet<String>);

impl GgmlGraph {
    /// The engine for contexts with these options' shape: the running one, or a new one.
    pub(super) fn engine(&self, options: &Options) -> NnResult<Arc<Engine>> {
        let key = EngineKey::of(options);
        let mut engines = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(engine) = engines.get(&key).and_then(Weak::upgrade) {
            return Ok(engine);
        }
        let engine = Engine::start(self.model.clone(), self.rpc.clone(), options, self.prompt_cache(options))?;
        engines.retain(|_, e| e.strong_count() > 0);
        engines.insert(key, Arc::downgrade(&engine));
        Ok(engine)
    }

    /// Where engines of this model with these options keep prompt states across processes,
    /// when the host set a prompt cache. Its namespace is what a state depends on besides its
    /// tokens: the model's bytes, the settings that change what the KV holds (where layers
    /// ran, flash attention, the cache's types) and the build of llama.cpp. (Embeddings keep
    /// nothing in the KV.)
    fn prompt_cache(&self, options: &Options) -> Option<crate::prompt_cache::Namespace> {
        // (A state's layers on other machines are not this host's to save.)
        if options.embedding || self.rpc.is_some() {
            return None;
        }
        let store = crate::prompt_cache::store()?;
        let identity = self.identity.get_or_init(|| {
            let path = self.path.as_deref()?;
            store
                .model_identity(path)
                .map_err(|e| {
                    log::warn!("prompt cache: cannot hash {} ({e}); its prompts are not cached", path.display())
                })
                .ok()
        });
        let identity = crate::prompt_cache::hex(&(*identity)?);
        let flash = match options.flash_attn {
            None => "auto",
            Some(true) => "on",
            Some(false) => "off",
        };
        let what = format!(
            "model sha256 {identity}; n-gpu-layers {}; flash-attn {flash}; kv f16/f16; {}",
            self.options.n_gpu_layers.max(0),
            super::build_info::state_producer()
        );
        Some(crate::prompt_cache::Namespace::new(store, what))
    }

    /// Per-context metadata cannot change how the model was loaded (`n-gpu-layers`,
    /// `main-gpu`, `use-mmap`, `use-mlock`): say so, once per graph (clients such as LlamaEdge
    /// send them with every request), and carry on with the graph's.
    pub(super) fn warn_load_time_keys(&self, asked: &Options) {
        if !asked.same_model(&self.options) && !self.warned_load_time.swap(true, Ordering::Relaxed) {
            log::warn!(
                "n-gpu-layers, main-gpu, use-mmap and use-mlock are load-time settings: contexts keep the \
                 graph's (n-gpu-layers {}); load the model with them (load_by_name_with_config) to change them",
                self.options.n_gpu_layers
            );
        }
    }

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
    /// Load the model at `path`: a file of the host's (`bytes_identity` None), or the
    /// in-memory file of a guest's bytes, whose sha256 the prompt cache then goes by.
    fn load(
        &self,
        path: &Path,
        options: Options,
        bytes_identity: Option<Option<[u8; 32]>>,
    ) -> NnResult<Box<dyn Graph>> {
        let (model, rpc) = Self::load_model(path, &options)?;
        let (file, identity) = match bytes_identity {
            None => (Some(path.to_path_buf()), OnceCell::new()),
            Some(identity) => (None, OnceCell::with_value(identity)),
        };
        let graph = GgmlGraph::new(Arc::new(model), rpc, options, file, identity)?;
        Ok(Box::new(Arc::new(graph)))
    }

    /// The model at `path`, and (when the host named RPC servers) the servers its layers went
    /// to, watched.
    fn load_model(path: &Path, options: &Options) -> NnResult<(LlamaModel, Option<Arc<rpc::Watch>>)> {
        let (backend, loaded) = llama_backend()?;
        let placement = rpc::placement()?;
        if options.n_gpu_layers > 0 && !loaded.has_gpu() && placement.is_none() {
            log::warn!(
                "n-gpu-layers {} asked for, but no GPU backend is installed beside the plugin \
                 (libggml-cuda{}): {} runs on the CPU",
                options.n_gpu_layers,
                backends::SUFFIX,
                path.display()
            );
        }
        let n_gpu_layers = options.n_gpu_layers.clamp(0, u32::MAX as i64) as u32;
        let main_gpu = options.main_gpu.clamp(0, i32::MAX as i64) as i32;
        let (use_mmap, use_mlock) = (options.use_mmap, options.use_mlock);
        let started = std::time::Instant::now();
        // On a computing thread, where the model's computations will run: loading can compute
        // too (ggml's AMX and repacking CPU code converts weights in an OpenMP loop), and an
        // OpenMP team made on the guest's thread would stay beside the computing thread's. Once
        // a process holds more OpenMP threads than cores, OpenMP makes them sleep between
        // computations: measured on a 2-core Xeon with AMX, decode fell from 185 to 30 tokens/s.
        let file = path.to_path_buf();
        let devices = placement.as_ref().map(|p| p.devices.clone());
        let what = path.display().to_string();
        let loaded = crate::compute_threads::spawn(move || {
            let mut params = LlamaModelParams::default()
                .with_n_gpu_layers(n_gpu_layers)
                .with_main_gpu(main_gpu)
                .with_use_mmap(use_mmap)
                .with_use_mlock(use_mlock);
            match devices {
                Some(devices) => {
                    params = params.with_devices(&devices).map_err(|e| e.to_string())?;
                    rpc::log_placement(&what, || LlamaModel::load_from_file(backend, &file, &params))
                }
                None => LlamaModel::load_from_file(backend, &file, &params),
            }
            .map_err(|e| e.to_string())
        })?
        .recv()
        .map_err(|_| NnError::runtime(format!("loading '{}' failed (see the log)", path.display())))?;
        let model = loaded.map_err(|e| {
            NnError::invalid_argument(format!(
                "llama.cpp cannot load '{}' as a GGUF model ({e}); turn on the log for llama.cpp's reason",
                path.display()
            ))
        })?;
        let watch = placement.map(|p| Arc::new(p.watch));
        if let Some(watch) = &watch {
            // (A server lost while the weights went to it leaves them unwritten.)
            watch.check()?;
        }
        log::info!(
            "loaded {} ({} parameters, {} MiB) in {} ms",
            path.display(),
            model.n_params(),
            model.size() >> 20,
            started.elapsed().as_millis()
        );
        Ok((model, watch))
    }
}

/// `bytes` in an anonymous in-memory file (memfd).
fn memory_file(bytes: &[u8]) -> NnResult<std::fs::File> {
    // SAFETY: a NUL-terminated name and valid flags; the descriptor returned is owned below.
    let fd = unsafe { libc::memfd_create(c"wasmedge-nn-model".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(NnError::runtime(format!(
            "cannot make an in-memory file for the model: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes).map_err(|e| NnError::runtime(format!("cannot write the model into memory: {e}")))?;
    Ok(file)
}

impl GgmlGraph {
    fn new(
        model: Arc<LlamaModel>,
        rpc: Option<Arc<rpc::Watch>>,
        options: Options,
        path: Option<PathBuf>,
        identity: OnceCell<Option<[u8; 32]>>,
    ) -> NnResult<Self> {
        // A grammar or schema in the load config is checked now, as a projector named there.
        super::grammar::check(&model, &options)?;
        let graph = GgmlGraph {
            model,
            rpc,
            options: Arc::new(options),
            path,
            warned_load_time: AtomicBool::new(false),
            visions: Mutex::default(),
            engines: Mutex::default(),
            identity,
        };
        if let Some(mmproj) = &graph.options.mmproj {
            graph.vision(mmproj, graph.options.mmproj_sha256.as_deref(), graph.options.threads)?;
        }
        Ok(graph)
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
        // llama.cpp loads from files: the bytes go into an in-memory file (nothing is
        // written to disk or to the guest's directories), opened by its /proc path.
        let file = memory_file(model)?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        // (Hashed only for the prompt cache, which needs to know the model.)
        let identity = crate::prompt_cache::store().map(|_| crate::prompt_cache::Store::bytes_identity(model));
        let graph = self.load(&path, options, Some(identity));
        drop(file); // llama.cpp has mapped or read it
        graph
    }

    fn load_from_file(&self, path: &Path, config: Option<&[u8]>, _target: ExecutionTarget) -> NnResult<Box<dyn Graph>> {
        self.load(path, load_options(config)?, None)
    }
}

impl Graph for Arc<GgmlGraph> {
    fn init_execution_context(&self) -> NnResult<Box<dyn ExecutionContext>> {
        Ok(Box::new(GgmlContext::new(self.clone())))
    }

    fn broken(&self) -> Option<String> {
        self.rpc.as_ref()?.check().err().map(|e| e.message)
    }

    /// The weights are shared unless the load-time settings differ (or the model is broken);
    /// then the model is loaded again from its file with them.
    fn with_config(&self, config: &[u8]) -> NnResult<Box<dyn Graph>> {
        let options: Options = load_options(Some(config))?;
        let (model, rpc) = if options.same_model(&self.options) && self.broken().is_none() {
            (self.model.clone(), self.rpc.clone())
        } else {
            let path = self.path.as_deref().ok_or_else(|| {
                NnError::invalid_argument(
                    "this model was loaded from the guest's bytes: load it again (load) with the new load-time settings",
                )
            })?;
            log::info!(
                "loading {} again for its new load-time settings (n-gpu-layers {}, use-mmap {})",
                path.display(),
                options.n_gpu_layers,
                options.use_mmap
            );
            let (model, rpc) = GgmlBackend::load_model(path, &options)?;
            (Arc::new(model), rpc)
        };
        Ok(Box::new(Arc::new(GgmlGraph::new(model, rpc, options, self.path.clone(), self.identity.clone())?)))
    }
}
