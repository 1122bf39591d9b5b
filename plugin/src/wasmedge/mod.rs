//! Everything that knows about WasmEdge: the plugin descriptor WasmEdge looks up, the
//! `nn-*` options, the `wasi_ephemeral_nn` module and the host-function trampoline that
//! turns WasmEdge calls into [`crate::nn`] calls. All of the plugin's `unsafe` FFI lives here.
//!
//! WasmEdge makes one module instance per guest instance (per VM or store it is registered
//! in). Each gets an owner number; its host functions pass it to [`crate::nn`], and when
//! WasmEdge deletes the instance its finalizer releases everything that guest made.

mod ffi;
mod memory;

use crate::abi::{Errno, GuestMemory};
use crate::error::{NnError, NnResult};
use crate::registry::Owner;
use crate::{confine, limits, logging, nn, preload, prompt_cache, rpc_servers};
use ffi::*;
use memory::FrameMemory;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// WasmEdge 0.14 looks for plugin `wasi_nn` with module `wasi_nn`; without it, it registers
/// a built-in stand-in instance called `wasi_ephemeral_nn`, so the instance must have that
/// exact name to replace it.
const PLUGIN_NAME: &[u8] = b"wasi_nn\0";
const MODULE_NAME: &[u8] = b"wasi_nn\0";
const INSTANCE_NAME: &str = "wasi_ephemeral_nn";

type Call = fn(&mut dyn GuestMemory, Owner, &[u32]) -> NnResult<()>;

/// One host function: its import name, number of i32 parameters (one i32 result, the
/// error code) and the operation it runs.
struct HostFunction {
    name: &'static str,
    arity: usize,
    call: Call,
}

const MAX_ARITY: usize = 6;

static FUNCTIONS: [HostFunction; 12] = [
    HostFunction { name: "load", arity: 5, call: |m, o, a| nn::load(m, o, a[0], a[1], a[2], a[3], a[4]) },
    HostFunction { name: "load_by_name", arity: 3, call: |m, o, a| nn::load_by_name(m, o, a[0], a[1], a[2]) },
    HostFunction {
        name: "load_by_name_with_config",
        arity: 5,
        call: |m, o, a| nn::load_by_name_with_config(m, o, a[0], a[1], a[2], a[3], a[4]),
    },
    HostFunction {
        name: "init_execution_context",
        arity: 2,
        call: |m, o, a| nn::init_execution_context(m, o, a[0], a[1]),
    },
    HostFunction { name: "set_input", arity: 3, call: |m, o, a| nn::set_input(m, o, a[0], a[1], a[2]) },
    HostFunction { name: "get_output", arity: 5, call: |m, o, a| nn::get_output(m, o, a[0], a[1], a[2], a[3], a[4]) },
    HostFunction {
        name: "get_output_single",
        arity: 5,
        call: |m, o, a| nn::get_output_single(m, o, a[0], a[1], a[2], a[3], a[4]),
    },
    HostFunction { name: "compute", arity: 1, call: |m, o, a| nn::compute(m, o, a[0]) },
    HostFunction { name: "compute_single", arity: 1, call: |m, o, a| nn::compute_single(m, o, a[0]) },
    HostFunction { name: "fini_single", arity: 1, call: |m, o, a| nn::fini_single(m, o, a[0]) },
    HostFunction { name: "unload", arity: 1, call: |m, o, a| nn::unload(m, o, a[0]) },
    HostFunction {
        name: "finalize_execution_context",
        arity: 1,
        call: |m, o, a| nn::finalize_execution_context(m, o, a[0]),
    },
];

/// Run one host function and turn its outcome into the guest's error code. Nothing unwinds
/// past this point: a panic becomes RuntimeError and a log line.
fn dispatch(f: &HostFunction, owner: Owner, memory: Option<FrameMemory>, args: &[u32]) -> Errno {
    let outcome = catch_unwind(AssertUnwindSafe(|| match memory {
        Some(mut m) => (f.call)(&mut m, owner, args),
        None => Err(NnError::new(Errno::MissingMemory, "the guest exports no memory")),
    }));
    match outcome {
        Ok(Ok(())) => Errno::Success,
        Ok(Err(e)) => {
            match e.errno {
                // The end of a stream: how every stream ends, not a failure.
                Errno::EndOfSequence => log::debug!("{}: {}", f.name, e.message),
                _ => log::error!("{}({args:?}) failed with {:?}: {}", f.name, e.errno, e.message),
            }
            e.errno
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!("{}({args:?}): internal error (a bug; please report it): {what}", f.name);
            Errno::RuntimeError
        }
    }
}

/// What one module instance's host functions point to: its owner number and, per function,
/// the table entry. Freed by the instance's finalizer.
struct Instance {
    owner: Owner,
    calls: Vec<BoundCall>,
}

struct BoundCall {
    owner: Owner,
    function: &'static HostFunction,
}

/// The trampoline WasmEdge calls for every host function; `data` is a `BoundCall`.
unsafe extern "C" fn host_call(
    data: *mut c_void,
    frame: *const WasmEdge_CallingFrameContext,
    params: *const WasmEdge_Value,
    returns: *mut WasmEdge_Value,
) -> WasmEdge_Result {
    // SAFETY: `data` points into the `Instance` of the module this function belongs to,
    // which lives until that module's finalizer, after its last call.
    let bound = unsafe { &*(data as *const BoundCall) };
    let f = bound.function;
    let mut args = [0u32; MAX_ARITY];
    for (i, a) in args.iter_mut().enumerate().take(f.arity) {
        // SAFETY: WasmEdge passes as many parameters as the function type declares (f.arity).
        *a = unsafe { WasmEdge_ValueGetI32(*params.add(i)) } as u32;
    }
    // SAFETY: `frame` is this call's calling frame.
    let memory = unsafe { FrameMemory::of_frame(frame) };
    let errno = dispatch(f, bound.owner, memory, &args[..f.arity]);
    // SAFETY: the function type declares one i32 result.
    unsafe { *returns = WasmEdge_ValueGenI32(errno as i32) };
    WasmEdge_Result { Code: 0 }
}

/// Runs when WasmEdge deletes a module instance: the guest is gone, so is what it made.
unsafe extern "C" fn finalize_instance(data: *mut c_void) {
    if data.is_null() {
        return;
    }
    // SAFETY: `data` is the Box<Instance> leaked in `create_module`, finalized once.
    let instance = unsafe { Box::from_raw(data as *mut Instance) };
    let owner = instance.owner;
    if catch_unwind(|| nn::release(owner)).is_err() {
        eprintln!("wasmedge-nn: failed to release the resources of guest instance {owner}");
    }
}

/// The process's own command line (what WasmEdge was started with).
fn command_line() -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStringExt;
    match std::fs::read("/proc/self/cmdline") {
        Ok(raw) => {
            raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| std::ffi::OsString::from_vec(a.to_vec())).collect()
        }
        Err(_) => std::env::args_os().collect(),
    }
}

unsafe extern "C" fn create_module(_: *const WasmEdge_ModuleDescriptor) -> *mut WasmEdge_ModuleInstanceContext {
    static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);
    let made = catch_unwind(|| {
        logging::init();
        let d = descriptor();
        let [contexts, workers, graphs, ctx_size, input_mib, swap_mib, slots, deterministic] =
            d.caps.map(|c| d.option_u32(c));
        let given = limits::Given { contexts, workers, graphs, ctx_size, input_mib, swap_mib, slots, deterministic };
        limits::set(limits::Limits::resolve(given));
        prompt_cache::configure(d.string_option(d.prompt_cache), d.option_u32(d.prompt_cache_mib));
        rpc_servers::configure(d.string_option(d.rpc_servers));
        nn::init(crate::backend::builtin(), || {
            let args = command_line();
            let mut values = preload::values_from_args(args.clone());
            values.extend(preload::values_from_env());
            let preloads = preload::collect(values, d.string_option(d.preload));
            // Files a guest names must be in its --dir directories (or be preloaded models).
            let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
            let dirs = confine::dirs_from(&args);
            confine::set(confine::Confinement::new(
                dirs.iter().map(String::as_str),
                preloads.iter().map(|p| p.path.as_path()),
            ));
            preloads
        });
        let owner = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
        let instance = Box::new(Instance {
            owner,
            calls: FUNCTIONS.iter().map(|function| BoundCall { owner, function }).collect(),
        });
        // SAFETY: plain C API calls with valid arguments; WasmEdge copies the names. The
        // function data pointers point into `instance`, whose heap block does not move and is
        // freed by `finalize_instance` when WasmEdge deletes the module.
        unsafe {
            let calls = instance.calls.as_ptr();
            let module = WasmEdge_ModuleInstanceCreateWithData(
                wasmedge_str(INSTANCE_NAME),
                Box::into_raw(instance).cast(),
                Some(finalize_instance),
            );
            let i32t = WasmEdge_ValTypeGenI32();
            let params = [i32t; MAX_ARITY];
            for (i, f) in FUNCTIONS.iter().enumerate() {
                let ty = WasmEdge_FunctionTypeCreate(params.as_ptr(), f.arity as u32, &i32t, 1);
                let func = WasmEdge_FunctionInstanceCreate(ty, Some(host_call), calls.add(i) as *mut c_void, 0);
                WasmEdge_FunctionTypeDelete(ty);
                WasmEdge_ModuleInstanceAddFunction(module, wasmedge_str(f.name), func);
            }
            log::debug!("guest instance {owner}: wasi_ephemeral_nn module created");
            module
        }
    });
    made.unwrap_or_else(|_| {
        eprintln!("wasmedge-nn: cannot create the wasi_ephemeral_nn module");
        std::ptr::null_mut()
    })
}

/// The descriptor and what it points to, made once and never freed.
struct Descriptor {
    plugin: WasmEdge_PluginDescriptor,
    preload: *mut WasmEdge_String,
    /// Storage of the UInt32 options, in the order of [`CAPS`].
    caps: [*mut u32; 8],
    /// `--nn-prompt-cache DIR` and `--nn-prompt-cache-mib N`.
    prompt_cache: *mut WasmEdge_String,
    prompt_cache_mib: *mut u32,
    /// `--nn-rpc-servers host:port,...`.
    rpc_servers: *mut WasmEdge_String,
}

/// The cap options: name and description (NUL-terminated), in the order of `limits::Given`.
const CAPS: [(&[u8], &[u8]); 8] = [
    (b"nn-max-contexts\0", b"Most WASI-NN execution contexts open at once (default 65536)\0"),
    (b"nn-max-workers\0", b"Most Whisper transcriptions streaming at once (default 16)\0"),
    (b"nn-max-graphs\0", b"Most WASI-NN graphs loaded with load at once (default 16)\0"),
    (b"nn-max-ctx-size\0", b"Largest ctx-size a guest may ask for (default 131072)\0"),
    (b"nn-max-input-mib\0", b"Largest input tensor in MiB (default 512)\0"),
    (b"nn-max-swap-mib\0", b"Most MiB of saved KV per model engine for idle WASI-NN contexts (default 256)\0"),
    (b"nn-slots\0", b"Sequences one model's engine decodes together, each a ctx-size of KV (default 4)\0"),
    (b"nn-deterministic\0", b"1: decode each sequence alone, so no output depends on what else runs (default 0)\0"),
];
// SAFETY: written once inside OnceLock::get_or_init; WasmEdge writes the option storage
// while parsing the command line, before any module (and so any reader) exists.
unsafe impl Send for Descriptor {}
unsafe impl Sync for Descriptor {}

impl Descriptor {
    /// The value WasmEdge stored for a String option (for `--nn-preload`, its last
    /// occurrence).
    fn string_option(&self, storage: *mut WasmEdge_String) -> Option<String> {
        // SAFETY: `storage` is one of the leaked option storages of this descriptor; WasmEdge
        // stores a string that lives as long as its option parser (the whole process for the
        // CLI).
        let s = unsafe { *storage };
        if s.Buf.is_null() || s.Length == 0 {
            return None;
        }
        // SAFETY: WasmEdge's string is `Length` bytes at `Buf`.
        let bytes = unsafe { std::slice::from_raw_parts(s.Buf.cast::<u8>(), s.Length as usize) };
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    /// The value WasmEdge stored for a UInt32 option (0 when not given).
    fn option_u32(&self, storage: *mut u32) -> u32 {
        // SAFETY: `storage` is one of the leaked option storages of this descriptor.
        unsafe { storage.read() }
    }
}

/// The C API version WasmEdge demands, which must match exactly: 0.14.0 wants 3,
/// 0.14.1 to 0.16 want 4, 0.17 wants 5. The loaded libwasmedge tells its version.
fn api_version() -> u32 {
    // SAFETY: plain getters of the process's libwasmedge.
    let (major, minor, patch) =
        unsafe { (WasmEdge_VersionGetMajor(), WasmEdge_VersionGetMinor(), WasmEdge_VersionGetPatch()) };
    match (major, minor, patch) {
        (0, 14, 0) => 3,
        (0, 14, _) | (0, 15, _) | (0, 16, _) => 4,
        (0, 17, _) => 5,
        _ => {
            eprintln!(
                "wasmedge-nn: WasmEdge {major}.{minor}.{patch} is not supported (0.14.0 to 0.17.x are); \
                 the plugin will not be loaded"
            );
            u32::MAX
        }
    }
}

fn descriptor() -> &'static Descriptor {
    static DESCRIPTOR: OnceLock<Descriptor> = OnceLock::new();
    DESCRIPTOR.get_or_init(|| {
        static EMPTY: &[u8] = b"\0";
        let default: &'static WasmEdge_String =
            Box::leak(Box::new(WasmEdge_String { Length: 0, Buf: EMPTY.as_ptr() as *const c_char }));
        let preload: *mut WasmEdge_String = Box::leak(Box::new(WasmEdge_String { Length: 0, Buf: std::ptr::null() }));
        let prompt_cache: *mut WasmEdge_String =
            Box::leak(Box::new(WasmEdge_String { Length: 0, Buf: std::ptr::null() }));
        let caps: [*mut u32; 8] = std::array::from_fn(|_| Box::leak(Box::new(0u32)) as *mut u32);
        let prompt_cache_mib: *mut u32 = Box::leak(Box::new(0u32));
        let rpc_servers: *mut WasmEdge_String =
            Box::leak(Box::new(WasmEdge_String { Length: 0, Buf: std::ptr::null() }));
        static ZERO: u32 = 0;
        let mut list = vec![
            WasmEdge_ProgramOption {
                Name: c"nn-preload".as_ptr(),
                Description: c"Preload a model: NAME:ENCODING:TARGET:PATH[#sha256=HEX] (repeatable)".as_ptr(),
                Type: WasmEdge_ProgramOptionType_String,
                Storage: preload.cast(),
                DefaultValue: (default as *const WasmEdge_String).cast(),
            },
            WasmEdge_ProgramOption {
                Name: c"nn-prompt-cache".as_ptr(),
                Description: c"Directory where evaluated prompts' KV is kept for later processes (off by default)"
                    .as_ptr(),
                Type: WasmEdge_ProgramOptionType_String,
                Storage: prompt_cache.cast(),
                DefaultValue: (default as *const WasmEdge_String).cast(),
            },
            WasmEdge_ProgramOption {
                Name: c"nn-prompt-cache-mib".as_ptr(),
                Description: c"Most MiB the prompt cache directory holds; least recently used go first (default 2048)"
                    .as_ptr(),
                Type: WasmEdge_ProgramOptionType_UInt32,
                Storage: prompt_cache_mib.cast(),
                DefaultValue: (&ZERO as *const u32).cast(),
            },
            WasmEdge_ProgramOption {
                Name: c"nn-rpc-servers".as_ptr(),
                Description:
                    c"rpc-server workers (host:port,...) that GGML models' layers are spread over (none by default)"
                        .as_ptr(),
                Type: WasmEdge_ProgramOptionType_String,
                Storage: rpc_servers.cast(),
                DefaultValue: (default as *const WasmEdge_String).cast(),
            },
        ];
        for ((name, description), storage) in CAPS.iter().zip(caps) {
            list.push(WasmEdge_ProgramOption {
                Name: name.as_ptr().cast(),
                Description: description.as_ptr().cast(),
                Type: WasmEdge_ProgramOptionType_UInt32,
                Storage: storage.cast(),
                DefaultValue: (&ZERO as *const u32).cast(),
            });
        }
        let options: &'static mut [WasmEdge_ProgramOption] = list.leak();
        let modules = Box::leak(Box::new([WasmEdge_ModuleDescriptor {
            Name: MODULE_NAME.as_ptr().cast(),
            Description: c"WASI-NN: GGUF language models through llama.cpp".as_ptr(),
            Create: Some(create_module),
        }]));
        let version = env!("CARGO_PKG_VERSION").split('.').map(|n| n.parse().unwrap_or(0)).collect::<Vec<u32>>();
        Descriptor {
            plugin: WasmEdge_PluginDescriptor {
                Name: PLUGIN_NAME.as_ptr().cast(),
                Description: c"WASI-NN in Rust (wasmedge-nn)".as_ptr(),
                APIVersion: api_version(),
                Version: WasmEdge_PluginVersionData {
                    Major: version[0],
                    Minor: version[1],
                    Patch: version[2],
                    Build: 0,
                },
                ModuleCount: 1,
                ProgramOptionCount: options.len() as u32,
                ModuleDescriptions: modules.as_mut_ptr(),
                ProgramOptions: options.as_mut_ptr(),
            },
            preload,
            caps,
            prompt_cache,
            prompt_cache_mib,
            rpc_servers,
        }
    })
}

/// The entry point WasmEdge looks up with dlsym() when it loads a plugin library. It may be
/// called more than once; it always returns the same descriptor.
#[no_mangle]
pub extern "C" fn WasmEdge_Plugin_GetDescriptor() -> *const WasmEdge_PluginDescriptor {
    catch_unwind(|| &descriptor().plugin as *const _).unwrap_or(std::ptr::null())
}
