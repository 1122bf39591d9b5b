//! A WasmEdge plugin, in Rust, implementing the WASI-NN host ABI that guests import as
//! `wasi_ephemeral_nn`, with GGUF language models run by llama.cpp.
//!
//! Layers, each knowing only the one below:
//! - [`wasmedge`]: the WasmEdge C API — descriptor, `--nn-preload`, host-function trampoline;
//! - [`nn`] and [`abi`]: the WASI-NN operations over guest memory, handles and error codes;
//! - [`registry`]: graphs and contexts by handle, preloaded models by name;
//! - [`backend`]: the `Backend`/`Graph`/`ExecutionContext` traits and one module per backend.

pub mod abi;
pub mod backend;
pub mod compute_threads;
pub mod confine;
pub mod cores;
pub mod error;
pub mod integrity;
pub mod limits;
pub mod logging;
pub mod nn;
pub mod plugin_dir;
pub mod preload;
pub mod prompt_cache;
pub mod registry;
pub mod rpc_servers;
pub mod stderr_capture;
// Left out of unit-test builds: its symbols come from the libwasmedge of the loading process.
#[cfg(not(any(test, fuzzing)))]
mod wasmedge;
