//! The interface between the plugin and its Whisper runtime (`libwasmedge_nn_whisper`).
//!
//! llama.cpp and whisper.cpp each carry their own ggml, and the two cannot be linked into one
//! library (hundreds of duplicate symbols; forcing it makes llama.cpp abort). So whisper.cpp
//! lives in a library of its own that the plugin opens with `dlopen(RTLD_LOCAL)`: each ggml
//! stays private to its library. Both sides are Rust, but separately compiled, so what crosses
//! is C: one exported symbol, [`ENTRY`], returning a table of `extern "C"` functions
//! ([`Api`]); plain `#[repr(C)]` data; transcription settings as JSON ([`Params`]).
//!
//! Rules both sides keep: no panic crosses (the runtime catches them and reports
//! [`Status::Failed`]); memory is freed by the side that allocated it; pointers passed in are
//! only used during the call.

use serde::{Deserialize, Serialize};
use std::ffi::c_void;
use std::sync::atomic::AtomicBool;

/// Bumped whenever [`Api`], [`Segment`] or [`Params`] change incompatibly.
pub const VERSION: u32 = 1;

/// The runtime's one exported symbol: `extern "C" fn() -> *const Api`.
pub const ENTRY: &[u8] = b"wasmedge_nn_whisper_api\0";
pub type EntryFn = unsafe extern "C" fn() -> *const Api;

/// A loaded model (a `whisper_context`), owned by the runtime.
#[repr(C)]
pub struct Model {
    _private: [u8; 0],
}

/// How a call ended.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    /// Bad input: an unknown language, no samples, a file that is not a Whisper model.
    InvalidArgument = 1,
    /// Stopped by the cancel flag or by the segment callback.
    Cancelled = 2,
    /// whisper.cpp failed, or a bug (a caught panic).
    Failed = 3,
}

/// Room for an error message, filled by the runtime when a call does not return Ok.
#[repr(C)]
pub struct Message {
    pub bytes: [u8; 1024],
    pub len: usize,
}

impl Default for Message {
    fn default() -> Self {
        Self { bytes: [0; 1024], len: 0 }
    }
}

impl Message {
    pub fn set(&mut self, text: &str) {
        let mut n = text.len().min(self.bytes.len());
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
        self.len = n;
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..self.len.min(self.bytes.len())]).into_owned()
    }
}

/// What a loaded model is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ModelInfo {
    pub multilingual: bool,
    pub n_vocab: i32,
    pub n_audio_layer: i32,
    pub n_text_layer: i32,
}

/// One transcribed segment, valid during the callback only. Times in centiseconds.
#[repr(C)]
pub struct Segment {
    pub t0: i64,
    pub t1: i64,
    pub text: *const u8,
    pub len: usize,
    /// The next segment starts with a new speaker (tinydiarize models with `diarize`).
    pub speaker_turn_next: bool,
}

/// Called for each new segment, in order; returns false to stop the transcription.
pub type SegmentFn = unsafe extern "C" fn(user: *mut c_void, segment: *const Segment) -> bool;

/// Log levels, as the `log` crate numbers them (1 error ... 5 trace).
pub type LogFn = unsafe extern "C" fn(level: u32, text: *const u8, len: usize);

#[repr(C)]
pub struct Api {
    pub version: u32,
    /// Send whisper.cpp's and its ggml's messages to `log` (the last call wins).
    pub set_log: unsafe extern "C" fn(log: LogFn),
    /// Load a model from a file (`path` is UTF-8, `len` bytes); null on failure.
    pub load_file: unsafe extern "C" fn(path: *const u8, len: usize, use_gpu: bool, error: *mut Message) -> *mut Model,
    /// Load a model from bytes; null on failure.
    pub load_buffer:
        unsafe extern "C" fn(data: *const u8, len: usize, use_gpu: bool, error: *mut Message) -> *mut Model,
    pub info: unsafe extern "C" fn(model: *const Model) -> ModelInfo,
    pub free: unsafe extern "C" fn(model: *mut Model),
    /// Transcribe 16 kHz mono samples with the settings in `params` (JSON of [`Params`]),
    /// calling `on_segment` for each segment as whisper.cpp produces it. A set `cancel` flag
    /// stops it within one ggml computation. Several transcriptions may run on one model at
    /// once (each has its own whisper state).
    #[allow(clippy::type_complexity)]
    pub transcribe: unsafe extern "C" fn(
        model: *const Model,
        params: *const u8,
        params_len: usize,
        samples: *const f32,
        n_samples: usize,
        cancel: *const AtomicBool,
        on_segment: SegmentFn,
        user: *mut c_void,
        error: *mut Message,
    ) -> Status,
}

/// Transcription settings, with WasmEdge's plugin's defaults (see the plugin's whisper options
/// for the config keys that set them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    pub threads: i32,
    pub offset_ms: i32,
    pub duration_ms: i32,
    /// Text context tokens kept between windows (whisper's n_max_text_ctx).
    pub max_context: i32,
    /// Maximum segment length in characters; 0: no limit.
    pub max_len: i32,
    pub split_on_word: bool,
    pub translate: bool,
    /// A language code ("en", "de"...) or "auto".
    pub language: String,
    pub detect_language: bool,
    pub temperature: f32,
    pub prompt: String,
    pub best_of: i32,
    /// More than 1: beam search.
    pub beam_size: i32,
    pub no_timestamps: bool,
    pub audio_ctx: i32,
    /// Speaker turns (tinydiarize models).
    pub diarize: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            threads: 4,
            offset_ms: 0,
            duration_ms: 0,
            max_context: 16384,
            max_len: 0,
            split_on_word: false,
            translate: false,
            language: "en".into(),
            detect_language: false,
            temperature: 0.0,
            prompt: String::new(),
            best_of: 5,
            beam_size: 5,
            no_timestamps: false,
            audio_ctx: 0,
            diarize: false,
        }
    }
}
