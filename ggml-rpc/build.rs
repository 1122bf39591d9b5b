//! ggml's RPC backend (client and server), from the llama.cpp sources llama-cpp-sys-2 built,
//! with ggml-rpc.patch and transport.patch applied: the stock client aborts the whole process
//! when a server cannot be reached or drops the connection (and a send to a closed socket
//! raises SIGPIPE); the patched one marks the endpoint failed and lets its user fail what used
//! it. Compiled once, here, for the plugin and its rpc-server program alike (and the tests'
//! native reference), so that all speak the same protocol version.

use std::path::{Path, PathBuf};

fn main() {
    let src = llama_sources();
    let rpc = src.join("ggml/src/ggml-rpc");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut build = cc::Build::new();
    for name in ["ggml-rpc", "transport"] {
        build.file(patched(&rpc.join(format!("{name}.cpp")), name, &out));
    }
    build
        .cpp(true)
        .std("c++17")
        .include(&rpc)
        .include(src.join("ggml/src"))
        .include(src.join("ggml/include"))
        .define("NDEBUG", None)
        // (ggml's own warnings are not ours to fix.)
        .warnings(false)
        .compile("wasmedge_nn_ggml_rpc");
}

/// `original` with NAME.patch applied, written into `out`.
fn patched(original: &Path, name: &str, out: &Path) -> PathBuf {
    let patch_file = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join(format!("{name}.patch"));
    println!("cargo:rerun-if-changed={}", patch_file.display());
    println!("cargo:rerun-if-changed={}", original.display());
    let base = std::fs::read_to_string(original)
        .unwrap_or_else(|e| panic!("cannot read ggml's RPC backend {}: {e}", original.display()));
    let text = std::fs::read_to_string(&patch_file).unwrap_or_else(|e| panic!("{}: {e}", patch_file.display()));
    let patch = diffy::Patch::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", patch_file.display()));
    let patched = diffy::apply(&base, &patch).unwrap_or_else(|e| {
        panic!(
            "{} does not apply to {} ({e}): llama-cpp-sys-2 was upgraded; make the patch again against it",
            patch_file.display(),
            original.display()
        )
    });
    let file = out.join(format!("{name}.cpp"));
    std::fs::write(&file, patched).expect("write a patched source");
    file
}

/// The llama.cpp source tree llama-cpp-sys-2 configured CMake with (its build folder
/// records it): the very sources of the libraries the plugin links.
fn llama_sources() -> PathBuf {
    if let Some(dir) = std::env::var_os("WASMEDGE_NN_LLAMA_SOURCES") {
        return PathBuf::from(dir);
    }
    // DEP_LLAMA_GGML_CMAKE_DIR: <llama-cpp-sys-2's out dir>/lib/cmake, in every configuration
    // of it (static or with dynamic backends); its CMake build folder is <out dir>/build.
    let cmake = std::env::var("DEP_LLAMA_GGML_CMAKE_DIR").expect("llama-cpp-sys-2 tells where it built llama.cpp");
    let out = Path::new(&cmake).ancestors().nth(2).expect("<out dir>/lib/cmake");
    let cache = out.join("build/CMakeCache.txt");
    let text = std::fs::read_to_string(&cache).unwrap_or_else(|e| panic!("cannot read {}: {e}", cache.display()));
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("CMAKE_HOME_DIRECTORY:INTERNAL="))
        .unwrap_or_else(|| panic!("no CMAKE_HOME_DIRECTORY in {}", cache.display()));
    PathBuf::from(dir)
}
