//! ggml's CPU code comes as per-CPU variants in the plugin's companion folder, and the
//! plugin loads the best one this machine runs: the portable build. The same for the Whisper
//! runtime, built once per CPU level.

use e2e::*;
use std::path::{Path, PathBuf};

const Q: &str = "What is the capital of France?";
const CONFIG: &str = r#"{"n-predict": 12}"#;

fn companions() -> PathBuf {
    plugin_dir().join("wasmedge-nn")
}

/// The chat example on SmolLM2 with the plugin's log at `info` and extra host environment.
fn chat(env: &[(&str, &str)], config: &str) -> std::process::Output {
    let env = [&[("WASMEDGE_NN_LOG", "info")], env].concat();
    run_guest_with_env(&env, &[ggml_preload("default", SMOLLM2)], "chat", &["default", Q, config])
}

/// The CPU variant the plugin says it loaded.
fn variant_in(log: &str) -> String {
    let line =
        log.lines().find(|l| l.contains("ggml cpu backend: ")).unwrap_or_else(|| panic!("no variant in:\n{log}"));
    line.split("ggml cpu backend: ").nth(1).unwrap().split_whitespace().next().unwrap().to_string()
}

/// A folder holding only some of the companion folder's CPU variants.
fn only(variants: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for v in variants {
        let name = format!("libggml-cpu-{v}.so.0");
        std::os::unix::fs::symlink(companions().join(&name), dir.path().join(&name)).unwrap();
    }
    dir
}

fn cpu_has(flag: &str) -> bool {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    info.lines().find(|l| l.starts_with("flags")).is_some_and(|l| l.split_whitespace().any(|f| f == flag))
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_companion_folder_carries_every_variant_and_the_best_is_loaded() {
    let names: Vec<String> =
        std::fs::read_dir(companions()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    for v in ["x64", "sse42", "haswell", "skylakex", "icelake", "zen4"] {
        assert!(names.contains(&format!("libggml-cpu-{v}.so.0")), "no {v} variant in {names:?}");
    }
    assert!(!names.iter().any(|n| n.ends_with(".so")), "WasmEdge would open these as plugins: {names:?}");

    let out = chat(&[], CONFIG);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let answer = parse_answer(&out);
    assert!(answer.text.contains("Paris"), "{answer:?}");
    let variant = variant_in(&log);
    println!("loaded: {variant}");
    // On a CPU with AVX2 an AVX2 variant or better, with AVX-512 an AVX-512 one.
    if cpu_has("avx2") {
        assert!(!["x64", "sse42", "sandybridge", "ivybridge", "piledriver"].contains(&variant.as_str()), "{variant}");
    }
    if cpu_has("avx512f") {
        assert!(["skylakex", "cannonlake", "cascadelake", "icelake", "cooperlake", "zen4", "sapphirerapids"]
            .contains(&variant.as_str()));
    }
}

/// What an old CPU gets: the baseline variant (SSE2 only). The same plugin answers with it.
#[test]
fn the_baseline_variant_alone_answers_too() {
    let dir = only(&["x64"]);
    let out = chat(&[("WASMEDGE_NN_GGML_BACKENDS", path_str(dir.path()))], CONFIG);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let answer = parse_answer(&out);
    assert!(answer.text.contains("Paris"), "{answer:?}");
    assert_eq!(variant_in(&log), "x64");
}

/// Given a choice between the baseline and AVX2 variants on an AVX2 machine, AVX2 is chosen.
#[test]
fn the_higher_scoring_variant_wins() {
    if !cpu_has("avx2") {
        eprintln!("no AVX2 here: nothing to choose between");
        return;
    }
    let dir = only(&["x64", "haswell"]);
    let out = chat(&[("WASMEDGE_NN_GGML_BACKENDS", path_str(dir.path()))], CONFIG);
    assert_eq!(variant_in(&String::from_utf8_lossy(&out.stderr)), "haswell");
    assert!(parse_answer(&out).text.contains("Paris"));
}

/// No CPU variant at all: the model is refused with the reason and the fix, no crash.
#[test]
fn without_a_cpu_backend_the_load_fails_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = chat(&[("WASMEDGE_NN_GGML_BACKENDS", path_str(dir.path()))], CONFIG);
    assert!(!out.status.success());
    assert_log_says(
        &String::from_utf8_lossy(&out.stderr),
        &["no ggml CPU backend for this machine", "WASMEDGE_NN_GGML_BACKENDS"],
    );
}

/// n-gpu-layers without a GPU backend installed: a warning, and the CPU does the work.
#[test]
fn gpu_layers_without_a_gpu_backend_fall_back_to_the_cpu_with_a_warning() {
    let out = chat(&[], r#"{"n-predict": 12, "n-gpu-layers": 99}"#);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(parse_answer(&out).text.contains("Paris"));
    assert_log_says(&log, &["n-gpu-layers 99 asked for, but no GPU backend is installed"]);
}

// whisper.cpp links its ggml statically, so the Whisper runtime is built once per CPU level
// and the plugin opens the best one this CPU runs.

const WHISPER_LEVELS: [&str; 3] = ["x86-64", "x86-64-v3", "x86-64-v4"];

/// The `transcribe` example on paris.wav with the plugin's log at `info`: (transcript, log).
fn transcribe_paris(env: &[(&str, &str)]) -> (String, String) {
    let env = [&[("WASMEDGE_NN_LOG", "info")], env].concat();
    let preload = format!("asr:Whisper:AUTO:{}", model(WHISPER_TINY_EN));
    let wav = format!("{SPEECH}/paris.wav");
    let out = run_guest_with_env(&env, &[preload], "transcribe", &["asr", &wav, r#"{"threads": 2}"#]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "transcribe failed:\n{log}");
    (String::from_utf8(out.stdout).unwrap(), log)
}

/// The Whisper runtime file the plugin says it opened.
fn whisper_runtime_in(log: &str) -> String {
    let line = log.lines().find(|l| l.contains("Whisper runtime: ")).unwrap_or_else(|| panic!("none in:\n{log}"));
    let path = line.split("Whisper runtime: ").nth(1).unwrap().trim();
    Path::new(path).file_name().unwrap().to_str().unwrap().to_string()
}

fn whisper_file(level: &str) -> String {
    let names: Vec<String> =
        std::fs::read_dir(companions()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let prefix = format!("libwasmedge_nn_whisper-{level}.so.");
    names
        .into_iter()
        .find(|n| n.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}* in {}", companions().display()))
}

/// The best level this CPU runs, read from /proc/cpuinfo (the plugin asks CPUID).
fn whisper_level_here() -> &'static str {
    let v3 = ["sse4_2", "avx", "avx2", "bmi2", "fma", "f16c"].iter().all(|f| cpu_has(f));
    let v4 = v3 && ["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"].iter().all(|f| cpu_has(f));
    if v4 {
        "x86-64-v4"
    } else if v3 {
        "x86-64-v3"
    } else {
        "x86-64"
    }
}

#[test]
fn the_whisper_runtime_comes_for_every_cpu_level_and_the_best_is_opened() {
    for level in WHISPER_LEVELS {
        whisper_file(level);
    }
    let (transcript, log) = transcribe_paris(&[]);
    assert_eq!(whisper_runtime_in(&log), whisper_file(whisper_level_here()));
    // The tests' native reference is built for the same level: the two compute alike.
    assert_eq!(transcript, whisper_native(&format!("{SPEECH}/paris.wav"), 2, 5));
}

/// What an old CPU gets (SSE2 only): the same words.
#[test]
fn the_baseline_whisper_runtime_hears_the_same_words() {
    let baseline = companions().join(whisper_file("x86-64"));
    let (transcript, log) = transcribe_paris(&[("WASMEDGE_NN_WHISPER_LIB", path_str(&baseline))]);
    assert_eq!(whisper_runtime_in(&log), whisper_file("x86-64"));
    let (best, _) = transcribe_paris(&[]);
    println!("baseline:\n{transcript}best:\n{best}");
    assert_eq!(words(&transcript), words(&best));
    for key in ["tomorrow", "sunny", "paris"] {
        assert!(words(&transcript).iter().any(|w| w == key), "no '{key}' in {transcript}");
    }
}
