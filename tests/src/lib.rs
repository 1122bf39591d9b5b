//! Helpers for the end-to-end tests: where things are, running the real `wasmedge` CLI with
//! the plugin and the guests, and the native llama-cpp-2 reference.
//!
//! `scripts/test.sh` builds everything and sets the paths below; run the tests through it.
//! ggml's worker threads spin, so tests that run models must not overlap: run them with
//! `--test-threads=1` (the script does).

pub mod native;
pub mod rpc;
pub mod speed;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    // Cargo sets CARGO_MANIFEST_DIR when it runs a test, too: that is the clone being tested.
    // The value compiled in is where this library was built, which a build cache shared by
    // clones at other paths can keep.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().unwrap().to_path_buf()
}

pub fn var_path(name: &str) -> PathBuf {
    std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which builds and sets everything")
    })
}

/// The `wasmedge` CLI: `WASMEDGE_BIN` when set (scripts/test.sh runs the CLI tests a second
/// time that way, against WasmEdge 0.17), else the project's WasmEdge.
pub fn wasmedge_bin() -> PathBuf {
    std::env::var_os("WASMEDGE_BIN").map_or_else(|| wasmedge_prefix().join("bin/wasmedge"), PathBuf::from)
}

/// The project's WasmEdge installation (scripts/install-wasmedge.sh).
pub fn wasmedge_prefix() -> PathBuf {
    var_path("WASMEDGE_PREFIX")
}

/// The prefix of another WasmEdge that the plugin supports, installed by
/// `scripts/install-wasmedge.sh VERSION` (scripts/test.sh installs 0.17.1).
pub fn other_wasmedge(version: &str) -> PathBuf {
    let p = var_path("NN_CACHE").join(format!("wasmedge-{version}"));
    assert!(
        p.join("bin/wasmedge").is_file(),
        "WasmEdge {version} is missing: run scripts/install-wasmedge.sh {version} (scripts/test.sh does)"
    );
    p
}

/// The folder holding only the plugin (given to WasmEdge as WASMEDGE_PLUGIN_PATH).
pub fn plugin_dir() -> PathBuf {
    var_path("PLUGIN_DIR")
}

/// A guest program built for wasm32-wasip1, by name (`chat`, `stream`, `nn-probe`).
pub fn guest(name: &str) -> PathBuf {
    let p = var_path("GUEST_DIR").join(format!("{name}.wasm"));
    assert!(p.is_file(), "{} is missing: build the guests (scripts/test.sh does)", p.display());
    p
}

/// Require each of `says` in the host's log (stderr).
pub fn assert_log_says(log: &str, says: &[&str]) {
    for said in says {
        assert!(log.contains(said), "the log should say \"{said}\":\n{log}");
    }
}

/// A model under test-models/, as a path relative to the repository root (the CLI runs there).
pub fn model(file: &str) -> String {
    let rel = format!("test-models/{file}");
    assert!(root().join(&rel).is_file(), "{rel} is missing: run scripts/fetch-models.sh");
    rel
}

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";
pub const WHISPER_TINY_EN: &str = "ggml-tiny.en.bin";
/// The committed speech samples (test-models/speech/README.md has their texts).
pub const SPEECH: &str = "test-models/speech";

/// Run `wasmedge` with the plugin, from the repository root, with `--dir .:.`, the given
/// preloads (`NAME:ENCODING:TARGET:PATH`), the guest and its arguments.
pub fn run_guest(preloads: &[String], guest_name: &str, args: &[&str]) -> Output {
    run_guest_with_env(&[], preloads, guest_name, args)
}

/// [`run_guest`] with extra environment variables for the host.
pub fn run_guest_with_env(env: &[(&str, &str)], preloads: &[String], guest_name: &str, args: &[&str]) -> Output {
    run_wasm(env, preloads, &guest(guest_name), args)
}

/// Run any wasm file (see [`run_guest`]).
pub fn run_wasm(env: &[(&str, &str)], preloads: &[String], wasm: &Path, args: &[&str]) -> Output {
    let host_args: Vec<&str> = preloads.iter().flat_map(|p| ["--nn-preload", p.as_str()]).collect();
    run_host(env, &host_args, wasm, args)
}

/// A `wasmedge` command as a user runs it: without the LD_LIBRARY_PATH cargo gives test
/// processes (it lists llama.cpp's build folders, which would hide a companion library
/// missing from the plugin's folder).
pub fn wasmedge_command() -> Command {
    let mut cmd = Command::new(wasmedge_bin());
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}

/// Run `wasmedge` with the plugin, from the repository root, with `--dir .:.` and then
/// `host_args` (options for WasmEdge and the plugin), the wasm file and its arguments.
pub fn run_host(env: &[(&str, &str)], host_args: &[&str], wasm: &Path, args: &[&str]) -> Output {
    let mut cmd = wasmedge_command();
    cmd.envs(env.iter().copied());
    cmd.current_dir(root()).env("WASMEDGE_PLUGIN_PATH", plugin_dir()).args(["--dir", ".:."]);
    cmd.args(host_args).arg(wasm).args(args);
    let out = cmd.output().expect("cannot start wasmedge");
    eprintln!("--- {} {args:?}: {}\n{}", wasm.display(), out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// [`run_host`] for guests that watch the host's memory: `wasmedge` also maps its own /proc
/// entry at the guest's `/hostproc` (through `sh -c exec`, which keeps the shell's pid).
pub fn run_host_with_proc(host_args: &[&str], wasm: &Path, args: &[&str]) -> Output {
    run_host_with_proc_env(&[], host_args, wasm, args)
}

/// [`run_host_with_proc`] with extra environment variables for the host.
pub fn run_host_with_proc_env(env: &[(&str, &str)], host_args: &[&str], wasm: &Path, args: &[&str]) -> Output {
    let script = r#"exec "$0" --dir .:. --dir "/hostproc:/proc/$$" "$@""#;
    let out = Command::new("sh")
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .args(["-c", script])
        .arg(wasmedge_bin())
        .args(host_args)
        .arg(wasm)
        .args(args)
        .current_dir(root())
        .env("WASMEDGE_PLUGIN_PATH", plugin_dir())
        .output()
        .expect("cannot start wasmedge");
    eprintln!("--- {} {args:?}: {}\n{}", wasm.display(), out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// Run a test guest against SmolLM2 preloaded as `default` (passing `default` as its first
/// argument), require success, and return its stdout (also printed, for failures).
pub fn run_test_guest(guest_name: &str) -> String {
    run_test_guest_with(&[], &[], guest_name, &[])
}

/// [`run_test_guest`] with host environment, host options and more guest arguments.
pub fn run_test_guest_with(env: &[(&str, &str)], host_args: &[&str], guest_name: &str, args: &[&str]) -> String {
    let preload = ggml_preload("default", SMOLLM2);
    let host_args = [&["--nn-preload", preload.as_str()], host_args].concat();
    let out = run_host(env, &host_args, &guest(guest_name), &[&["default"], args].concat());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(out.status.success(), "{guest_name} failed");
    stdout
}

/// `NAME:GGML:AUTO:test-models/FILE`.
pub fn ggml_preload(name: &str, file: &str) -> String {
    format!("{name}:GGML:AUTO:{}", model(file))
}

/// What the chat/stream examples print: the answer, then `[input tokens: N, output tokens: M]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub input_tokens: usize,
    pub output_tokens: usize,
}

pub fn parse_answer(out: &Output) -> Answer {
    assert!(out.status.success(), "guest failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout.clone()).expect("UTF-8 output");
    let (text, counts) = stdout.trim_end_matches('\n').rsplit_once('\n').expect("an answer and a counts line");
    let nums: Vec<usize> =
        counts.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    assert_eq!(nums.len(), 2, "counts line: {counts}");
    Answer { text: text.to_string(), input_tokens: nums[0], output_tokens: nums[1] }
}

/// The ChatML prompt the examples build (kept equal to guest-examples/chatml).
pub fn chatml(question: &str) -> String {
    format!("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

/// The rest of the first stdout line starting with `label: ` (test guests print their
/// findings that way).
pub fn labelled(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no '{label}' line in:\n{stdout}"))
        .to_string()
}

/// The heap's count of bytes in use (KiB) that the host logged at debug level after `point`
/// ("unload", "the engine's work", ...), in the order logged.
pub fn heap_after(log: &str, point: &str) -> Vec<f64> {
    let prefix = format!("heap after {point}: ");
    log.lines()
        .filter_map(|l| l.split(&prefix).nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse::<f64>().unwrap() / 1024.0)
        .collect()
}

/// The native Whisper reference (tests/whisper-native, a process of its own): the transcript
/// whisper-rs produces for a 16 kHz mono WAV file, in the plugin's output format.
pub fn whisper_native(wav: &str, threads: u32, beam_size: u32) -> String {
    let bin = var_path("WHISPER_NATIVE");
    assert!(bin.is_file(), "{} is missing: scripts/test.sh builds it", bin.display());
    let out = Command::new(bin)
        .current_dir(root())
        .args([&model(WHISPER_TINY_EN), wav, &threads.to_string(), &beam_size.to_string()])
        .output()
        .expect("run whisper-native");
    assert!(out.status.success(), "whisper-native failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 transcript")
}

/// A transcript's words: lowercase, without timestamps and punctuation.
pub fn words(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .map(|l| l.rsplit_once("]  ").map_or(l, |(_, text)| text))
        .flat_map(|text| text.split_whitespace())
        .map(|w| w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect::<String>().to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}
