//! whisper.cpp behind the C ABI of `wasmedge-nn-whisper-abi`: the WASI-NN plugin opens this
//! library at run time so that whisper.cpp's ggml and llama.cpp's never meet.
//!
//! Every exported function catches panics; a model is a leaked `Box<WhisperContext>` that
//! only `free` takes back.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use wasmedge_nn_whisper_abi::{self as abi, Api, LogFn, Message, Model, ModelInfo, Params, Segment, SegmentFn, Status};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};
use whisper_rs_sys as sys;

static API: Api = Api { version: abi::VERSION, set_log, load_file, load_buffer, info, free, transcribe };

/// The entry point ([`abi::ENTRY`]).
#[no_mangle]
pub extern "C" fn wasmedge_nn_whisper_api() -> *const Api {
    &API
}

/// Where whisper.cpp's messages go (a `LogFn` as usize; 0: nowhere).
static LOG: AtomicUsize = AtomicUsize::new(0);

fn log(level: u32, text: &str) {
    let f = LOG.load(Ordering::Acquire);
    if f != 0 {
        // SAFETY: only `set_log` stores here, and it stores a `LogFn`.
        let f: LogFn = unsafe { std::mem::transmute::<usize, LogFn>(f) };
        unsafe { f(level, text.as_ptr(), text.len()) };
    }
}

/// whisper.cpp's and ggml's log callback: ggml levels (1 debug, 2 info, 3 warn, 4 error, 5 cont).
unsafe extern "C" fn native_log(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: whisper.cpp passes a NUL-terminated string valid during the call.
    let text = unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy();
    let text = text.trim_end();
    if text.is_empty() || text == "." {
        return;
    }
    let level = match level {
        4 => 1,
        3 => 2,
        2 => 3,
        _ => 5,
    };
    log(level, text);
}

unsafe extern "C" fn set_log(f: LogFn) {
    LOG.store(f as usize, Ordering::Release);
    // SAFETY: plain setters of whisper.cpp's and (this library's) ggml's global log hooks.
    unsafe {
        sys::whisper_log_set(Some(native_log), std::ptr::null_mut());
        sys::ggml_log_set(Some(native_log), std::ptr::null_mut());
    }
}

/// Run `f`, turning a panic into `Failed` with a message.
fn guarded(error: *mut Message, f: impl FnOnce(&mut Message) -> Status) -> Status {
    let mut local = Message::default();
    // SAFETY: the caller passes a valid Message or null.
    let message = unsafe { error.as_mut() }.unwrap_or(&mut local);
    match catch_unwind(AssertUnwindSafe(|| f(&mut *message))) {
        Ok(status) => status,
        Err(_) => {
            message.set("the Whisper runtime failed (a bug; please report it)");
            Status::Failed
        }
    }
}

fn context_params(use_gpu: bool) -> WhisperContextParameters<'static> {
    let mut p = WhisperContextParameters::default();
    p.use_gpu(use_gpu);
    p
}

fn into_model(
    loaded: Result<WhisperContext, whisper_rs::WhisperError>,
    what: &str,
    message: &mut Message,
) -> *mut Model {
    match loaded {
        Ok(ctx) => Box::into_raw(Box::new(ctx)).cast(),
        Err(e) => {
            message.set(&format!(
                "whisper.cpp cannot load {what} as a Whisper model ({e}); turn on the log for its reason"
            ));
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn load_file(path: *const u8, len: usize, use_gpu: bool, error: *mut Message) -> *mut Model {
    let mut model = std::ptr::null_mut();
    guarded(error, |message| {
        // SAFETY: the caller passes `len` valid bytes.
        let path = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(path, len) }).into_owned();
        model =
            into_model(WhisperContext::new_with_params(&path, context_params(use_gpu)), &format!("'{path}'"), message);
        if model.is_null() {
            Status::InvalidArgument
        } else {
            Status::Ok
        }
    });
    model
}

unsafe extern "C" fn load_buffer(data: *const u8, len: usize, use_gpu: bool, error: *mut Message) -> *mut Model {
    let mut model = std::ptr::null_mut();
    guarded(error, |message| {
        // SAFETY: the caller passes `len` valid bytes.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        model = into_model(
            WhisperContext::new_from_buffer_with_params(bytes, context_params(use_gpu)),
            &format!("the {len} bytes given"),
            message,
        );
        if model.is_null() {
            Status::InvalidArgument
        } else {
            Status::Ok
        }
    });
    model
}

/// SAFETY: `model` comes from `load_*` and has not been freed.
unsafe fn context<'a>(model: *const Model) -> &'a WhisperContext {
    unsafe { &*model.cast::<WhisperContext>() }
}

unsafe extern "C" fn info(model: *const Model) -> ModelInfo {
    catch_unwind(|| {
        // SAFETY: see `context`.
        let ctx = unsafe { context(model) };
        ModelInfo {
            multilingual: ctx.is_multilingual(),
            n_vocab: ctx.n_vocab(),
            n_audio_layer: ctx.model_n_audio_layer(),
            n_text_layer: ctx.model_n_text_layer(),
        }
    })
    .unwrap_or_default()
}

unsafe extern "C" fn free(model: *mut Model) {
    if !model.is_null() {
        // SAFETY: `model` came from Box::into_raw in `into_model`, and is freed once.
        let _ = catch_unwind(|| drop(unsafe { Box::from_raw(model.cast::<WhisperContext>()) }));
    }
}

/// What the C callbacks of one transcription share.
struct Run {
    cancel: *const AtomicBool,
    on_segment: SegmentFn,
    user: *mut c_void,
    /// The consumer asked to stop.
    stopped: bool,
}

unsafe extern "C" fn abort_callback(user: *mut c_void) -> bool {
    // SAFETY: `user` is the `Run` of the transcription in progress.
    let run = unsafe { &*user.cast::<Run>() };
    run.stopped || unsafe { run.cancel.as_ref() }.is_some_and(|c| c.load(Ordering::Acquire))
}

unsafe extern "C" fn segment_callback(
    _: *mut sys::whisper_context,
    state: *mut sys::whisper_state,
    n_new: i32,
    user: *mut c_void,
) {
    // SAFETY: `user` is the `Run` of this transcription; `state` is its whisper state, whose
    // segments are valid during the callback.
    let run = unsafe { &mut *user.cast::<Run>() };
    let n = unsafe { sys::whisper_full_n_segments_from_state(state) };
    for i in (n - n_new).max(0)..n {
        if run.stopped {
            return;
        }
        let text = unsafe { std::ffi::CStr::from_ptr(sys::whisper_full_get_segment_text_from_state(state, i)) };
        let segment = Segment {
            t0: unsafe { sys::whisper_full_get_segment_t0_from_state(state, i) },
            t1: unsafe { sys::whisper_full_get_segment_t1_from_state(state, i) },
            text: text.as_ptr().cast(),
            len: text.to_bytes().len(),
            speaker_turn_next: unsafe { sys::whisper_full_get_segment_speaker_turn_next_from_state(state, i) },
        };
        if !unsafe { (run.on_segment)(run.user, &segment) } {
            run.stopped = true;
        }
    }
}

/// whisper.cpp's parameters for `p`, or why they are invalid.
fn full_params<'a>(p: &'a Params, ctx: &WhisperContext) -> Result<FullParams<'a, 'a>, String> {
    let strategy = if p.beam_size > 1 {
        SamplingStrategy::BeamSearch { beam_size: p.beam_size, patience: -1.0 }
    } else {
        SamplingStrategy::Greedy { best_of: p.best_of.max(1) }
    };
    let mut fp = FullParams::new(strategy);
    let auto = p.detect_language || p.language == "auto";
    if !auto && whisper_rs::get_lang_id(&p.language).is_none() {
        return Err(format!("unknown language '{}': give a code such as \"en\" or \"de\", or \"auto\"", p.language));
    }
    let (language, translate) = if ctx.is_multilingual() {
        (if auto { "auto" } else { p.language.as_str() }, p.translate)
    } else {
        // An English-only model: English, and nothing to translate.
        ("en", false)
    };
    fp.set_language(Some(language));
    fp.set_translate(translate);
    fp.set_n_threads(p.threads.max(1));
    fp.set_offset_ms(p.offset_ms.max(0));
    fp.set_duration_ms(p.duration_ms.max(0));
    fp.set_n_max_text_ctx(p.max_context);
    fp.set_max_len(p.max_len.max(0));
    fp.set_token_timestamps(p.max_len > 0);
    fp.set_split_on_word(p.split_on_word);
    fp.set_temperature(p.temperature);
    fp.set_no_timestamps(p.no_timestamps);
    fp.set_audio_ctx(p.audio_ctx.max(0));
    fp.set_tdrz_enable(p.diarize);
    if !p.prompt.is_empty() {
        fp.set_initial_prompt(&p.prompt);
    }
    fp.set_print_progress(false);
    fp.set_print_realtime(false);
    fp.set_print_special(false);
    fp.set_print_timestamps(false);
    Ok(fp)
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn transcribe(
    model: *const Model,
    params: *const u8,
    params_len: usize,
    samples: *const f32,
    n_samples: usize,
    cancel: *const AtomicBool,
    on_segment: SegmentFn,
    user: *mut c_void,
    error: *mut Message,
) -> Status {
    guarded(error, |message| {
        // SAFETY: the caller passes valid buffers of the given lengths and a live model.
        let (json, samples, ctx) = unsafe {
            (
                std::slice::from_raw_parts(params, params_len),
                std::slice::from_raw_parts(samples, n_samples),
                context(model),
            )
        };
        let p: Params = match serde_json::from_slice(json) {
            Ok(p) => p,
            Err(e) => {
                message.set(&format!("bad transcription settings: {e}"));
                return Status::InvalidArgument;
            }
        };
        if samples.is_empty() {
            message.set("no audio samples to transcribe");
            return Status::InvalidArgument;
        }
        let mut fp = match full_params(&p, ctx) {
            Ok(fp) => fp,
            Err(e) => {
                message.set(&e);
                return Status::InvalidArgument;
            }
        };
        let mut run = Run { cancel, on_segment, user, stopped: false };
        let run_ptr: *mut Run = &mut run;
        // SAFETY: `run` outlives the `full` call below, the only time the callbacks run.
        unsafe {
            fp.set_new_segment_callback(Some(segment_callback));
            fp.set_new_segment_callback_user_data(run_ptr.cast());
            fp.set_abort_callback(Some(abort_callback));
            fp.set_abort_callback_user_data(run_ptr.cast());
        }
        let mut state = match ctx.create_state() {
            Ok(s) => s,
            Err(e) => {
                message.set(&format!("whisper.cpp cannot make a state for this model (out of memory?): {e}"));
                return Status::Failed;
            }
        };
        let result = state.full(fp, samples);
        // SAFETY: `run` is not borrowed by anything once `full` has returned.
        let stopped =
            unsafe { (*run_ptr).stopped } || unsafe { cancel.as_ref() }.is_some_and(|c| c.load(Ordering::Acquire));
        match result {
            _ if stopped => Status::Cancelled,
            Ok(()) => Status::Ok,
            Err(e) => {
                message.set(&format!("whisper.cpp failed to transcribe: {e}"));
                Status::Failed
            }
        }
    })
}
