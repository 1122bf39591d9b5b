//! ggml's RPC backend, compiled from the llama.cpp sources llama-cpp-sys-2 vendors with two
//! patches (build.rs): a client that never aborts its process (an endpoint it cannot reach,
//! or whose connection breaks, is marked failed, what waits on it completes with zeros, and
//! the failure is counted with its reason, [`failures`]), and sockets that raise no SIGPIPE
//! and give up on a vanished machine within about half a minute.
//!
//! The functions are ggml's own (`ggml-rpc.h`), plus `wnn_rpc_failures`.

use llama_cpp_sys_2::{ggml_backend_dev_t, ggml_backend_reg_t};
use std::ffi::{c_char, CStr, CString};

extern "C" {
    fn ggml_backend_rpc_add_server(endpoint: *const c_char) -> ggml_backend_reg_t;
    fn ggml_backend_rpc_start_server(
        endpoint: *const c_char,
        cache_dir: *const c_char,
        n_threads: usize,
        n_devices: usize,
        devices: *mut ggml_backend_dev_t,
    );
    fn wnn_rpc_failures(endpoint: *const c_char, why: *mut c_char, why_len: usize) -> u64;
}

/// The ggml backend registry entry of the server at `endpoint` (host:port), whose devices are
/// that server's, or None when it cannot be reached or has none ([`failures`] says why). The
/// entry is made once per endpoint and lives as long as the process; it is not registered.
pub fn add_server(endpoint: &CStr) -> Option<ggml_backend_reg_t> {
    // SAFETY: a NUL-terminated endpoint; the patched client returns null instead of aborting
    // when the server cannot be reached or answers wrongly.
    let reg = unsafe { ggml_backend_rpc_add_server(endpoint.as_ptr()) };
    (!reg.is_null()).then_some(reg)
}

/// How many times the connection to `endpoint` has failed in this process, and the last
/// failure's reason (empty: none).
pub fn failures(endpoint: &CStr) -> (u64, String) {
    let mut why = [0 as c_char; 512];
    // SAFETY: a NUL-terminated endpoint and a buffer of the length given; the function copies
    // at most len-1 bytes and a NUL.
    let count = unsafe { wnn_rpc_failures(endpoint.as_ptr(), why.as_mut_ptr(), why.len()) };
    // SAFETY: NUL-terminated by wnn_rpc_failures.
    let why = unsafe { CStr::from_ptr(why.as_ptr()) }.to_string_lossy().into_owned();
    (count, why)
}

/// Serve `device` to RPC clients at `endpoint` (host:port) with `threads` threads, keeping
/// large tensors received in `cache_dir` when given. Returns only when it cannot listen.
///
/// # Safety
/// `device` must be a live ggml device (from ggml's registry).
pub unsafe fn start_server(endpoint: &CStr, cache_dir: Option<&CString>, threads: usize, device: ggml_backend_dev_t) {
    let mut devices = [device];
    // SAFETY: NUL-terminated strings and one live device (the caller's promise).
    unsafe {
        ggml_backend_rpc_start_server(
            endpoint.as_ptr(),
            cache_dir.map_or(std::ptr::null(), |c| c.as_ptr()),
            threads,
            1,
            devices.as_mut_ptr(),
        )
    }
}
