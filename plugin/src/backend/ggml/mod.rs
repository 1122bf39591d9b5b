//! The GGML backend: GGUF language models through llama.cpp (llama-cpp-2). The model
//! weights are loaded once per graph and shared; contexts of one context shape share a
//! batching engine (engine/), one llama.cpp context whose KV cache holds a sequence per
//! context in use, and each execution context is a cheap handle on its sequence there.
//!
//! Without the `ggml` feature only [`options`] is built (the metadata it parses is part of
//! the ABI surface, fuzzed without llama.cpp).

pub mod options;

#[cfg(feature = "ggml")]
mod backends;
#[cfg(feature = "ggml")]
mod build_info;
#[cfg(feature = "ggml")]
mod context;
#[cfg(feature = "ggml")]
mod embedding;
#[cfg(feature = "ggml")]
mod engine;
#[cfg(feature = "ggml")]
mod generation;
#[cfg(feature = "ggml")]
mod grammar;
#[cfg(feature = "ggml")]
mod graph;
#[cfg(feature = "ggml")]
mod model_info;
#[cfg(feature = "ggml")]
mod native_log;
#[cfg(feature = "ggml")]
pub mod rpc;
#[cfg(feature = "ggml")]
mod vision;

#[cfg(feature = "ggml")]
pub use graph::GgmlBackend;
#[cfg(feature = "ggml")]
use graph::{llama_backend, GgmlGraph};
