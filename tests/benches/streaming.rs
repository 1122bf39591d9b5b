//! Streaming benchmark (not a test): what a streaming guest pays per token compared with a
//! native llama-cpp-2 loop, what run-ahead buys a guest that does other work between tokens,
//! time to first token of each chat turn with and without prompt-prefix reuse, and how fast
//! `fini_single` stops a long generation.
//!
//!     scripts/bench-streaming.sh            (builds everything, then runs this)
//!
//! Settings: BENCH_TOKENS (default 128), BENCH_THREADS (2), BENCH_RUNS (3). The table is
//! printed and written, with the raw figures as JSON, under $CARGO_TARGET_DIR/bench/.

use e2e::*;
use serde_json::{json, Value};

/// The guest's prompt (tests/guests/bench-stream), for the native side.
const PROMPT: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite a long story about a lighthouse keeper and a storm.<|im_end|>\n<|im_start|>assistant\n";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// One run of the guest: its `label: {json}` lines.
fn guest_run(tokens: usize, threads: usize) -> Value {
    let out = run_guest(
        &[ggml_preload("default", SMOLLM2)],
        "bench-stream",
        &["default", &tokens.to_string(), &threads.to_string()],
    );
    assert!(out.status.success(), "bench-stream failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut figures = serde_json::Map::new();
    for line in stdout.lines() {
        if let Some((label, value)) = line.split_once(": ") {
            figures.insert(label.to_string(), serde_json::from_str(value).expect("a JSON figure"));
        }
    }
    Value::Object(figures)
}

/// The median over runs of one figure.
fn over_runs(runs: &[Value], path: &[&str]) -> f64 {
    median(
        runs.iter()
            .map(|r| path.iter().fold(r, |v, k| &v[*k]).as_f64().unwrap_or_else(|| panic!("no figure {path:?}")))
            .collect(),
    )
}

fn main() {
    let (tokens, threads, runs) = (setting("BENCH_TOKENS", 128), setting("BENCH_THREADS", 2), setting("BENCH_RUNS", 3));
    let model_path = root().join(model(SMOLLM2));

    let native: Vec<(f64, Vec<f64>)> =
        (0..runs).map(|_| native::time_tokens(&model_path, PROMPT, tokens, 4096, threads as i32)).collect();
    let native_median = median(native.iter().map(|(_, steps)| median(steps.clone())).collect());
    let native_mean = median(native.iter().map(|(_, steps)| mean(steps)).collect());
    let native_ttft = median(native.iter().map(|(t, _)| *t).collect());

    let guest: Vec<Value> = (0..runs).map(|_| guest_run(tokens, threads)).collect();
    let g = |path: &[&str]| over_runs(&guest, path);

    let mut md = String::new();
    let mut row = |cells: &[String]| md.push_str(&format!("| {} |\n", cells.join(" | ")));
    row(&[
        "per token (ms)".into(),
        "median".into(),
        "mean".into(),
        "vs native (median)".into(),
        "first token (ms)".into(),
    ]);
    row(&["---".into(), "---:".into(), "---:".into(), "---:".into(), "---:".into()]);
    row(&[
        "native llama-cpp-2 loop".into(),
        format!("{native_median:.3}"),
        format!("{native_mean:.3}"),
        "1.000".into(),
        format!("{native_ttft:.1}"),
    ]);
    for w in [0, 4] {
        let k = format!("stream_run_ahead_{w}");
        let med = g(&[&k, "median_ms"]);
        row(&[
            format!("compute_single + get_output_single, run-ahead {w}"),
            format!("{med:.3}"),
            format!("{:.3}", g(&[&k, "mean_ms"])),
            format!("{:.3}", med / native_median),
            format!("{:.1}", g(&[&k, "ttft_ms"])),
        ]);
    }
    md.push('\n');
    md.push_str("| guest spends 5 ms per token elsewhere | wait per token, median (ms) | whole stream (ms) |\n|---|---:|---:|\n");
    for w in [0, 4] {
        let k = format!("io_run_ahead_{w}");
        md.push_str(&format!("| run-ahead {w} | {:.3} | {:.0} |\n", g(&[&k, "median_ms"]), g(&[&k, "total_ms"])));
    }
    md.push('\n');
    md.push_str("| chat turn | prompt tokens | reused | first token, reuse (ms) | first token, fresh (ms) |\n|---:|---:|---:|---:|---:|\n");
    let turns = guest[0].as_object().unwrap().keys().filter(|k| k.starts_with("turn_")).count();
    for k in 1..=turns {
        let t = format!("turn_{k}");
        md.push_str(&format!(
            "| {k} | {} | {} | {:.1} | {:.1} |\n",
            guest[0][&t]["reuse"]["input_tokens"],
            guest[0][&t]["reuse"]["prompt_tokens_reused"],
            g(&[&t, "reuse_ttft_ms"]),
            g(&[&t, "fresh_ttft_ms"]),
        ));
    }
    md.push('\n');
    md.push_str(&format!(
        "fini_single on a long stream (run-ahead 4): median {:.3} ms, max {:.3} ms; one token takes {:.3} ms.\n",
        g(&["fini_single", "median_ms"]),
        g(&["fini_single", "max_ms"]),
        g(&["fini_single", "token_median_ms"]),
    ));
    md.push_str(&format!(
        "\nSmolLM2-135M-Instruct Q4_1, {tokens} greedy tokens, {threads} threads, {runs} runs (medians), {} cores.\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    println!("\n{md}");

    let dir =
        std::path::PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into())).join("bench");
    std::fs::create_dir_all(&dir).expect("bench folder");
    let raw = json!({
        "tokens": tokens, "threads": threads, "runs": runs,
        "native": native.iter().map(|(ttft, steps)| json!({"ttft_ms": ttft, "median_ms": median(steps.clone()), "mean_ms": mean(steps)})).collect::<Vec<_>>(),
        "guest": guest,
    });
    std::fs::write(dir.join("streaming.json"), serde_json::to_string_pretty(&raw).unwrap()).expect("write JSON");
    std::fs::write(dir.join("streaming.md"), &md).expect("write table");
    println!("written: {}", dir.join("streaming.{json,md}").display());
}
