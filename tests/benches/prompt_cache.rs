//! Prompt-cache benchmark (not a test): what a fresh `wasmedge` process, as a serverless host
//! starts one per request, takes to its first token when its prompt is an agent's fixed
//! instructions (about 1,500 tokens) and a short question, with no prompt cache, with an
//! empty one (the first request: the model's hash and the save included), and with one that
//! holds the instructions from an earlier request (another question), its file in the page
//! cache or read from disk. Every warm answer must equal the uncached answer to the same
//! question, token for token (greedy).
//!
//!     scripts/bench-prompt-cache.sh         (builds everything, then runs this)
//!
//! Settings: BENCH_RUNS (5), BENCH_THREADS (2), BENCH_PREFIX (1500 tokens). Writes
//! bench-results/prompt-cache.{md,json}.

use e2e::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn line(i: usize) -> String {
    format!(
        "- tool_{i}: looks up record {i} of the ledger and returns its owner, date and amount; call it with the record's number.\n"
    )
}

fn chat(system: &str, question: &str) -> String {
    format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

/// Instructions whose prompt, up to the question, has at least `tokens` tokens for `model`.
fn instructions(model: &Path, tokens: usize) -> (String, usize) {
    let (llama, _) = native::load(model);
    let mut system = String::from("You are the records assistant of a small company. You can use these tools:\n");
    let count = |s: &str| llama.vocab().tokenize(chat(s, "").as_bytes(), true, true).len();
    let mut i = 0;
    while count(&system) < tokens {
        system.push_str(&line(i));
        i += 1;
    }
    system.push_str("Answer in one sentence.");
    let n = count(&system);
    (system, n)
}

struct Figures {
    first_token_ms: f64,
    process_ms: f64,
    answer: String,
    meta: Value,
    restore_ms: Option<f64>,
    save: Option<(f64, f64)>,
}

/// A number in the log line that has `after`, just after it.
fn logged(log: &str, has: &str, after: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains(has))?;
    let rest = line.split(after).nth(1)?;
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.')).find(|s| !s.is_empty())?.parse().ok()
}

fn run(model: &str, slots: &str, cache: Option<&Path>, prompt_file: &Path, threads: usize) -> Figures {
    let dir = prompt_file.parent().unwrap().to_str().unwrap();
    let config = format!(r#"{{"temp": 0, "n-predict": 24, "ctx-size": 4096, "threads": {threads}}}"#);
    let mut cmd: Command = wasmedge_command();
    cmd.current_dir(root()).env("WASMEDGE_PLUGIN_PATH", plugin_dir()).env("WASMEDGE_NN_LOG", "info").args([
        "--dir",
        ".:.",
        "--dir",
        &format!("{dir}:{dir}"),
        "--nn-slots",
        slots,
    ]);
    if let Some(c) = cache {
        cmd.args(["--nn-prompt-cache", c.to_str().unwrap()]);
    }
    cmd.args(["--nn-preload", &ggml_preload("default", model)]).arg(guest("cold-start"));
    cmd.args(["default", prompt_file.to_str().unwrap(), &config]);
    let started = Instant::now();
    let out = cmd.output().expect("start wasmedge");
    let process_ms = started.elapsed().as_secs_f64() * 1e3;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cold-start failed:\n{stdout}\n{log}");
    Figures {
        first_token_ms: labelled(&stdout, "first_token_ms").parse().unwrap(),
        process_ms,
        answer: labelled(&stdout, "answer"),
        meta: serde_json::from_str(&labelled(&stdout, "metadata")).unwrap(),
        restore_ms: logged(&log, "restored (", "bytes) in "),
        save: logged(&log, "saved (", "saved (").zip(logged(&log, "saved (", "bytes) in ")),
    }
}

/// Drop the cache's files from the page cache: the next process reads them from disk.
fn evict_from_page_cache(dir: &Path) {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = std::fs::File::open(entry.unwrap().path()).unwrap();
        // SAFETY: a valid descriptor; advice only.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

fn main() {
    let (runs, threads, prefix) =
        (setting("BENCH_RUNS", 5), setting("BENCH_THREADS", 2), setting("BENCH_PREFIX", 1500));
    // (WasmEdge maps no folder whose name starts with a dot into a guest, as tempfile's do.)
    let work = tempfile::Builder::new().prefix("nn-bench-").tempdir().unwrap();
    let mut md = String::from(
        "| model | slots | prefix tokens | no cache: first token (ms) | empty cache | warm cache | warm, read from disk | no cache / warm | process, no cache / warm (ms) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut raw = Vec::new();
    let mut notes = Vec::new();
    // One slot: a process that serves one request needs no more (and makes its KV cache in
    // a quarter of the time); four: the default.
    let configs = [(SMOLLM2, "1"), (GEMMA3, "1"), (SMOLLM2, "4"), (GEMMA3, "4")];
    for (name, slots) in configs {
        let (system, prefix_tokens) = instructions(&root().join(model(name)), prefix);
        let question = |i: usize| format!("Which tool looks up record {}?", 3 + 7 * i);
        let file = |i: usize| {
            let path = work.path().join(format!("prompt-{name}-{i}.txt"));
            std::fs::write(&path, chat(&system, &question(i))).unwrap();
            path
        };
        let files: Vec<_> = (0..=runs).map(file).collect();
        // Warm-up: the model file in the page cache for every condition alike.
        run(name, slots, None, &files[0], threads);
        let mut none = Vec::new();
        let mut empty = Vec::new();
        let mut warm = Vec::new();
        let mut disk = Vec::new();
        for i in 1..=runs {
            none.push(run(name, slots, None, &files[i], threads));
            // An empty cache: this request pays the model's hash and the save.
            let cache = work.path().join(format!("cache-{name}-{slots}-{i}"));
            empty.push(run(name, slots, Some(&cache), &files[i], threads));
            // Warm: the cache holds the instructions with question 0.
            let warm_cache = work.path().join(format!("warm-{name}-{slots}-{i}"));
            run(name, slots, Some(&warm_cache), &files[0], threads);
            warm.push(run(name, slots, Some(&warm_cache), &files[i], threads));
            evict_from_page_cache(&warm_cache);
            disk.push(run(name, slots, Some(&warm_cache), &files[i], threads));
            for (what, f) in [("empty", &empty[i - 1]), ("warm", &warm[i - 1]), ("disk", &disk[i - 1])] {
                assert_eq!(f.answer, none[i - 1].answer, "{name}, question {i}: the {what} cache's answer differs");
            }
            // (All but the last micro-batch's worth of the instructions that keeps the numbers
            // exact: at most 64 + 31 tokens.)
            let cached = warm[i - 1].meta["prompt_tokens_cached"].as_u64().unwrap() as usize;
            assert!(cached + 100 >= prefix_tokens, "{name}: only {cached} of {prefix_tokens} tokens restored");
        }
        let ttft = |v: &[Figures]| median(v.iter().map(|f| f.first_token_ms).collect());
        let process = |v: &[Figures]| median(v.iter().map(|f| f.process_ms).collect());
        let (n, w) = (ttft(&none), ttft(&warm));
        md.push_str(&format!(
            "| {name} | {slots} | {prefix_tokens} | {n:.0} | {:.0} | {w:.1} | {:.1} | **{:.1}×** | {:.0} / {:.0} |\n",
            ttft(&empty),
            ttft(&disk),
            n / w,
            process(&none),
            process(&warm),
        ));
        let restore = median(warm.iter().filter_map(|f| f.restore_ms).collect());
        let restore_disk = median(disk.iter().filter_map(|f| f.restore_ms).collect());
        let save_ms = median(empty.iter().filter_map(|f| f.save.map(|s| s.1)).collect());
        let bytes = empty.iter().find_map(|f| f.save.map(|s| s.0)).unwrap_or(f64::NAN);
        raw.push(json!({
            "model": name,
            "slots": slots,
            "prefix_tokens": prefix_tokens,
            "input_tokens": none[0].meta["input_tokens"],
            "first_token_ms": {
                "none": none.iter().map(|f| f.first_token_ms).collect::<Vec<_>>(),
                "empty": empty.iter().map(|f| f.first_token_ms).collect::<Vec<_>>(),
                "warm": warm.iter().map(|f| f.first_token_ms).collect::<Vec<_>>(),
                "warm_from_disk": disk.iter().map(|f| f.first_token_ms).collect::<Vec<_>>(),
            },
            "process_ms": {
                "none": none.iter().map(|f| f.process_ms).collect::<Vec<_>>(),
                "warm": warm.iter().map(|f| f.process_ms).collect::<Vec<_>>(),
            },
            "restore_ms": restore, "restore_from_disk_ms": restore_disk,
            "save_ms": save_ms, "file_bytes": bytes,
            "warm_cached_tokens": warm[0].meta["prompt_tokens_cached"],
            "warm_evaluated_tokens": warm[0].meta["prompt_tokens_evaluated"],
            "answers_identical": true,
        }));
        notes.push(format!(
            "- {name}, {slots} slot(s): {} prompt tokens restored and {} evaluated; the restore took {restore:.1} ms ({restore_disk:.1} ms read from disk); the first request's save wrote {:.1} MB in {save_ms:.1} ms.\n",
            warm[0].meta["prompt_tokens_cached"],
            warm[0].meta["prompt_tokens_evaluated"],
            bytes / 1e6
        ));
    }
    md.push('\n');
    md.push_str(&notes.concat());
    md.push_str(&format!(
        "\nFirst token: from giving the prompt (set_input) to the first token, in a fresh `wasmedge` process; medians of {runs} runs, {threads} threads, {} cores. Every warm answer equals the uncached answer to the same question (greedy, 24 tokens).\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    println!("\n{md}");
    let dir = root().join("bench-results");
    std::fs::write(dir.join("prompt-cache.md"), &md).expect("write table");
    std::fs::write(
        dir.join("prompt-cache.json"),
        serde_json::to_string_pretty(&json!({"runs": runs, "threads": threads, "models": raw})).unwrap(),
    )
    .expect("write JSON");
    println!("written: {}", dir.join("prompt-cache.{md,json}").display());
}
