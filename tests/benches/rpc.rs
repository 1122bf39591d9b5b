//! RPC benchmark (not a test): a model's speed on this machine alone, and with its layers on
//! two `rpc-server` workers over loopback. Both workers run on this machine's cores, so the
//! difference is the protocol's own cost (serializing each graph, sending inputs and
//! results, a round trip per device per step), not more or fewer cores.
//!
//!     scripts/bench-rpc.sh          (builds everything, then runs this)
//!
//! Settings: BENCH_RUNS (5 fresh processes per case; medians), BENCH_TOKENS (128),
//! the host and each worker use 2 threads (this machine's cores). Writes bench-results/rpc.{md,json}.
//! Each case's greedy tokens are compared with the local run's: equal unless weights this CPU
//! repacks locally are computed with plain kernels on the workers (tests/tests/rpc.rs).

use e2e::rpc::RpcServer;
use e2e::*;
use serde_json::{json, Value};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The number after `after` in the log line that has `has`.
fn logged(log: &str, has: &str, after: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains(has))?;
    let rest = line.split(after).nth(1)?;
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.')).find(|s| !s.is_empty())?.parse().ok()
}

struct Run {
    tokens: Vec<String>,
    prompt_tokens: f64,
    prompt_ms: f64,
    generated: f64,
    generate_ms: f64,
}

/// One fresh `wasmedge` process with the `split` guest (stdin empty: one attempt).
fn run(model: &str, servers: Option<&str>, n_gpu_layers: usize, tokens: usize) -> Run {
    let load = format!(r#"{{"n-gpu-layers": {n_gpu_layers}}}"#);
    let preload = ggml_preload("default", model);
    let question = "Tell me a long story about a lighthouse keeper who finds a message in a bottle.";
    let mut host_args = vec!["--nn-preload", preload.as_str(), "--nn-slots", "1"];
    if let Some(servers) = servers {
        host_args.extend(["--nn-rpc-servers", servers]);
    }
    let n = tokens.to_string();
    let out = run_host(&[("WASMEDGE_NN_LOG", "info")], &host_args, &guest("split"), &["default", &load, question, &n]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("\nend\n"), "{stdout}");
    let line = "prompt: ";
    Run {
        tokens: stdout.lines().filter_map(|l| l.strip_prefix("token: ").map(str::to_owned)).collect(),
        prompt_tokens: logged(&log, line, line).expect("prompt tokens logged"),
        prompt_ms: logged(&log, line, "prompt cache, ").expect("prompt time logged"),
        generated: logged(&log, line, "generated ").expect("generated tokens logged"),
        generate_ms: logged(&log, line, "tokens in ").expect("generation time logged"),
    }
}

fn main() {
    let runs = setting("BENCH_RUNS", 5);
    let tokens = setting("BENCH_TOKENS", 128);
    let threads = 2;
    let (a, b) = (RpcServer::start(), RpcServer::start());
    let servers = format!("{},{}", a.endpoint(), b.endpoint());
    let mut results = Vec::new();
    let mut prompts = Vec::new();
    let mut table = String::from(
        "| model | layers | prompt tokens/s | generated tokens/s | generation vs local | tokens as local |\n|---|---|---:|---:|---:|---|\n",
    );
    for (model, name, layers) in [(SMOLLM2, "SmolLM2-135M Q4_1", 30), (GEMMA3, "Gemma-3 270M Q4_K_M", 18)] {
        let cases = [
            ("all on this machine's CPU", None, 0),
            ("two thirds on 2 loopback workers", Some(servers.as_str()), layers * 2 / 3),
            ("all on 2 loopback workers", Some(servers.as_str()), 999),
        ];
        let mut local_speed = f64::NAN;
        let mut prompt_tokens = 0.0;
        let mut reference: Option<Vec<String>> = None;
        for (case, servers, ngl) in cases {
            let mut prompt_speed = Vec::new();
            let mut gen_speed = Vec::new();
            let mut differs = None;
            for _ in 0..runs {
                let r = run(model, servers, ngl, tokens);
                prompt_tokens = r.prompt_tokens;
                match &reference {
                    None => reference = Some(r.tokens.clone()),
                    Some(t) => {
                        if &r.tokens != t {
                            let at = r.tokens.iter().zip(t).position(|(x, y)| x != y).unwrap_or(t.len());
                            differs = Some(at);
                        }
                    }
                }
                prompt_speed.push(r.prompt_tokens / r.prompt_ms * 1e3);
                gen_speed.push(r.generated / r.generate_ms * 1e3);
            }
            let (p, g) = (median(prompt_speed.clone()), median(gen_speed.clone()));
            if servers.is_none() {
                local_speed = g;
            }
            eprintln!("{name}: {case}: prompt {p:.1} tokens/s, generation {g:.1} tokens/s");
            table.push_str(&format!(
                "| {name} | {case} | {p:.1} | {g:.1} | {:.2}x | {} |\n",
                g / local_speed,
                match differs {
                    None => "same".to_string(),
                    Some(at) => format!("differ from token {at}"),
                }
            ));
            prompts.push(format!("{name} {prompt_tokens:.0}"));
            results.push(json!({
                "model": name, "case": case, "n_gpu_layers": ngl, "runs": runs,
                "prompt_tokens_per_s": prompt_speed, "generated_tokens_per_s": gen_speed,
                "median_prompt_tokens_per_s": p, "median_generated_tokens_per_s": g,
                "tokens_differ_from_local_at": differs,
            }));
        }
    }
    drop((a, b));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let md = format!(
        "# Models split over RPC workers\n\n\
         `cargo bench -p e2e --bench rpc` (scripts/bench-rpc.sh). {cpu}, {cores} cores; the host and each of the two \
         `rpc-server` workers on 127.0.0.1 use {threads} threads; {tokens} tokens generated greedily after a \
         prompt of {} tokens, one fresh `wasmedge` process per run, medians of {runs}. The last column compares the \
         tokens with the local run's (weights this CPU repacks locally are computed with other kernels on the \
         workers, which can turn a near tie; the prompt is ChatML for both models). The workers share this machine's cores with the host, so the difference is what the protocol \
         costs: per step, each worker's part of the graph is sent (or recomputed by id), inputs and results cross \
         the socket, and the host waits for each worker in turn.\n\n{table}",
        { prompts.dedup(); prompts.join(", ") }
    );
    let out = root().join("bench-results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("rpc.md"), &md).unwrap();
    let value: Value = json!({ "cpu": cpu, "cores": cores, "threads": threads, "tokens": tokens, "results": results });
    std::fs::write(out.join("rpc.json"), serde_json::to_string_pretty(&value).unwrap()).unwrap();
    println!("{md}");
}
