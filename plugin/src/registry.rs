//! Graphs and execution contexts by handle, and preloaded models by name. This sits between
//! the ABI layer (which speaks in handles) and the backends (which speak in graphs and
//! contexts). Handles are never reused, so a stale handle is always recognised as such.
//!
//! The registry lock is only held to look things up: a long computation holds its own
//! context's lock, never the registry's, and model loading happens outside any lock.

use crate::abi::Errno;
use crate::backend::{ExecutionContext, Graph};
use crate::error::{NnError, NnResult};
use crate::preload::Preload;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub type SharedGraph = Arc<dyn Graph>;
pub type SharedContext = Arc<Mutex<Box<dyn ExecutionContext>>>;

struct GraphEntry {
    graph: SharedGraph,
    /// Set when the graph came from a preloaded name: `unload` evicts it from the cache.
    name: Option<String>,
}

struct ContextEntry {
    context: SharedContext,
    graph: u32,
}

#[derive(Default)]
pub struct Registry {
    graphs: HashMap<u32, GraphEntry>,
    contexts: HashMap<u32, ContextEntry>,
    by_name: HashMap<String, u32>,
    preloads: HashMap<String, Preload>,
    next_handle: u32,
}

impl Registry {
    pub fn new(preloads: Vec<Preload>) -> Self {
        let preloads = preloads.into_iter().map(|p| (p.name.clone(), p)).collect();
        Self { preloads, ..Self::default() }
    }

    fn handle(&mut self) -> u32 {
        let h = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1);
        h
    }

    pub fn add_graph(&mut self, graph: SharedGraph, name: Option<String>) -> u32 {
        let h = self.handle();
        if let Some(name) = &name {
            self.by_name.insert(name.clone(), h);
        }
        self.graphs.insert(h, GraphEntry { graph, name });
        h
    }

    pub fn graph(&self, handle: u32) -> NnResult<SharedGraph> {
        self.graphs
            .get(&handle)
            .map(|g| g.graph.clone())
            .ok_or_else(|| NnError::invalid_argument(format!("unknown graph handle {handle}")))
    }

    pub fn graph_by_name(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn preload(&self, name: &str) -> NnResult<Preload> {
        self.preloads.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.preloads.keys().map(String::as_str).collect();
            NnError::not_found(format!(
                "no model preloaded as '{name}' (preloaded: {known:?}); \
                 pass --nn-preload {name}:GGML:AUTO:<path.gguf> to wasmedge"
            ))
        })
    }

    /// Remove a graph, its name in the cache and every context made from it.
    pub fn unload(&mut self, handle: u32) -> NnResult<()> {
        let entry = self
            .graphs
            .remove(&handle)
            .ok_or_else(|| NnError::invalid_argument(format!("unknown graph handle {handle}")))?;
        if let Some(name) = entry.name {
            self.by_name.remove(&name);
        }
        self.contexts.retain(|_, c| c.graph != handle);
        Ok(())
    }

    pub fn add_context(&mut self, graph: u32, context: Box<dyn ExecutionContext>) -> u32 {
        let h = self.handle();
        self.contexts.insert(h, ContextEntry { context: Arc::new(Mutex::new(context)), graph });
        h
    }

    pub fn context(&self, handle: u32) -> NnResult<SharedContext> {
        self.contexts
            .get(&handle)
            .map(|c| c.context.clone())
            .ok_or_else(|| NnError::invalid_argument(format!("unknown execution context handle {handle}")))
    }

    /// Take a context out; the caller drops it outside the registry lock.
    pub fn remove_context(&mut self, handle: u32) -> NnResult<SharedContext> {
        self.contexts
            .remove(&handle)
            .map(|c| c.context)
            .ok_or_else(|| NnError::invalid_argument(format!("unknown execution context handle {handle}")))
    }
}

/// Lock a context. A context whose lock was poisoned by a panic inside a backend stays
/// unusable (its state may be half-updated) but the host goes on.
pub fn lock(context: &SharedContext) -> NnResult<MutexGuard<'_, Box<dyn ExecutionContext>>> {
    context.lock().map_err(|_| {
        NnError::new(
            Errno::RuntimeError,
            "this execution context failed inside the backend earlier and can no longer be used; \
             finalize it and create a new one",
        )
    })
}
