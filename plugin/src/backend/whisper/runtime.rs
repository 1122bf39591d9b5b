//! The Whisper runtime library (`libwasmedge_nn_whisper-<cpu>.so.N`, N the ABI version):
//! found, opened with `dlopen(RTLD_NOW | RTLD_LOCAL)` so its ggml never meets llama.cpp's, and
//! given a safe face. This is the only code that calls across that boundary.
//!
//! whisper.cpp links its ggml statically, so it cannot load ggml's CPU variants at run time as
//! llama.cpp does: the runtime is built once per CPU level instead ([`cpu_levels`]), and the
//! best one this CPU runs is opened. Where it is looked for: the file `WASMEDGE_NN_WHISPER_LIB`
//! names, else the plugin's companion folder (`wasmedge-nn/` beside it). No name ends in `.so`,
//! so WasmEdge, which loads every `*.so` in its plugin folders, leaves them alone.

use crate::abi::Errno;
use crate::error::{NnError, NnResult};
use once_cell::sync::OnceCell;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::AtomicBool;
use wasmedge_nn_whisper_abi::{self as abi, Api, Message, ModelInfo, Params, Status};

pub const LIB_ENV: &str = "WASMEDGE_NN_WHISPER_LIB";

/// The CPU levels the runtime is built for that this CPU runs, best first. The names, and
/// the ggml options each is built with, are those of `scripts/env.sh` (`whisper_levels`).
pub fn cpu_levels() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let mut levels = Vec::new();
        let v3 = has!("sse4.2") && has!("avx") && has!("avx2") && has!("bmi2") && has!("fma") && has!("f16c");
        let v4 = v3 && has!("avx512f") && has!("avx512cd") && has!("avx512vl") && has!("avx512dq") && has!("avx512bw");
        if v4 {
            levels.push("x86-64-v4");
        }
        if v3 {
            levels.push("x86-64-v3");
        }
        levels.push("x86-64");
        levels
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        vec![std::env::consts::ARCH]
    }
}

/// The runtime's file name for one CPU level and this plugin's ABI version.
pub fn file_name(level: &str) -> String {
    format!("libwasmedge_nn_whisper-{level}.so.{}", abi::VERSION)
}

pub struct Runtime {
    api: &'static Api,
    /// Keeps the library mapped for the life of the process (it is never closed).
    _lib: libloading::Library,
}

fn open(path: &Path) -> Result<Runtime, String> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading runs the library's initialisers: whisper.cpp's and its ggml's, which
    // touch only their own state. RTLD_LOCAL keeps their symbols out of the process's scope.
    let lib: libloading::Library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?
        .into();
    // SAFETY: the symbol is the runtime's `extern "C" fn() -> *const Api` (see the ABI crate).
    let api = unsafe {
        let entry = lib
            .get::<abi::EntryFn>(abi::ENTRY)
            .map_err(|e| format!("{} is not the Whisper runtime ({e})", path.display()))?;
        entry().as_ref().ok_or_else(|| format!("{} returned no interface", path.display()))?
    };
    // SAFETY: the library stays loaded for the process's life (`Runtime` is never dropped:
    // it lives in a static), so `api` stays valid.
    let api: &'static Api = unsafe { &*(api as *const Api) };
    if api.version != abi::VERSION {
        return Err(format!(
            "{} speaks Whisper runtime interface {}, this plugin {}: install the two from the same build",
            path.display(),
            api.version,
            abi::VERSION
        ));
    }
    // SAFETY: `log_bridge` is a plain `extern "C"` function valid for the process's life.
    unsafe { (api.set_log)(log_bridge) };
    Ok(Runtime { api, _lib: lib })
}

/// whisper.cpp's messages, into this plugin's log.
unsafe extern "C" fn log_bridge(level: u32, text: *const u8, len: usize) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the runtime passes `len` valid bytes, valid during the call.
        let text = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(text, len) });
        let level = match level {
            1 => log::Level::Error,
            2 => log::Level::Warn,
            3 => log::Level::Info,
            4 => log::Level::Debug,
            _ => log::Level::Trace,
        };
        log::log!(target: "whisper.cpp", level, "{text}");
    });
}

/// The runtime, opened on first use.
pub fn runtime() -> NnResult<&'static Runtime> {
    static RUNTIME: OnceCell<Result<Runtime, String>> = OnceCell::new();
    RUNTIME
        .get_or_init(|| {
            let levels = cpu_levels();
            let candidates: Vec<PathBuf> = match (std::env::var_os(LIB_ENV), crate::plugin_dir::companions_dir()) {
                (Some(p), _) => vec![PathBuf::from(p)],
                (None, Some(dir)) => levels.iter().map(|l| dir.join(file_name(l))).collect(),
                (None, None) => Vec::new(),
            };
            let mut why = Vec::new();
            for path in &candidates {
                if !path.exists() {
                    why.push(format!("no {}", path.display()));
                    continue;
                }
                match open(path) {
                    Ok(rt) => {
                        log::info!("Whisper runtime: {}", path.display());
                        return Ok(rt);
                    }
                    Err(e) => why.push(e),
                }
            }
            Err(format!(
                "the Whisper backend's runtime library is not installed: put {} (one per CPU level: this CPU runs {}) \
                 in the folder {}/ beside the plugin (they are built with it; scripts/install-plugin.sh installs \
                 them), or name one in {LIB_ENV} ({})",
                file_name("<level>"),
                levels.join(", "),
                crate::plugin_dir::COMPANIONS,
                if why.is_empty() { "the plugin's folder is unknown".to_string() } else { why.join("; ") }
            ))
        })
        .as_ref()
        .map_err(|e| NnError::new(Errno::RuntimeError, e.clone()))
}

fn status_error(status: Status, message: &Message) -> NnError {
    let errno = match status {
        Status::InvalidArgument => Errno::InvalidArgument,
        _ => Errno::RuntimeError,
    };
    NnError::new(errno, message.text())
}

/// A loaded Whisper model, freed when dropped.
pub struct Model {
    ptr: NonNull<abi::Model>,
    rt: &'static Runtime,
}

// SAFETY: whisper.cpp's context is read-only once loaded; each transcription makes its own
// state (see `Api::transcribe`).
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

/// One segment, as the runtime hands it over (times in centiseconds).
pub struct Segment<'a> {
    pub t0: i64,
    pub t1: i64,
    pub text: &'a [u8],
}

/// How a transcription ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Done,
    Cancelled,
}

impl Model {
    fn loaded(ptr: *mut abi::Model, message: &Message, rt: &'static Runtime) -> NnResult<Self> {
        NonNull::new(ptr).map(|ptr| Self { ptr, rt }).ok_or_else(|| status_error(Status::InvalidArgument, message))
    }

    pub fn load_file(path: &Path, use_gpu: bool) -> NnResult<Self> {
        let rt = runtime()?;
        let path = path.to_str().ok_or_else(|| NnError::invalid_argument("the model path is not UTF-8"))?;
        let mut message = Message::default();
        // SAFETY: a valid UTF-8 buffer and message for the duration of the call.
        let ptr = unsafe { (rt.api.load_file)(path.as_ptr(), path.len(), use_gpu, &mut message) };
        Self::loaded(ptr, &message, rt)
    }

    pub fn load_buffer(bytes: &[u8], use_gpu: bool) -> NnResult<Self> {
        let rt = runtime()?;
        let mut message = Message::default();
        // SAFETY: a valid buffer and message for the duration of the call.
        let ptr = unsafe { (rt.api.load_buffer)(bytes.as_ptr(), bytes.len(), use_gpu, &mut message) };
        Self::loaded(ptr, &message, rt)
    }

    pub fn info(&self) -> ModelInfo {
        // SAFETY: a live model.
        unsafe { (self.rt.api.info)(self.ptr.as_ptr()) }
    }

    /// Transcribe 16 kHz mono `samples`, handing each segment to `on_segment` as it comes
    /// (returning false stops the transcription). `cancel` stops it from another thread.
    pub fn transcribe(
        &self,
        params: &Params,
        samples: &[f32],
        cancel: &AtomicBool,
        mut on_segment: impl FnMut(Segment) -> bool,
    ) -> NnResult<Ended> {
        unsafe extern "C" fn trampoline<F: FnMut(Segment) -> bool>(user: *mut c_void, s: *const abi::Segment) -> bool {
            // A panic must not unwind into the runtime: it stops the transcription instead.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // SAFETY: `user` is the closure below; `s` and its text are valid during the call.
                let (f, s) = unsafe { (&mut *user.cast::<F>(), &*s) };
                let text = unsafe { std::slice::from_raw_parts(s.text, s.len) };
                f(Segment { t0: s.t0, t1: s.t1, text })
            }))
            .unwrap_or(false)
        }
        let json = serde_json::to_vec(params).expect("Params serialise");
        let mut message = Message::default();
        // SAFETY: every buffer, the flag and the closure outlive the call.
        let status = unsafe {
            (self.rt.api.transcribe)(
                self.ptr.as_ptr(),
                json.as_ptr(),
                json.len(),
                samples.as_ptr(),
                samples.len(),
                cancel,
                trampoline::<&mut dyn FnMut(Segment) -> bool>,
                (&mut (&mut on_segment as &mut dyn FnMut(Segment) -> bool) as *mut &mut dyn FnMut(Segment) -> bool)
                    .cast(),
                &mut message,
            )
        };
        match status {
            Status::Ok => Ok(Ended::Done),
            Status::Cancelled => Ok(Ended::Cancelled),
            other => Err(status_error(other, &message)),
        }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: the model came from `load_*` and is freed once, here.
        unsafe { (self.rt.api.free)(self.ptr.as_ptr()) }
    }
}
