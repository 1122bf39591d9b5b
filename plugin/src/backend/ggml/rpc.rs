//! Models split across machines with ggml's RPC backend: each `rpc-server` (this crate's
//! `src/bin/rpc_server.rs`, installed in the companion folder) serves its machine's CPU as a
//! device, and llama.cpp spreads a model's offloaded layers (`n-gpu-layers`) over those
//! devices, by their free memory, as it spreads them over GPUs.
//!
//! The backend's code is llama.cpp's own, from the sources llama-cpp-sys-2 vendors, patched
//! (the `wasmedge-nn-ggml-rpc` crate, ggml-rpc/) in one respect: where the stock client
//! aborts the process (a server it cannot reach, a connection that breaks), the patched one
//! marks the endpoint
//! failed, completes what was waiting on it with zeros, and counts the failure with its
//! reason. [`Watch`] reads those counts after each computation of a model that uses RPC
//! devices: a change fails the computation, and every later one of that model, with the
//! reason. A later load connects again.

use super::native_log;
use crate::error::{NnError, NnResult};
use llama_cpp_sys_2 as sys;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;
use wasmedge_nn_ggml_rpc::failures;

/// How long a server may take to accept a connection before a load gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The RPC endpoints a model's layers live on, with each one's failure count when it was
/// loaded.
#[derive(Debug)]
pub struct Watch {
    endpoints: Vec<(CString, u64)>,
}

impl Watch {
    /// Whether every endpoint the model uses has kept its connection since the load.
    pub fn check(&self) -> NnResult<()> {
        for (endpoint, at_load) in &self.endpoints {
            let (count, why) = failures(endpoint);
            if count != *at_load {
                return Err(NnError::runtime(format!(
                    "rpc server {}: {why}; the model's layers there are lost, so this model cannot compute \
                     any more: restart rpc-server there and load the model again",
                    endpoint.to_string_lossy()
                )));
            }
        }
        Ok(())
    }
}

/// Where a model loads when the host named RPC servers: ggml's device indices (this machine's
/// GPUs, then each server's devices, in the order given), and what to watch.
pub struct Placement {
    pub devices: Vec<usize>,
    pub watch: Watch,
}

/// The RPC devices registered with ggml so far, by endpoint (ggml cannot unregister a device,
/// so each endpoint's are registered once, when it is first reached).
static REGISTERED: Mutex<Vec<(String, Vec<Device>)>> = Mutex::new(Vec::new());

/// A ggml device registered by [`placement`].
#[derive(Clone, Copy, PartialEq, Eq)]
struct Device(sys::ggml_backend_dev_t);
// SAFETY: ggml's devices are never freed, and ggml uses them from any thread.
unsafe impl Send for Device {}

/// The placement for a model load, or None when the host named no RPC servers. Fails, saying
/// which and why, when a server cannot be reached: a model is never placed otherwise than the
/// host asked.
pub fn placement() -> NnResult<Option<Placement>> {
    let servers = crate::rpc_servers::list();
    if servers.is_empty() {
        return Ok(None);
    }
    let mut registered = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    let mut rpc_devices = Vec::new();
    let mut endpoints = Vec::new();
    for endpoint in servers {
        probe(endpoint)?;
        let c_endpoint = CString::new(endpoint.as_str())
            .map_err(|_| NnError::invalid_argument(format!("rpc server '{endpoint}' has a NUL byte")))?;
        let (before, _) = failures(&c_endpoint);
        let devices = match registered.iter().find(|(e, _)| e == endpoint) {
            Some((_, devices)) => devices.clone(),
            None => {
                let Some(reg) = wasmedge_nn_ggml_rpc::add_server(&c_endpoint) else {
                    let (_, why) = failures(&c_endpoint);
                    return Err(unreachable(endpoint, if why.is_empty() { "it has no devices".into() } else { why }));
                };
                // SAFETY: `reg` is a live registry entry, never freed by ggml; registering it
                // makes its devices ggml devices (as llama.cpp's --rpc does).
                let devices: Vec<_> = unsafe {
                    sys::ggml_backend_register(reg);
                    (0..sys::ggml_backend_reg_dev_count(reg))
                        .map(|i| Device(sys::ggml_backend_reg_dev_get(reg, i)))
                        .collect()
                };
                for &dev in &devices {
                    log::info!("rpc server {endpoint}: device {}", device_name(dev.0));
                }
                registered.push((endpoint.clone(), devices.clone()));
                devices
            }
        };
        rpc_devices.extend(devices);
        endpoints.push((c_endpoint, before));
    }
    // ggml's device list: this machine's GPUs keep their place before the servers' devices.
    let mut indices = Vec::new();
    let mut rpc_indices = vec![None; rpc_devices.len()];
    // SAFETY: plain getters over ggml's device registry.
    unsafe {
        for i in 0..sys::ggml_backend_dev_count() {
            let dev = Device(sys::ggml_backend_dev_get(i));
            let is_rpc = registered.iter().any(|(_, d)| d.contains(&dev));
            if let Some(at) = rpc_devices.iter().position(|&d| d == dev) {
                rpc_indices[at] = Some(i);
            } else if !is_rpc && sys::ggml_backend_dev_type(dev.0) == sys::GGML_BACKEND_DEVICE_TYPE_GPU {
                indices.push(i);
            }
        }
    }
    indices.extend(rpc_indices.into_iter().flatten());
    Ok(Some(Placement { devices: indices, watch: Watch { endpoints } }))
}

/// Whether something accepts connections at `endpoint`, within [`CONNECT_TIMEOUT`]: ggml's own
/// connect has no time limit (a host that is gone would hold the load for minutes).
fn probe(endpoint: &str) -> NnResult<()> {
    let addrs = endpoint.to_socket_addrs().map_err(|e| unreachable(endpoint, format!("cannot resolve it ({e})")))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(unreachable(endpoint, last.map_or("no address".into(), |e| e.to_string())))
}

fn unreachable(endpoint: &str, why: String) -> NnError {
    NnError::runtime(format!(
        "rpc server {endpoint} cannot be reached: {why}; start rpc-server there (it is in the plugin's \
         wasmedge-nn/ folder) or fix --nn-rpc-servers / {}",
        crate::rpc_servers::ENV
    ))
}

fn device_name(dev: sys::ggml_backend_dev_t) -> String {
    // SAFETY: a live device; ggml returns NUL-terminated strings it owns.
    unsafe {
        let name = CStr::from_ptr(sys::ggml_backend_dev_name(dev)).to_string_lossy();
        let description = CStr::from_ptr(sys::ggml_backend_dev_description(dev)).to_string_lossy();
        format!("{name} ({description})")
    }
}

/// Runs `load` (a model load) and says, at info level, which layers went to which device, as
/// llama.cpp decided them: its debug lines "layer N assigned to device D", gathered on this
/// thread whatever the log level.
pub fn log_placement<R>(what: &str, load: impl FnOnce() -> R) -> R {
    let (result, lines) = native_log::gather("load_tensors: layer", load);
    let mut runs: Vec<(String, usize, usize)> = Vec::new();
    for line in lines {
        let parsed = line
            .strip_prefix("load_tensors: layer")
            .and_then(|rest| rest.split_once(" assigned to device "))
            .and_then(|(layer, rest)| Some((layer.trim().parse::<usize>().ok()?, rest.split(',').next()?.trim())));
        let Some((layer, device)) = parsed else { continue };
        match runs.last_mut() {
            Some((d, _, last)) if d == device && *last + 1 == layer => *last = layer,
            _ => runs.push((device.to_string(), layer, layer)),
        }
    }
    let names = device_names();
    let text: Vec<String> = runs
        .iter()
        .map(|(device, first, last)| {
            let device = names.get(device).cloned().unwrap_or_else(|| device.clone());
            if first == last {
                format!("layer {first} on {device}")
            } else {
                format!("layers {first}-{last} on {device}")
            }
        })
        .collect();
    if !text.is_empty() {
        log::info!("{what}: {}", text.join(", "));
    }
    result
}

/// ggml's device names, with their descriptions (an RPC device's is its server's address).
fn device_names() -> HashMap<String, String> {
    // SAFETY: plain getters over ggml's device registry.
    unsafe {
        (0..sys::ggml_backend_dev_count())
            .map(|i| {
                let dev = sys::ggml_backend_dev_get(i);
                (CStr::from_ptr(sys::ggml_backend_dev_name(dev)).to_string_lossy().into_owned(), device_name(dev))
            })
            .collect()
    }
}

/// Serve this machine's CPU to RPC clients at `endpoint` (host:port), with `threads` threads;
/// `cache_dir` keeps large tensors a client sent before, so that a restarted client sends
/// only their hashes. Loads the best CPU backend from `backends_dir` first (portable build). Returns only when
/// the server cannot start.
pub fn serve(endpoint: &str, backends_dir: &std::path::Path, threads: usize, cache_dir: Option<&str>) -> NnResult<()> {
    super::backends::load(Some(backends_dir))?;
    let endpoint = CString::new(endpoint).map_err(|_| NnError::invalid_argument("a NUL byte in the endpoint"))?;
    let cache =
        cache_dir.map(CString::new).transpose().map_err(|_| NnError::invalid_argument("a NUL byte in the cache"))?;
    // SAFETY: a getter over ggml's registry, after the CPU backend was loaded.
    let cpu = unsafe { sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU) };
    if cpu.is_null() {
        return Err(NnError::runtime("ggml has no CPU device"));
    }
    // SAFETY: a live device from ggml's registry; the server runs until the process ends, or
    // returns when it cannot listen.
    unsafe { wasmedge_nn_ggml_rpc::start_server(&endpoint, cache.as_ref(), threads, cpu) };
    Err(NnError::runtime(format!(
        "rpc-server cannot listen at {} (a port in use, or an address not of this machine)",
        endpoint.to_string_lossy()
    )))
}
