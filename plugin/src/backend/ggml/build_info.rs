//! What llama.cpp records about the sources it was built from, reported in output 1:
//! - `llama_build_number` and `llama_commit` (its `common/build-info.cpp`, in libllama-common),
//!   the keys WasmEdge's plugin puts there and LlamaEdge's `get_plugin_info` requires. llama.cpp
//!   takes them from git when it is built; built from a crate's sources (no git), it says
//!   build 0, commit "unknown".
//! - `llama_version` and `ggml_version`: the versions written in the sources themselves
//!   (`LLAMA_VERSION_*` and `GGML_VERSION_*` in their CMakeLists), which a crate's sources keep.

use once_cell::sync::Lazy;
use std::ffi::{c_char, c_int, CStr};

extern "C" {
    // Plain C++ globals (variables are not name-mangled), exported by libllama-common, which
    // llama-cpp-sys-2 links for its `common` feature.
    static LLAMA_BUILD_NUMBER: c_int;
    static LLAMA_COMMIT: *const c_char;
}

pub struct BuildInfo {
    pub number: u64,
    pub commit: String,
    /// llama.cpp's own version, e.g. "0.6.0-dev".
    pub version: String,
    /// ggml's, e.g. "0.26.0".
    pub ggml_version: String,
}

pub fn get() -> &'static BuildInfo {
    static INFO: Lazy<BuildInfo> = Lazy::new(|| {
        // SAFETY: both are initialised constants of build-info.cpp, never written after load;
        // LLAMA_COMMIT points at a NUL-terminated string literal.
        let (number, commit) = unsafe { (LLAMA_BUILD_NUMBER, LLAMA_COMMIT) };
        let commit = if commit.is_null() {
            "unknown".to_owned()
        } else {
            // SAFETY: non-null, and a string literal (see above).
            unsafe { CStr::from_ptr(commit) }.to_string_lossy().into_owned()
        };
        // SAFETY: both return pointers to static NUL-terminated strings.
        let (version, ggml_version) = unsafe {
            (CStr::from_ptr(llama_cpp_sys_2::llama_version()), CStr::from_ptr(llama_cpp_sys_2::ggml_version()))
        };
        BuildInfo {
            number: u64::try_from(number).unwrap_or(0),
            commit,
            version: version.to_string_lossy().into_owned(),
            ggml_version: ggml_version.to_string_lossy().into_owned(),
        }
    });
    &INFO
}

/// What produced a KV state, for the prompt cache: the llama-cpp-sys-2 release (which pins
/// the vendored llama.cpp and ggml sources), ggml's version, and this plugin's. A state made
/// by any other build is never restored.
pub fn state_producer() -> &'static str {
    static TEXT: Lazy<String> = Lazy::new(|| {
        // SAFETY: a pointer to a static NUL-terminated string.
        let commit = unsafe { CStr::from_ptr(llama_cpp_sys_2::ggml_commit()) };
        format!(
            "llama-cpp-sys-2 {}, ggml {} ({}), wasmedge-nn {}",
            env!("LLAMA_CPP_SYS_VERSION"),
            get().ggml_version,
            commit.to_string_lossy(),
            env!("CARGO_PKG_VERSION")
        )
    });
    &TEXT
}
