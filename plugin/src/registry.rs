//! Graphs and execution contexts by handle, and preloaded models by name. This sits between
//! the ABI layer (which speaks in handles) and the backends (which speak in graphs and
//! contexts). Handles are never reused, so a stale handle is always recognised as such.
//!
//! Every graph handle and context handle belongs to the guest instance that made it (its
//! [`Owner`]): another instance cannot use it, and when an instance ends everything it made
//! is released. A preloaded model is loaded once per process, on first use by any instance,
//! and shared by all of them; each instance gets its own handle to it.
//!
//! The registry lock is only held to look things up: a long computation holds its own
//! context's lock, never the registry's, and model loading happens outside it.

use crate::abi::Errno;
use crate::backend::{ExecutionContext, Graph};
use crate::error::{NnError, NnResult};
use crate::limits;
use crate::preload::Preload;
use once_cell::sync::OnceCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub type SharedGraph = Arc<dyn Graph>;
pub type SharedContext = Arc<Mutex<Box<dyn ExecutionContext>>>;
/// A preloaded model, loaded at most once (the cell blocks a second loader until the first
/// is done), with the config it was first loaded with.
pub type NamedGraph = Arc<OnceCell<(SharedGraph, Vec<u8>)>>;

/// Which guest instance made a handle.
pub type Owner = u64;

struct GraphEntry {
    graph: SharedGraph,
    owner: Owner,
    /// The preloaded name it came from, if any, and the config it was asked for with.
    name: Option<(String, Vec<u8>)>,
}

struct ContextEntry {
    context: SharedContext,
    graph: u32,
    owner: Owner,
}

#[derive(Default)]
pub struct Registry {
    graphs: HashMap<u32, GraphEntry>,
    contexts: HashMap<u32, ContextEntry>,
    /// Each instance's handle for a preloaded name.
    handles_by_name: HashMap<(Owner, String), u32>,
    /// The process-wide cache of preloaded models.
    named: HashMap<String, NamedGraph>,
    preloads: HashMap<String, Preload>,
    next_handle: u32,
}

fn unknown_graph(handle: u32) -> NnError {
    NnError::invalid_argument(format!("unknown graph handle {handle}"))
}

fn unknown_context(handle: u32) -> NnError {
    NnError::invalid_argument(format!("unknown execution context handle {handle}"))
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

    pub fn add_graph(&mut self, owner: Owner, graph: SharedGraph, name: Option<(String, Vec<u8>)>) -> u32 {
        let h = self.handle();
        if let Some((name, _)) = &name {
            self.handles_by_name.insert((owner, name.clone()), h);
        }
        self.graphs.insert(h, GraphEntry { graph, owner, name });
        h
    }

    pub fn graph(&self, owner: Owner, handle: u32) -> NnResult<SharedGraph> {
        self.graphs
            .get(&handle)
            .filter(|g| g.owner == owner)
            .map(|g| g.graph.clone())
            .ok_or_else(|| unknown_graph(handle))
    }

    /// This instance's handle for a preloaded name, if it has one.
    pub fn handle_by_name(&self, owner: Owner, name: &str) -> Option<u32> {
        self.handles_by_name.get(&(owner, name.to_owned())).copied()
    }

    /// The config a named graph was asked for with (empty: none).
    pub fn config_of(&self, handle: u32) -> &[u8] {
        self.graphs.get(&handle).and_then(|g| g.name.as_ref()).map_or(&[], |(_, c)| c.as_slice())
    }

    /// Forget this instance's handle for `name` (its graph stays until unloaded), so that the
    /// next load of the name makes a new one.
    pub fn forget_name(&mut self, owner: Owner, name: &str) {
        self.handles_by_name.remove(&(owner, name.to_owned()));
    }

    /// What `name` was preloaded as, and the cell its model is (or will be) loaded into. A
    /// cell whose graph is broken is replaced by an empty one: the model is loaded again.
    pub fn preload(&mut self, name: &str) -> NnResult<(Preload, NamedGraph)> {
        let preload = self.preloads.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.preloads.keys().map(String::as_str).collect();
            NnError::not_found(format!(
                "no model preloaded as '{name}' (preloaded: {known:?}); \
                 pass --nn-preload {name}:GGML:AUTO:<path.gguf> to wasmedge"
            ))
        })?;
        let cell = self.named.entry(name.to_owned()).or_default();
        if let Some(why) = cell.get().and_then(|(graph, _)| graph.broken()) {
            log::warn!("the model preloaded as '{name}' is loaded again: {why}");
            *cell = NamedGraph::default();
        }
        Ok((preload, cell.clone()))
    }

    /// Remove a graph and every context made from it. A preloaded model stays in the
    /// process's cache for other instances and later loads.
    pub fn unload(&mut self, owner: Owner, handle: u32) -> NnResult<Vec<SharedContext>> {
        if !self.graphs.get(&handle).is_some_and(|g| g.owner == owner) {
            return Err(unknown_graph(handle));
        }
        let entry = self.graphs.remove(&handle).expect("checked above");
        if let Some((name, _)) = entry.name {
            // (Unless a later load of the name with another config took it over.)
            let key = (owner, name);
            if self.handles_by_name.get(&key) == Some(&handle) {
                self.handles_by_name.remove(&key);
            }
        }
        Ok(self.take_contexts(|c| c.graph == handle))
    }

    /// Everything an instance made, when it ends; the caller drops the contexts outside the
    /// registry lock.
    pub fn release(&mut self, owner: Owner) -> Vec<SharedContext> {
        self.graphs.retain(|_, g| g.owner != owner);
        self.handles_by_name.retain(|(o, _), _| *o != owner);
        self.take_contexts(|c| c.owner == owner)
    }

    fn take_contexts(&mut self, which: impl Fn(&ContextEntry) -> bool) -> Vec<SharedContext> {
        let handles: Vec<u32> = self.contexts.iter().filter(|(_, c)| which(c)).map(|(&h, _)| h).collect();
        handles.iter().filter_map(|h| self.contexts.remove(h)).map(|c| c.context).collect()
    }

    /// Register a new context, or Busy when the process already has as many as allowed.
    pub fn add_context(&mut self, owner: Owner, graph: u32, context: Box<dyn ExecutionContext>) -> NnResult<u32> {
        limits::check_contexts(self.contexts.len())?;
        let h = self.handle();
        self.contexts.insert(h, ContextEntry { context: Arc::new(Mutex::new(context)), graph, owner });
        Ok(h)
    }

    /// Busy early, before a context is made, when no more may be added.
    pub fn check_room(&self) -> NnResult<()> {
        limits::check_contexts(self.contexts.len())
    }

    pub fn context(&self, owner: Owner, handle: u32) -> NnResult<SharedContext> {
        self.contexts
            .get(&handle)
            .filter(|c| c.owner == owner)
            .map(|c| c.context.clone())
            .ok_or_else(|| unknown_context(handle))
    }

    /// Take a context out; the caller drops it outside the registry lock.
    pub fn remove_context(&mut self, owner: Owner, handle: u32) -> NnResult<SharedContext> {
        if !self.contexts.get(&handle).is_some_and(|c| c.owner == owner) {
            return Err(unknown_context(handle));
        }
        Ok(self.contexts.remove(&handle).expect("checked above").context)
    }

    pub fn context_count(&self) -> usize {
        self.contexts.len()
    }

    /// Graphs loaded with `load` (preloaded models are the host's choice, not counted).
    pub fn loaded_graph_count(&self) -> usize {
        self.graphs.values().filter(|g| g.name.is_none()).count()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::Tensor;
    use std::borrow::Cow;

    struct NoGraph;
    impl Graph for NoGraph {
        fn init_execution_context(&self) -> NnResult<Box<dyn ExecutionContext>> {
            Ok(Box::new(NoContext))
        }
    }
    struct NoContext;
    impl ExecutionContext for NoContext {
        fn set_input(&mut self, _: u32, _: Tensor<'_>) -> NnResult<()> {
            Ok(())
        }
        fn compute(&mut self) -> NnResult<()> {
            Ok(())
        }
        fn get_output(&mut self, _: u32) -> NnResult<Cow<'_, [u8]>> {
            Ok(Cow::Borrowed(b""))
        }
        fn compute_single(&mut self) -> NnResult<()> {
            Ok(())
        }
        fn get_output_single(&mut self, _: u32) -> NnResult<Cow<'_, [u8]>> {
            Ok(Cow::Borrowed(b""))
        }
        fn fini_single(&mut self) -> NnResult<()> {
            Ok(())
        }
    }

    fn with_context(r: &mut Registry, owner: Owner) -> (u32, u32) {
        let g = r.add_graph(owner, Arc::new(NoGraph), None);
        let c = r.add_context(owner, g, Box::new(NoContext)).unwrap();
        (g, c)
    }

    #[test]
    fn handles_belong_to_their_instance() {
        let mut r = Registry::default();
        let (g, c) = with_context(&mut r, 1);
        assert!(r.graph(1, g).is_ok() && r.context(1, c).is_ok());
        assert_eq!(r.graph(2, g).err().map(|e| e.errno), Some(Errno::InvalidArgument));
        assert_eq!(r.context(2, c).err().map(|e| e.errno), Some(Errno::InvalidArgument));
        assert!(r.unload(2, g).is_err() && r.remove_context(2, c).is_err());
        assert!(r.context(1, c).is_ok(), "a failed attempt by another instance changes nothing");
    }

    #[test]
    fn an_ending_instance_releases_only_what_it_made() {
        let mut r = Registry::default();
        let (g1, c1) = with_context(&mut r, 1);
        let (g2, c2) = with_context(&mut r, 2);
        assert_eq!(r.release(1).len(), 1);
        assert!(r.graph(1, g1).is_err() && r.context(1, c1).is_err());
        assert!(r.graph(2, g2).is_ok() && r.context(2, c2).is_ok());
        assert_eq!(r.context_count(), 1);
    }

    #[test]
    fn unload_takes_the_graphs_contexts_and_handles_are_not_reused() {
        let mut r = Registry::default();
        let (g, c) = with_context(&mut r, 1);
        assert_eq!(r.unload(1, g).unwrap().len(), 1);
        assert!(r.context(1, c).is_err());
        let (g2, c2) = with_context(&mut r, 1);
        assert!(g2 != g && g2 != c && c2 != c && c2 != g);
    }
}
