//! llama.cpp's and ggml's own log lines, forwarded to the `log` crate (targets `llama.cpp`,
//! `ggml`, `mtmd`), so they obey the plugin's log level instead of printing to stderr.

use llama_cpp_sys_2 as sys;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};

thread_local! {
    /// A line in progress: llama.cpp sends some lines in pieces (level CONT).
    static PENDING: RefCell<(log::Level, String)> = const { RefCell::new((log::Level::Debug, String::new())) };
    /// Lines gathered on this thread by [`gather`]: their prefix, and those seen.
    static GATHER: RefCell<Option<(&'static str, Vec<String>)>> = const { RefCell::new(None) };
}

/// Runs `f`, and returns with its result the lines llama.cpp logged meanwhile on this thread
/// that start with `prefix`, at any level, whether or not the log shows them.
pub fn gather<R>(prefix: &'static str, f: impl FnOnce() -> R) -> (R, Vec<String>) {
    GATHER.set(Some((prefix, Vec::new())));
    let result = f();
    let lines = GATHER.take().map(|(_, lines)| lines).unwrap_or_default();
    (result, lines)
}

fn level_of(level: sys::ggml_log_level) -> Option<log::Level> {
    match level {
        sys::GGML_LOG_LEVEL_ERROR => Some(log::Level::Error),
        sys::GGML_LOG_LEVEL_WARN => Some(log::Level::Warn),
        sys::GGML_LOG_LEVEL_INFO => Some(log::Level::Info),
        // llama.cpp's debug output is a flood (every graph node): keep it for `trace`.
        sys::GGML_LOG_LEVEL_DEBUG => Some(log::Level::Trace),
        _ => None, // CONT (and NONE): continue the pending line
    }
}

macro_rules! forwarder {
    ($name:ident, $target:literal) => {
        /// # Safety
        /// Called by llama.cpp with a NUL-terminated string (or null).
        unsafe extern "C" fn $name(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
            let gathering = GATHER.try_with(|g| g.borrow().is_some()).unwrap_or(false);
            if text.is_null() || (!gathering && log::max_level() == log::LevelFilter::Off) {
                return;
            }
            // SAFETY: llama.cpp passes a valid C string that lives for the duration of the call.
            let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
            let _ = GATHER.try_with(|g| {
                if let Some((prefix, lines)) = g.borrow_mut().as_mut() {
                    if text.starts_with(*prefix) {
                        lines.push(text.trim_end().to_string());
                    }
                }
            });
            if log::max_level() == log::LevelFilter::Off {
                return;
            }
            let _ = std::panic::catch_unwind(|| forward($target, level, &text));
        }
    };
}

forwarder!(llama_log, "llama.cpp");
forwarder!(ggml_log, "ggml");
forwarder!(mtmd_log, "mtmd");

fn forward(target: &str, level: sys::ggml_log_level, text: &str) {
    PENDING.with_borrow_mut(|(pending_level, line)| {
        if let Some(l) = level_of(level) {
            *pending_level = l;
        }
        line.push_str(text);
        if line.ends_with('\n') {
            let msg = line.trim_end();
            if !msg.is_empty() && msg != "." {
                log::log!(target: target, *pending_level, "{msg}");
            }
            line.clear();
        }
    });
}

/// Install the forwarders (process-wide; the last installer wins in llama.cpp).
pub fn install() {
    // SAFETY: the callbacks are plain functions that live for the whole process and ignore
    // their user-data pointer.
    unsafe {
        sys::llama_log_set(Some(llama_log), std::ptr::null_mut());
        sys::ggml_log_set(Some(ggml_log), std::ptr::null_mut());
        sys::mtmd_helper_log_set(Some(mtmd_log), std::ptr::null_mut());
    }
}
