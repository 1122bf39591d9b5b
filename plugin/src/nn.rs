//! The WASI-NN operations, one function per host function, in terms of guest memory and
//! handles. Every guest pointer is checked before anything is changed, so a call that fails
//! on a bad pointer leaves no half-made graph or context behind. Each call names its guest
//! instance (`owner`), which only ever sees its own handles.

use crate::abi::{Errno, ExecutionTarget, GraphEncoding, GuestMemory};
use crate::backend::{Backend, ExecutionContext};
use crate::error::{NnError, NnResult};
use crate::preload::Preload;
use crate::registry::{self, Owner, Registry, SharedContext};
use once_cell::sync::OnceCell;
use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};

static REGISTRY: OnceCell<Mutex<Registry>> = OnceCell::new();

/// The backends by encoding (see [`crate::backend::builtin`]).
pub type Backends = &'static [(GraphEncoding, &'static dyn Backend)];
static BACKENDS: OnceCell<Backends> = OnceCell::new();

/// Set the backends and the preloaded models, made by `preloads`, on the first call only
/// (WasmEdge creates the module once per guest instance).
pub fn init(backends: Backends, preloads: impl FnOnce() -> Vec<Preload>) {
    BACKENDS.get_or_init(|| backends);
    REGISTRY.get_or_init(|| Mutex::new(Registry::new(preloads())));
}

fn registry() -> MutexGuard<'static, Registry> {
    let r = REGISTRY.get_or_init(|| Mutex::new(Registry::new(Vec::new())));
    // The registry's own methods never panic while it is locked; recover from poisoning anyway.
    r.lock().unwrap_or_else(|p| p.into_inner())
}

fn backend_for(encoding: GraphEncoding, model: Option<&[u8]>) -> NnResult<&'static dyn Backend> {
    let backends = BACKENDS.get().copied().unwrap_or_default();
    let found = match (encoding, model) {
        (GraphEncoding::Autodetect, Some(model)) => backends.iter().find(|(_, b)| b.recognizes(model)),
        (GraphEncoding::Autodetect, None) => None,
        _ => backends.iter().find(|(e, _)| *e == encoding),
    };
    found.map(|(_, b)| *b).ok_or_else(|| {
        let supported: Vec<&str> = backends.iter().map(|(e, _)| e.name()).collect();
        let what = match encoding {
            GraphEncoding::Autodetect => "no backend recognises this model (autodetect)".to_owned(),
            other => format!("graph encoding '{}' is not supported by this plugin", other.name()),
        };
        NnError::invalid_encoding(format!("{what}; supported: {}", supported.join(", ")))
    })
}

/// The first bytes of a model file, for `AUTO` (empty when it cannot be read; loading it
/// then says why).
fn file_head(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let mut head = Vec::with_capacity(8);
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(8).read_to_end(&mut head);
    }
    head
}

fn encoding(raw: u32) -> NnResult<GraphEncoding> {
    GraphEncoding::from_u32(raw).ok_or_else(|| NnError::invalid_encoding(format!("unknown graph encoding {raw}")))
}

fn target(raw: u32) -> NnResult<ExecutionTarget> {
    ExecutionTarget::from_u32(raw).ok_or_else(|| NnError::invalid_argument(format!("unknown execution target {raw}")))
}

/// Check that a u32 out-parameter can be written, before doing the work that produces it.
fn out_param(mem: &dyn GuestMemory, at: u32) -> NnResult<()> {
    mem.bytes(at, 4).map(|_| ())
}

pub fn load(
    mem: &mut dyn GuestMemory,
    owner: Owner,
    builders: u32,
    count: u32,
    enc: u32,
    tgt: u32,
    out_graph: u32,
) -> NnResult<()> {
    let (enc, tgt) = (encoding(enc)?, target(tgt)?);
    out_param(mem, out_graph)?;
    let builders = mem.builders(builders, count)?;
    crate::limits::check_graphs(registry().loaded_graph_count())?;
    let graph = backend_for(enc, builders.first().copied())?.load_from_builders(&builders, tgt)?;
    let handle = registry().add_graph(owner, Arc::from(graph), None);
    mem.write_u32(out_graph, handle)
}

pub fn load_by_name(mem: &mut dyn GuestMemory, owner: Owner, name: u32, name_len: u32, out_graph: u32) -> NnResult<()> {
    load_by_name_with_config(mem, owner, name, name_len, 0, 0, out_graph)
}

pub fn load_by_name_with_config(
    mem: &mut dyn GuestMemory,
    owner: Owner,
    name: u32,
    name_len: u32,
    config: u32,
    config_len: u32,
    out_graph: u32,
) -> NnResult<()> {
    let name = mem.str(name, name_len, "the model name")?.to_owned();
    let config = mem.bytes(config, config_len)?.to_vec();
    out_param(mem, out_graph)?;

    let (preload, cell) = {
        let mut reg = registry();
        if let Some(handle) = reg.handle_by_name(owner, &name) {
            // As WasmEdge's plugin: one graph per name, unless a different config is asked for
            // (which that plugin silently ignores): see `with_config` below.
            if config.is_empty() || reg.config_of(handle) == config.as_slice() {
                match reg.graph(owner, handle).ok().and_then(|g| g.broken()) {
                    None => {
                        log::debug!("'{name}' is already loaded as graph {handle}");
                        return mem.write_u32(out_graph, handle);
                    }
                    Some(why) => {
                        log::warn!("'{name}' (graph {handle}) cannot compute any more ({why}): loading it again");
                        reg.forget_name(owner, &name);
                    }
                }
            }
        }
        reg.preload(&name)?
    };
    // Loading takes a while: the registry is not locked meanwhile; the name's cell makes a
    // second instance asking for the same model wait for this load instead of repeating it.
    let (graph, loaded_with) = cell.get_or_try_init(|| {
        if !preload.path.is_file() {
            return Err(NnError::new(
                Errno::ModelNotFound,
                format!(
                    "model file '{}' for '{name}' does not exist (as seen from the host's working directory {})",
                    preload.path.display(),
                    std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()
                ),
            ));
        }
        if let Some(pin) = &preload.sha256 {
            crate::integrity::verify_file(&preload.path, pin)?;
        }
        let config = (!config.is_empty()).then_some(config.as_slice());
        let head = (preload.encoding == GraphEncoding::Autodetect).then(|| file_head(&preload.path));
        let backend = backend_for(preload.encoding, head.as_deref())?;
        let graph = backend.load_from_file(&preload.path, config, preload.target)?;
        Ok((Arc::from(graph), config.unwrap_or_default().to_vec()))
    })?;
    let graph = with_config(&name, graph, loaded_with, &config)?;
    let mut reg = registry();
    let handle = match reg.handle_by_name(owner, &name) {
        // another thread of this instance got one (with this config) meanwhile
        Some(raced) if reg.config_of(raced) == config.as_slice() => raced,
        _ => reg.add_graph(owner, graph, Some((name, config))),
    };
    mem.write_u32(out_graph, handle)
}

/// The graph for `name` with `config`, given the one the process loaded first (with
/// `loaded_with`). No config, or the same: that graph. Another: a graph of the same model with
/// this config instead, sharing the loaded weights when the settings that shape the load agree
/// (the backend loads the model again when they do not). WasmEdge's own plugin ignores the
/// new config without a word; guests asking for two configs get what they asked for here.
fn with_config(
    name: &str,
    graph: &crate::registry::SharedGraph,
    loaded_with: &[u8],
    config: &[u8],
) -> NnResult<crate::registry::SharedGraph> {
    if config.is_empty() || config == loaded_with {
        return Ok(graph.clone());
    }
    log::info!(
        "'{name}' is loaded with another config ({}): a graph with this one ({})",
        String::from_utf8_lossy(loaded_with),
        String::from_utf8_lossy(config)
    );
    Ok(Arc::from(graph.with_config(config)?))
}

pub fn init_execution_context(mem: &mut dyn GuestMemory, owner: Owner, graph: u32, out_ctx: u32) -> NnResult<()> {
    out_param(mem, out_ctx)?;
    let g = {
        let reg = registry();
        reg.check_room()?;
        reg.graph(owner, graph)?
    };
    let ctx = g.init_execution_context()?;
    let handle = registry().add_context(owner, graph, ctx)?;
    mem.write_u32(out_ctx, handle)
}

/// Run `f` on a context, holding only that context's lock.
fn with_context<T>(owner: Owner, handle: u32, f: impl FnOnce(&mut dyn ExecutionContext) -> NnResult<T>) -> NnResult<T> {
    let ctx: SharedContext = registry().context(owner, handle)?;
    let mut guard = registry::lock(&ctx)?;
    let result = f(guard.as_mut());
    if let Err(e) = &result {
        if e.errno != Errno::EndOfSequence {
            guard.note_error(&e.message);
        }
    }
    result
}

pub fn set_input(mem: &mut dyn GuestMemory, owner: Owner, ctx: u32, index: u32, tensor: u32) -> NnResult<()> {
    let tensor = mem.tensor(tensor)?;
    with_context(owner, ctx, |c| c.set_input(index, tensor))
}

pub fn compute(_mem: &mut dyn GuestMemory, owner: Owner, ctx: u32) -> NnResult<()> {
    with_context(owner, ctx, |c| c.compute())
}

pub fn compute_single(_mem: &mut dyn GuestMemory, owner: Owner, ctx: u32) -> NnResult<()> {
    with_context(owner, ctx, |c| c.compute_single())
}

pub fn fini_single(_mem: &mut dyn GuestMemory, owner: Owner, ctx: u32) -> NnResult<()> {
    with_context(owner, ctx, |c| c.fini_single())
}

/// Copy an output into the guest's buffer. A buffer that is too small gets TooLarge, with
/// the size needed written to `out_written`.
fn copy_output(mem: &mut dyn GuestMemory, data: Cow<'_, [u8]>, buf: u32, max: u32, out_written: u32) -> NnResult<()> {
    let len = u32::try_from(data.len()).map_err(|_| NnError::new(Errno::TooLarge, "output exceeds 4 GiB"))?;
    if len > max {
        mem.write_u32(out_written, len)?;
        return Err(NnError::new(
            Errno::TooLarge,
            format!("output is {len} bytes but the guest's buffer holds {max}; call again with a larger buffer"),
        ));
    }
    mem.write(buf, &data)?;
    mem.write_u32(out_written, len)
}

pub fn get_output(
    mem: &mut dyn GuestMemory,
    owner: Owner,
    ctx: u32,
    index: u32,
    buf: u32,
    max: u32,
    out_written: u32,
) -> NnResult<()> {
    mem.bytes(buf, max)?;
    out_param(mem, out_written)?;
    with_context(owner, ctx, |c| copy_output(mem, c.get_output(index)?, buf, max, out_written))
}

pub fn get_output_single(
    mem: &mut dyn GuestMemory,
    owner: Owner,
    ctx: u32,
    index: u32,
    buf: u32,
    max: u32,
    out_written: u32,
) -> NnResult<()> {
    mem.bytes(buf, max)?;
    out_param(mem, out_written)?;
    with_context(owner, ctx, |c| copy_output(mem, c.get_output_single(index)?, buf, max, out_written))
}

pub fn unload(_mem: &mut dyn GuestMemory, owner: Owner, graph: u32) -> NnResult<()> {
    // The graph's contexts are dropped (stopping any stream) after the lock is released.
    let contexts = registry().unload(owner, graph)?;
    drop(contexts);
    // An explicit release point: what the contexts held goes back to the system now, not
    // when a computing thread next finds itself idle.
    crate::compute_threads::trim_heap();
    crate::compute_threads::log_heap("unload");
    Ok(())
}

pub fn finalize_execution_context(_mem: &mut dyn GuestMemory, owner: Owner, ctx: u32) -> NnResult<()> {
    let context = registry().remove_context(owner, ctx)?;
    drop(context);
    Ok(())
}

/// A guest instance has ended: free every graph and context it made. Preloaded models stay
/// loaded for the other instances.
pub fn release(owner: Owner) {
    let contexts = registry().release(owner);
    if !contexts.is_empty() {
        log::debug!("instance {owner} ended: {} execution contexts released", contexts.len());
    }
    drop(contexts);
    crate::compute_threads::trim_heap();
    crate::compute_threads::log_heap("the instance's end");
}
