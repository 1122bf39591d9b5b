//! ggml's RPC workers for the tests and benchmarks: the `rpc-server` installed beside the
//! plugin, on 127.0.0.1; and the native reference with a model's layers on them.

use llama_cpp_2::model::params::LlamaModelParams;
use std::ffi::CString;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An rpc-server on 127.0.0.1, stopped when dropped.
pub struct RpcServer {
    child: Child,
    pub port: u16,
}

impl RpcServer {
    /// A server on a free port.
    pub fn start() -> Self {
        // A port free now, bound by the server a moment later: should another process take
        // it meanwhile, the server exits and another port is tried.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            if let Some(server) = Self::try_on(port) {
                return server;
            }
        }
        panic!("rpc-server could not listen on any of 5 free ports");
    }

    /// A server on `port` (one whose server was stopped, say).
    pub fn on(port: u16) -> Self {
        Self::try_on(port).unwrap_or_else(|| panic!("rpc-server on port {port} exited"))
    }

    fn try_on(port: u16) -> Option<Self> {
        let bin = crate::plugin_dir().join("wasmedge-nn/rpc-server");
        assert!(bin.is_file(), "{} is missing: scripts/plugin-files.sh installs it", bin.display());
        let child = Command::new(&bin)
            .env_remove("LD_LIBRARY_PATH")
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--threads", "2"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start rpc-server");
        let mut server = RpcServer { child, port };
        // Listening once a connection is accepted (the server takes the next client when
        // this one closes).
        let until = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if server.child.try_wait().unwrap().is_some() {
                return None;
            }
            assert!(Instant::now() < until, "rpc-server on port {port} does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Greedy generation by llama-cpp-2 called natively, the model's last `n_gpu_layers` layers
/// spread over `servers` as llama.cpp's `--rpc` does (each server's devices registered with
/// ggml, then given to the load), and the rest on this process's CPU. The connections close
/// when the model is dropped, at the end (a server takes one client at a time).
pub fn native_generate_split(
    model: &Path,
    servers: &[String],
    n_gpu_layers: u32,
    prompt: &str,
    n_predict: usize,
    ctx_size: u32,
    threads: i32,
) -> (Vec<u8>, usize) {
    crate::native::backend();
    // Each server's devices are registered once per process (ggml keeps them).
    static REGISTERED: Mutex<Vec<(String, Vec<usize>)>> = Mutex::new(Vec::new());
    let mut registered = REGISTERED.lock().unwrap();
    let mut devices = Vec::new();
    for server in servers {
        if let Some((_, known)) = registered.iter().find(|(s, _)| s == server) {
            devices.extend(known);
            continue;
        }
        let endpoint = CString::new(server.as_str()).unwrap();
        let reg = wasmedge_nn_ggml_rpc::add_server(&endpoint)
            .unwrap_or_else(|| panic!("rpc server {server}: {}", wasmedge_nn_ggml_rpc::failures(&endpoint).1));
        let mut these = Vec::new();
        // SAFETY: a live registry entry (never freed); registering makes its devices ggml's, at
        // the end of ggml's list, where they are found by address.
        unsafe {
            llama_cpp_sys_2::ggml_backend_register(reg);
            for d in 0..llama_cpp_sys_2::ggml_backend_reg_dev_count(reg) {
                let dev = llama_cpp_sys_2::ggml_backend_reg_dev_get(reg, d);
                let index = (0..llama_cpp_sys_2::ggml_backend_dev_count())
                    .find(|&i| llama_cpp_sys_2::ggml_backend_dev_get(i) == dev)
                    .expect("a registered device");
                these.push(index);
            }
        }
        devices.extend(&these);
        registered.push((server.clone(), these));
    }
    drop(registered);
    let params = LlamaModelParams::default().with_n_gpu_layers(n_gpu_layers).with_devices(&devices).unwrap();
    crate::native::generate_with(model, &params, prompt, n_predict, ctx_size, threads)
}
