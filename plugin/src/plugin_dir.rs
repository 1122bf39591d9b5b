//! Where this plugin's own library lies: its companion libraries (the Whisper runtime, ggml's
//! backends) are installed beside it.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

/// The folder holding this plugin's own library.
pub fn plugin_dir() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr reads the address of a function of this library and fills `info`.
    let found = unsafe { libc::dladdr(plugin_dir as *const c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr set dli_fname to a NUL-terminated path.
    let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(file.to_bytes()));
    path.canonicalize().unwrap_or(path).parent().map(Path::to_path_buf)
}

/// The folder beside the plugin that holds its companion libraries: the Whisper runtime,
/// llama.cpp's and ggml's shared libraries, ggml's backends. None of their names ends in
/// `.so`, so WasmEdge, which opens every `*.so` under its plugin path (recursively) as a
/// plugin, leaves them alone.
pub const COMPANIONS: &str = "wasmedge-nn";

/// [`plugin_dir`]`/`[`COMPANIONS`].
pub fn companions_dir() -> Option<PathBuf> {
    plugin_dir().map(|d| d.join(COMPANIONS))
}
