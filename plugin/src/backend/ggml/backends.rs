//! ggml's compute backends: loaded at run time from the plugin's companion folder (the
//! portable build, the default), or built into the plugin (the native build).
//!
//! The portable build (feature `portable`) has llama.cpp built with ggml's dynamic backends:
//! the CPU code comes as one library per CPU generation (`x64`, `sse42`, `haswell` for AVX2,
//! `skylakex` and `zen4` for AVX-512, …) and the best one this CPU can run is loaded, so one
//! build uses AVX2 or AVX-512 where present and still runs on an older CPU. A GPU backend
//! (`libggml-cuda`) installed beside them is loaded too, and llama.cpp offloads `n-gpu-layers`
//! to it.
//!
//! ggml would find them itself by scanning a folder for `libggml-<kind>-*.so`, but WasmEdge
//! opens every `*.so` under its plugin path as a plugin (each start, twice). So the plugin's
//! companion libraries end in `.so.0`, which WasmEdge leaves alone, and are picked here as
//! ggml picks them: each candidate's `ggml_backend_score` (0: it cannot run on this CPU), the
//! highest loaded with `ggml_backend_load`. Scoring only opens a library and calls a function
//! built for the baseline CPU; nothing of a variant runs before it is chosen.
//!
//! The native build (without `portable`: `scripts/demo.sh`) links llama.cpp statically,
//! compiled for the CPU it was built on; its backends registered themselves, and nothing is
//! loaded.

use crate::error::{NnError, NnResult};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Names a companion library's file: `libggml-<kind>-<variant>.so.0` or `libggml-<kind>.so.0`.
const PREFIX: &str = "libggml-";
pub const SUFFIX: &str = ".so.0";
/// ggml's own libraries, which the plugin links: not backends.
const NOT_BACKENDS: [&str; 1] = ["base"];

/// Overrides the folder the backends are loaded from (for a relocated installation, or a
/// folder holding fewer variants).
pub const DIR_ENV: &str = "WASMEDGE_NN_GGML_BACKENDS";

/// One backend library on disk (its kind is the key it is filed under).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    variant: Option<String>,
    path: PathBuf,
}

/// What was loaded: per kind, the variant and its score.
#[derive(Debug, Default)]
pub struct Loaded {
    pub backends: Vec<(String, Option<String>, i32)>,
}

impl Loaded {
    pub fn has(&self, kind: &str) -> bool {
        self.backends.iter().any(|(k, _, _)| k == kind)
    }

    /// Whether a backend other than the CPU's was loaded.
    pub fn has_gpu(&self) -> bool {
        self.backends.iter().any(|(k, _, _)| k != "cpu")
    }
}

/// The backend libraries in `dir`, by kind.
fn candidates(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<Candidate>>> {
    let mut by_kind: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(stem) = name.strip_prefix(PREFIX).and_then(|n| n.strip_suffix(SUFFIX)) else { continue };
        let (kind, variant) = match stem.split_once('-') {
            Some((kind, variant)) => (kind, Some(variant.to_string())),
            None => (stem, None),
        };
        if NOT_BACKENDS.contains(&kind) || kind.is_empty() {
            continue;
        }
        by_kind.entry(kind.to_string()).or_default().push(Candidate { variant, path });
    }
    for list in by_kind.values_mut() {
        list.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(by_kind)
}

/// A backend library's score: 0 when it cannot run on this machine, higher for a better fit.
/// A library without a score function (a single-variant build) counts as 1.
fn score(path: &Path) -> Result<i32, String> {
    // SAFETY: opening a ggml backend library runs only its static initialisers, which ggml
    // keeps free of CPU-specific code so that variants can be scored on any machine (ggml's
    // own loader does exactly this).
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    // SAFETY: `ggml_backend_score` has this signature in every ggml backend (ggml-backend-impl.h).
    let score = unsafe { lib.get::<unsafe extern "C" fn() -> i32>(b"ggml_backend_score\0") };
    Ok(match score {
        // SAFETY: a plain function call with no arguments, while `lib` is open.
        Ok(f) => unsafe { f() },
        Err(_) => 1,
    })
}

/// Make ggml's backends ready: in the portable build, load the best of each kind from
/// `dir`, else (None) from [`dir`]; in the native build, report those built in.
pub fn load(dir: Option<&Path>) -> NnResult<Loaded> {
    if cfg!(feature = "portable") {
        match dir {
            Some(dir) => load_from(dir),
            None => load_from(&self::dir().ok_or_else(|| {
                NnError::runtime(format!(
                    "cannot tell which folder this plugin was loaded from, where ggml's backends are; set {DIR_ENV}"
                ))
            })?),
        }
    } else {
        Ok(built_in())
    }
}

/// The backends linked into this build (ggml registered them when it started).
fn built_in() -> Loaded {
    use llama_cpp_sys_2 as sys;
    let mut loaded = Loaded::default();
    // SAFETY: getters over ggml's registry, which its static initialisation filled; the names
    // are static NUL-terminated strings.
    unsafe {
        for i in 0..sys::ggml_backend_reg_count() {
            let name = std::ffi::CStr::from_ptr(sys::ggml_backend_reg_name(sys::ggml_backend_reg_get(i)));
            loaded.backends.push((name.to_string_lossy().to_lowercase(), Some("built in".to_owned()), 1));
        }
    }
    log::info!(
        "ggml's backends, built into the plugin: {:?}",
        loaded.backends.iter().map(|b| &b.0).collect::<Vec<_>>()
    );
    loaded
}

/// The folder the backends are in: `WASMEDGE_NN_GGML_BACKENDS`, else the plugin's own.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os(DIR_ENV).map(PathBuf::from).or_else(crate::plugin_dir::companions_dir)
}

/// Load the best library of each kind found in `dir`, GPU kinds first (llama.cpp uses the
/// devices in the order they are registered). Fails when no CPU backend can be loaded.
pub fn load_from(dir: &Path) -> NnResult<Loaded> {
    let by_kind = candidates(dir)
        .map_err(|e| NnError::runtime(format!("cannot read the folder of ggml's backends {}: {e}", dir.display())))?;
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by_key(|(kind, _)| kind == "cpu");
    let mut loaded = Loaded::default();
    for (kind, list) in kinds {
        let mut best: Option<(i32, Candidate)> = None;
        for c in list {
            match score(&c.path) {
                Ok(s) => {
                    log::debug!("ggml backend {}: score {s}", c.path.display());
                    if s > 0 && best.as_ref().map_or(true, |(b, _)| s > *b) {
                        best = Some((s, c));
                    }
                }
                Err(e) => log::warn!("cannot open ggml backend {}: {e}", c.path.display()),
            }
        }
        let Some((s, c)) = best else {
            log::warn!("no {kind} backend in {} runs on this machine", dir.display());
            continue;
        };
        let path = CString::new(c.path.as_os_str().as_encoded_bytes())
            .map_err(|_| NnError::runtime(format!("a NUL byte in the path {}", c.path.display())))?;
        // SAFETY: a NUL-terminated path; ggml keeps the library open once it is registered.
        let reg = unsafe { llama_cpp_sys_2::ggml_backend_load(path.as_ptr()) };
        if reg.is_null() {
            log::warn!("ggml could not load its {kind} backend {}", c.path.display());
            continue;
        }
        log::info!(
            "ggml {kind} backend: {} (score {s}), from {}",
            c.variant.as_deref().unwrap_or(&kind),
            c.path.display()
        );
        loaded.backends.push((kind, c.variant, s));
    }
    if !loaded.has("cpu") {
        return Err(NnError::runtime(format!(
            "no ggml CPU backend for this machine in {} (the plugin's libggml-cpu-*{SUFFIX} files are \
             installed in its {}/ folder; reinstall the plugin with scripts/install-plugin.sh, or set \
             {DIR_ENV} to the folder that holds them)",
            dir.display(),
            crate::plugin_dir::COMPANIONS
        )));
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_grouped_by_kind_and_ggml_itself_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "libggml-cpu-haswell.so.0",
            "libggml-cpu-x64.so.0",
            "libggml-cuda.so.0",
            "libggml-base.so.0",
            "libggml.so.0",
            "libllama.so.0",
            "libggml-cpu-zen4.so",
            "libwasmedge_nn_plugin.so",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let found = candidates(dir.path()).unwrap();
        let names = |kind: &str| -> Vec<Option<String>> { found[kind].iter().map(|c| c.variant.clone()).collect() };
        assert_eq!(found.keys().collect::<Vec<_>>(), ["cpu", "cuda"]);
        assert_eq!(names("cpu"), [Some("haswell".to_string()), Some("x64".to_string())]);
        assert_eq!(names("cuda"), [None]);
    }

    #[test]
    fn a_folder_without_a_cpu_backend_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_from(dir.path()).unwrap_err();
        assert!(e.message.contains("no ggml CPU backend") && e.message.contains(DIR_ENV), "{}", e.message);
    }
}
