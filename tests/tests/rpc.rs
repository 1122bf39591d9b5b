//! Models split across machines with ggml's RPC backend: two `rpc-server` workers (the one
//! installed beside the plugin) on 127.0.0.1, a model's layers spread over them and the
//! local CPU by `--nn-rpc-servers`, driven by the `split` guest.

use e2e::rpc::{self, RpcServer};
use e2e::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The `split` guest running in `wasmedge`: its stdout lines as they come, its stdin to ask
/// for another attempt.
struct SplitGuest {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl SplitGuest {
    fn start(host_args: &[&str], model_file: &str, load_config: &str, prompt: &str, n_predict: usize) -> Self {
        let preload = ggml_preload("default", model_file);
        let mut child = wasmedge_command()
            .current_dir(root())
            .env("WASMEDGE_PLUGIN_PATH", plugin_dir())
            .env("WASMEDGE_NN_LOG", "info")
            .args(["--dir", ".:.", "--nn-preload", &preload])
            .args(host_args)
            .arg(guest("split"))
            .args(["default", load_config, prompt, &n_predict.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wasmedge");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        SplitGuest { stdin: child.stdin.take(), child, lines, stderr }
    }

    /// The next line, within `limit` (a bound against hangs, not a timing goal).
    fn line(&self, limit: Duration) -> String {
        self.lines.recv_timeout(limit).unwrap_or_else(|_| panic!("no line from the guest within {limit:?}"))
    }

    /// One attempt's outcome: its tokens, and how it ended (`end`, `compute-error: ...`,
    /// `load-error: ...`), read up to the guest's `ready`.
    fn attempt(&self, limit: Duration) -> (Vec<Vec<u8>>, String) {
        let mut tokens = Vec::new();
        loop {
            let line = self.line(limit);
            if let Some(token) = line.strip_prefix("token: ") {
                tokens.push(unhex(token));
            } else {
                assert_eq!(self.line(limit), "ready", "after {line}");
                return (tokens, line);
            }
        }
    }

    /// Another attempt, generating `n_predict` tokens.
    fn again(&mut self, n_predict: usize) {
        writeln!(self.stdin.as_mut().unwrap(), "again {n_predict}").unwrap();
    }

    /// Close stdin (the guest ends) and return the exit status and the host's log.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let log = self.stderr.join().unwrap();
        (status, log)
    }
}

const LONG: Duration = Duration::from_secs(120);

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

/// The prompt the split guest makes of a question.
fn split_prompt(question: &str) -> String {
    format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

/// One attempt of the split guest, alone: (tokens, how it ended, the host's log).
fn one_attempt(
    host_args: &[&str],
    model_file: &str,
    config: &str,
    prompt: &str,
    n: usize,
) -> (Vec<Vec<u8>>, String, String) {
    let guest = SplitGuest::start(host_args, model_file, config, prompt, n);
    let (tokens, end) = guest.attempt(LONG);
    let (status, log) = guest.finish();
    assert!(status.success(), "wasmedge failed: {status}\n{log}");
    (tokens, end, log)
}

#[test]
fn a_model_split_over_two_servers_and_the_cpu_answers_as_native_llama_cpp_split_so() {
    let (a, b) = (RpcServer::start(), RpcServer::start());
    let servers = [a.endpoint(), b.endpoint()];
    let question = "Write a poem about the sea.";
    let n = 64;
    // (model, layers in all with the output layer, layers offloaded)
    for (model, layers, offloaded) in [(SMOLLM2, 31, 20), (GEMMA3, 19, 12)] {
        let config = format!(r#"{{"n-gpu-layers": {offloaded}}}"#);
        let (split, end, log) = one_attempt(&["--nn-rpc-servers", &servers.join(",")], model, &config, question, n);
        assert_eq!(end, "end", "{log}");
        // llama.cpp's placement: the last n-gpu-layers layers, spread evenly over the two
        // servers (equal free memory), the rest on this machine's CPU; the log says so.
        let first_remote = layers - offloaded;
        let half = first_remote + offloaded / 2;
        assert_log_says(
            &log,
            &[
                &format!("layers 0-{} on CPU (", first_remote - 1),
                &format!("layers {first_remote}-{} on RPC", half - 1),
                &format!("({}), layers {half}-{} on RPC", servers[0], layers - 1),
                &format!("({})", servers[1]),
            ],
        );
        // Native llama.cpp with the same split: the same tokens.
        let path = root().join(e2e::model(model));
        let (native, count) =
            rpc::native_generate_split(&path, &servers, offloaded, &split_prompt(question), n, 4096, 2);
        assert_eq!(count, split.len(), "{model}: token count, native vs plugin");
        assert_eq!(split.concat(), native, "{model}: split over RPC servers, plugin vs native llama.cpp");
        // And the model alone on this machine: the same tokens unless this CPU repacks weights
        // locally. ggml's CPU backend on the far side of the socket gets plain buffers, so
        // weights repacked here (CPU_REPACK: some of Gemma's Q4_K on AVX2 and AVX-512; AMX:
        // Q4_1, Q4_K and others on CPUs with AMX) are computed with other kernels than there,
        // which can turn a near tie. llama.cpp's log names each model buffer it made.
        let (alone, _, alone_log) = one_attempt(&[], model, &config, question, n);
        let repacked = repacked_buffers(&alone_log);
        if split == alone {
            eprintln!("{model}: split over RPC servers = alone on this machine (repacked buffers: {repacked:?})");
        } else {
            let at = split.iter().zip(&alone).position(|(x, y)| x != y).unwrap_or(split.len().min(alone.len()));
            eprintln!("{model}: split over RPC servers differs from alone on this machine from token {at} (repacked buffers: {repacked:?})");
            assert!(
                !repacked.is_empty(),
                "{model}: no weights are repacked on this machine, so the split must equal the model alone\n{alone_log}"
            );
        }
    }
}

/// The model buffers llama.cpp made with a repacked layout (`load_tensors: AMX model buffer
/// size = ...`): every kind but plain CPU memory and the mapped file.
fn repacked_buffers(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| Some(line.split_once("load_tensors:")?.1.split_once(" model buffer size")?.0))
        .map(str::trim)
        .filter(|kind| !matches!(*kind, "CPU" | "CPU_Mapped"))
        .map(String::from)
        .collect()
}

#[test]
fn a_server_lost_mid_stream_fails_that_stream_and_a_later_load_recovers() {
    let a = RpcServer::start();
    let mut b = RpcServer::start();
    let servers = format!("{},{}", a.endpoint(), b.endpoint());
    let config = r#"{"n-gpu-layers": 20}"#;
    let prompt = "Tell me a long story about a lighthouse keeper.";
    // What the split answers with both servers up (not the model alone: on a CPU that
    // repacks weights locally the two can differ, see above).
    let (before, end, log) = one_attempt(&["--nn-rpc-servers", &servers], SMOLLM2, config, prompt, 48);
    assert_eq!(end, "end", "{log}");
    assert!(!before.is_empty(), "{log}");

    let mut guest = SplitGuest::start(&["--nn-rpc-servers", &servers], SMOLLM2, config, prompt, 2000);
    // Stream a few tokens, then stop one server without warning.
    for _ in 0..5 {
        let line = guest.line(LONG);
        assert!(line.starts_with("token: "), "{line}");
    }
    b.kill();
    let killed = Instant::now();
    let (_, end) = guest.attempt(LONG);
    let bound = killed.elapsed();
    assert_eq!(end, "compute-error: BackendError(RuntimeError)");
    assert!(bound < Duration::from_secs(60), "the failure took {bound:?}");

    // The host keeps answering: the model is loaded again, and the lost server named.
    guest.again(48);
    let (tokens, end) = guest.attempt(LONG);
    assert!(tokens.is_empty());
    assert_eq!(end, "load-error: BackendError(RuntimeError)");

    // The server is back: a load connects again and answers as before the loss.
    let b2 = RpcServer::on(b.port);
    guest.again(48);
    let (tokens, end) = guest.attempt(LONG);
    assert_eq!(end, "end");
    assert_eq!(tokens, before, "after the server came back");
    let (status, log) = guest.finish();
    assert!(status.success(), "wasmedge: {status}\n{log}");
    assert_log_says(
        &log,
        &[
            // the stream's failure, said once by default
            &format!(
                "compute_single([1]) failed with RuntimeError: rpc server {}: the connection was lost",
                b2.endpoint()
            ),
            "the model's layers there are lost",
            // the load while it was down
            &format!("rpc server {} cannot be reached: Connection refused", b2.endpoint()),
            "start rpc-server there",
        ],
    );
    drop(a);
}
