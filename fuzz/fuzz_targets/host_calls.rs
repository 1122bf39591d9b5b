//! Random sequences of the twelve host functions, from two guest instances, with random
//! pointers, lengths and handles (fresh, stale, the other instance's, made up), against the
//! plugin's own `nn` layer and registry, with the echo backend.
//!
//! Checked after every call, besides "never panics":
//! - a failed call leaves guest memory as it was (only `get_output*` answering TooLarge
//!   writes the size it needs, at `out_written`);
//! - a handle this instance does not hold (never made, finalized, unloaded, or another
//!   instance's) is refused with InvalidArgument, and `unload`/`finalize` of one it holds
//!   succeeds;
//! - new handles are never ones handed out before;
//! - the error code is one `nn` documents for that call.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use wasmedge_nn_fuzz::{Echo, ECHO_MAGIC};
use wasmedge_nn_plugin::abi::{BufferMemory, Errno, GraphEncoding, GuestMemory};
use wasmedge_nn_plugin::backend::Backend;
use wasmedge_nn_plugin::error::NnResult;
use wasmedge_nn_plugin::{nn, preload};

static BACKENDS: &[(GraphEncoding, &dyn Backend)] = &[(GraphEncoding::Ggml, &Echo)];

/// Preloaded names: an echo model, the same through AUTO, a file that is not a model and
/// one that does not exist.
fn init() {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("echo.bin"), [ECHO_MAGIC, b" model"].concat()).unwrap();
        std::fs::write(dir.path().join("junk.bin"), b"junk").unwrap();
        dir
    });
    nn::init(BACKENDS, || {
        let d = dir.path().display();
        [
            "echo:GGML:CPU:{d}/echo.bin",
            "auto:autodetect:AUTO:{d}/echo.bin",
            "junk:GGML:CPU:{d}/junk.bin",
            "gone:GGML:CPU:{d}/gone",
        ]
        .iter()
        .map(|spec| preload::parse(&spec.replace("{d}", &d.to_string())).expect("preload spec"))
        .collect()
    });
}

/// A guest pointer: anywhere in the 32-bit space, or (mostly) somewhere in its memory.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Ptr {
    Raw(u32),
    Inside(u16),
}

/// A handle: one of the graphs or contexts handed out earlier in this run (possibly stale,
/// possibly the other instance's), or made up.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Handle {
    Graph(u8),
    Context(u8),
    Raw(u32),
}

/// Bytes the guest puts in its memory before a call: text, a JSON document the backends
/// know, an echo model, or whatever is already there.
#[derive(Arbitrary, Debug)]
enum Bytes {
    Text { at: Ptr, bytes: Vec<u8> },
    Json { at: Ptr, which: u8 },
    Model { at: Ptr, tail: Vec<u8> },
    Name { at: Ptr, which: u8 },
    Raw { at: Ptr, len: u16 },
}

/// A tensor struct the guest writes (well-formed, or with its own fields), or any pointer.
#[derive(Arbitrary, Debug)]
enum TensorArg {
    Made { at: Ptr, dims: Vec<u32>, ty: u8, data: Bytes },
    Fields { at: Ptr, fields: [u32; 5] },
    Raw(Ptr),
}

/// `load`'s builder table, written by the guest, or any pointer and count.
#[derive(Arbitrary, Debug)]
enum BuildersArg {
    Made { at: Ptr, entries: Vec<Bytes> },
    Raw { at: Ptr, count: u8 },
}

#[derive(Arbitrary, Debug)]
enum Call {
    Load {
        second: bool,
        builders: BuildersArg,
        encoding: u8,
        target: u8,
        out: Ptr,
    },
    LoadByName {
        second: bool,
        name: Bytes,
        out: Ptr,
    },
    LoadByNameWithConfig {
        second: bool,
        name: Bytes,
        config: Bytes,
        out: Ptr,
    },
    Init {
        second: bool,
        graph: Handle,
        out: Ptr,
    },
    SetInput {
        second: bool,
        ctx: Handle,
        index: u8,
        tensor: TensorArg,
    },
    /// A well-formed U8 prompt tensor, as guests send most often.
    SetPrompt {
        second: bool,
        ctx: Handle,
        at: Ptr,
        text: Vec<u8>,
    },
    Compute {
        second: bool,
        ctx: Handle,
    },
    ComputeSingle {
        second: bool,
        ctx: Handle,
    },
    FiniSingle {
        second: bool,
        ctx: Handle,
    },
    /// `get_output`, or `get_output_single` when `single`.
    GetOutput {
        single: bool,
        second: bool,
        ctx: Handle,
        index: u8,
        buf: Ptr,
        max: u16,
        out: Ptr,
    },
    Unload {
        second: bool,
        graph: Handle,
    },
    Finalize {
        second: bool,
        ctx: Handle,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// The start of the guest's memory (the rest is zeros).
    memory: Vec<u8>,
    calls: Vec<Call>,
}

/// The guest's memory: 16 KiB, so that most pointers the fuzzer picks land inside.
const MEMORY: usize = 16 << 10;

/// What the instances should hold, kept beside the plugin's registry.
#[derive(Default)]
struct Shadow {
    graphs: HashMap<u32, u64>,
    contexts: HashMap<u32, (u64, u32)>,
    issued: HashSet<u32>,
    seen_graphs: Vec<u32>,
    seen_contexts: Vec<u32>,
}

impl Shadow {
    fn handle(&self, h: Handle) -> u32 {
        let pick = |seen: &[u32], i: u8| seen.get(i as usize % seen.len().max(1)).copied().unwrap_or(i as u32);
        match h {
            Handle::Graph(i) => pick(&self.seen_graphs, i),
            Handle::Context(i) => pick(&self.seen_contexts, i),
            Handle::Raw(h) => h,
        }
    }

    fn holds_graph(&self, owner: u64, h: u32) -> bool {
        self.graphs.get(&h) == Some(&owner)
    }

    fn holds_context(&self, owner: u64, h: u32) -> bool {
        self.contexts.get(&h).is_some_and(|(o, _)| *o == owner)
    }

    /// A call returned a new graph handle (or, for a preloaded name, maybe the one held).
    fn new_graph(&mut self, owner: u64, h: u32, by_name: bool) {
        if by_name && self.holds_graph(owner, h) {
            return;
        }
        assert!(self.issued.insert(h), "graph handle {h} was handed out before");
        self.graphs.insert(h, owner);
        self.seen_graphs.push(h);
    }

    fn new_context(&mut self, owner: u64, graph: u32, h: u32) {
        assert!(self.issued.insert(h), "context handle {h} was handed out before");
        self.contexts.insert(h, (owner, graph));
        self.seen_contexts.push(h);
    }
}

fn at(p: Ptr) -> u32 {
    match p {
        Ptr::Raw(p) => p,
        Ptr::Inside(p) => (p as usize % (MEMORY + 1)) as u32,
    }
}

/// Guest-side writes: they only land where the memory has room, as a guest's would.
fn poke(mem: &mut BufferMemory, offset: u32, bytes: &[u8]) {
    let _ = mem.write(offset, bytes);
}

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

const NAMES: [&[u8]; 6] = [b"echo", b"auto", b"junk", b"gone", b"nobody", b"\xff\xfe"];
const JSON: [&[u8]; 5] = [b"{}", br#"{"n-predict": 4, "ctx-size": 64}"#, b"{", b"[1, 2]", b"{\"a\": 1e999}"];

/// Write `b` into guest memory; where it is and how long.
fn place(mem: &mut BufferMemory, b: &Bytes) -> (u32, u32) {
    let mut put = |p: Ptr, bytes: &[u8]| {
        let o = at(p);
        poke(mem, o, bytes);
        (o, bytes.len() as u32)
    };
    match b {
        Bytes::Text { at: p, bytes } => put(*p, bytes),
        Bytes::Json { at: p, which } => put(*p, JSON[*which as usize % JSON.len()]),
        Bytes::Model { at: p, tail } => put(*p, &[ECHO_MAGIC, tail].concat()),
        Bytes::Name { at: p, which } => put(*p, NAMES[*which as usize % NAMES.len()]),
        Bytes::Raw { at: p, len } => (at(*p), *len as u32),
    }
}

fn text_len(b: &Bytes) -> u32 {
    match b {
        Bytes::Text { bytes, .. } => bytes.len() as u32,
        _ => 0,
    }
}

fn place_tensor(mem: &mut BufferMemory, t: &TensorArg) -> u32 {
    match t {
        TensorArg::Made { at: p, dims, ty, data } => {
            let (data, len) = place(mem, data);
            let o = at(*p);
            // The dims right after the struct.
            let dims_at = o.wrapping_add(20);
            poke(mem, dims_at, &u32s(dims));
            poke(mem, o, &u32s(&[dims_at, dims.len() as u32, *ty as u32, data, len]));
            o
        }
        TensorArg::Fields { at: p, fields } => {
            let o = at(*p);
            poke(mem, o, &u32s(fields));
            o
        }
        TensorArg::Raw(p) => at(*p),
    }
}

fn place_builders(mem: &mut BufferMemory, b: &BuildersArg) -> (u32, u32) {
    match b {
        BuildersArg::Made { at: p, entries } => {
            let table: Vec<u32> = entries.iter().flat_map(|e| <[u32; 2]>::from(place(mem, e))).collect();
            let o = at(*p);
            poke(mem, o, &u32s(&table));
            (o, entries.len() as u32)
        }
        BuildersArg::Raw { at: p, count } => (at(*p), *count as u32),
    }
}

fn expect_codes(call: &str, result: &NnResult<()>, allowed: &[Errno]) {
    if let Err(e) = result {
        assert!(allowed.contains(&e.errno), "{call} returned {:?} ({})", e.errno, e.message);
    }
}

fn check_handle_use(call: &str, result: &NnResult<()>, held: bool) {
    if !held {
        let e = result.as_ref().expect_err(&format!("{call} with a handle the instance does not hold succeeded"));
        assert_eq!(e.errno, Errno::InvalidArgument, "{call} with a foreign handle: {}", e.message);
    }
}

/// Write a call's arguments into guest memory, as the guest does before calling: the
/// pointers and lengths they ended up at.
fn prepare(call: &Call, mem: &mut BufferMemory) -> [u32; 4] {
    match call {
        Call::Load { builders, .. } => {
            let (b, n) = place_builders(mem, builders);
            [b, n, 0, 0]
        }
        Call::LoadByName { name, .. } => {
            let (n, len) = place(mem, name);
            [n, len, 0, 0]
        }
        Call::LoadByNameWithConfig { name, config, .. } => {
            let (n, len) = place(mem, name);
            let (c, clen) = place(mem, config);
            [n, len, c, clen]
        }
        Call::SetInput { tensor, .. } => [place_tensor(mem, tensor), 0, 0, 0],
        Call::SetPrompt { at: p, text, .. } => {
            let text = Bytes::Text { at: Ptr::Inside(8192), bytes: text.clone() };
            let tensor = TensorArg::Made { at: *p, dims: vec![1, text_len(&text)], ty: 3, data: text };
            [place_tensor(mem, &tensor), 0, 0, 0]
        }
        _ => [0; 4],
    }
}

/// Make the call; its result, and the `out_written` pointer of a `get_output*` call.
fn run(
    call: &Call,
    a: [u32; 4],
    mem: &mut BufferMemory,
    shadow: &mut Shadow,
    owners: [u64; 2],
) -> (NnResult<()>, Option<u32>) {
    let owner = |second: &bool| owners[*second as usize];
    let load_codes = [Errno::InvalidArgument, Errno::NotFound, Errno::ModelNotFound, Errno::InvalidEncoding];
    match call {
        Call::Load { second, encoding, target, out, .. } => {
            let o = at(*out);
            let r = nn::load(mem, owner(second), a[0], a[1], *encoding as u32 % 16, *target as u32 % 5, o);
            expect_codes("load", &r, &[Errno::InvalidArgument, Errno::InvalidEncoding, Errno::Busy]);
            if r.is_ok() {
                shadow.new_graph(owner(second), mem.read_u32(o).unwrap(), false);
            }
            (r, None)
        }
        Call::LoadByName { second, out, .. } => {
            let o = at(*out);
            let r = nn::load_by_name(mem, owner(second), a[0], a[1], o);
            expect_codes("load_by_name", &r, &load_codes);
            if r.is_ok() {
                shadow.new_graph(owner(second), mem.read_u32(o).unwrap(), true);
            }
            (r, None)
        }
        Call::LoadByNameWithConfig { second, out, .. } => {
            let o = at(*out);
            let r = nn::load_by_name_with_config(mem, owner(second), a[0], a[1], a[2], a[3], o);
            expect_codes("load_by_name_with_config", &r, &load_codes);
            if r.is_ok() {
                shadow.new_graph(owner(second), mem.read_u32(o).unwrap(), true);
            }
            (r, None)
        }
        Call::Init { second, graph, out } => {
            let (g, o) = (shadow.handle(*graph), at(*out));
            let r = nn::init_execution_context(mem, owner(second), g, o);
            expect_codes("init_execution_context", &r, &[Errno::InvalidArgument, Errno::Busy]);
            check_handle_use("init_execution_context", &r, shadow.holds_graph(owner(second), g));
            if r.is_ok() {
                shadow.new_context(owner(second), g, mem.read_u32(o).unwrap());
            }
            (r, None)
        }
        Call::SetInput { second, ctx, .. } | Call::SetPrompt { second, ctx, .. } => {
            let index = match call {
                Call::SetInput { index, .. } => *index as u32 % 4,
                _ => 0,
            };
            let c = shadow.handle(*ctx);
            let r = nn::set_input(mem, owner(second), c, index, a[0]);
            expect_codes("set_input", &r, &[Errno::InvalidArgument, Errno::InvalidEncoding, Errno::TooLarge]);
            // A bad tensor is refused before the handle is looked at.
            if mem.tensor(a[0]).is_ok() {
                check_handle_use("set_input", &r, shadow.holds_context(owner(second), c));
            }
            (r, None)
        }
        Call::Compute { second, ctx } => (on_context("compute", nn::compute, mem, shadow, owner(second), *ctx), None),
        Call::ComputeSingle { second, ctx } => {
            (on_context("compute_single", nn::compute_single, mem, shadow, owner(second), *ctx), None)
        }
        Call::FiniSingle { second, ctx } => {
            (on_context("fini_single", nn::fini_single, mem, shadow, owner(second), *ctx), None)
        }
        Call::GetOutput { single, second, ctx, index, buf, max, out } => {
            let (c, b, o, max) = (shadow.handle(*ctx), at(*buf), at(*out), *max as u32);
            let r = if *single {
                nn::get_output_single(mem, owner(second), c, *index as u32 % 3, b, max, o)
            } else {
                nn::get_output(mem, owner(second), c, *index as u32 % 3, b, max, o)
            };
            expect_codes("get_output", &r, &[Errno::InvalidArgument, Errno::TooLarge]);
            // Pointers are checked before the handle.
            if mem.bytes(b, max).is_ok() && mem.bytes(o, 4).is_ok() {
                check_handle_use("get_output", &r, shadow.holds_context(owner(second), c));
            }
            if r.is_ok() {
                let written = mem.read_u32(o).unwrap();
                assert!(written <= max, "get_output wrote {written} bytes into a buffer of {max}");
            }
            (r, Some(o))
        }
        Call::Unload { second, graph } => {
            let g = shadow.handle(*graph);
            let r = nn::unload(mem, owner(second), g);
            assert_eq!(r.is_ok(), shadow.holds_graph(owner(second), g), "unload of graph {g}: {r:?}");
            check_handle_use("unload", &r, shadow.holds_graph(owner(second), g));
            if r.is_ok() {
                shadow.graphs.remove(&g);
                shadow.contexts.retain(|_, (_, graph)| *graph != g);
            }
            (r, None)
        }
        Call::Finalize { second, ctx } => {
            let c = shadow.handle(*ctx);
            let r = on_context(
                "finalize_execution_context",
                nn::finalize_execution_context,
                mem,
                shadow,
                owner(second),
                *ctx,
            );
            if r.is_ok() {
                shadow.contexts.remove(&c);
            }
            (r, None)
        }
    }
}

/// A call that takes only a context handle: it may fail only on a handle the instance does
/// not hold (the echo backend's compute_single also ends its stream), and then with
/// InvalidArgument.
fn on_context(
    name: &str,
    call: fn(&mut dyn GuestMemory, u64, u32) -> NnResult<()>,
    mem: &mut BufferMemory,
    shadow: &Shadow,
    owner: u64,
    ctx: Handle,
) -> NnResult<()> {
    let c = shadow.handle(ctx);
    let r = call(mem, owner, c);
    let held = shadow.holds_context(owner, c);
    check_handle_use(name, &r, held);
    match &r {
        Err(e) if held => assert!(
            name == "compute_single" && e.errno == Errno::EndOfSequence,
            "{name} on a held context failed: {e:?}"
        ),
        _ => {}
    }
    r
}

fuzz_target!(|input: Input| {
    init();
    static NEXT_OWNER: AtomicU64 = AtomicU64::new(1 << 32);
    let owners = [NEXT_OWNER.fetch_add(1, Ordering::Relaxed), NEXT_OWNER.fetch_add(1, Ordering::Relaxed)];
    let mut memory = input.memory;
    memory.resize(MEMORY, 0);
    let mut mem = BufferMemory(memory);
    let mut shadow = Shadow::default();

    for call in input.calls.iter().take(64) {
        let args = prepare(call, &mut mem);
        let before = mem.0.clone();
        let (result, out_written) = run(call, args, &mut mem, &mut shadow, owners);
        // A failed call changes nothing in guest memory, except the size a too-small output
        // buffer needed.
        if let Err(e) = &result {
            let mut expected = before;
            if let (Errno::TooLarge, Some(o)) = (e.errno, out_written) {
                if let Some(word) = mem.0.get(o as usize..o as usize + 4) {
                    expected[o as usize..o as usize + 4].copy_from_slice(word);
                }
            }
            assert!(mem.0 == expected, "a failed call ({:?}: {}) changed guest memory", e.errno, e.message);
        }
    }

    for owner in owners {
        nn::release(owner);
    }
});
