//! The whole life of a graph, many times over in one process, through the raw imports:
//! `load` (model bytes) → `init_execution_context` → `set_input` (metadata, prompt) →
//! `compute` → `get_output` → `finalize_execution_context` → `unload`. Every answer must be the
//! first one; every `every` cycles it prints the host's resident memory, read from the host's
//! /proc entry mapped at /hostproc (`--dir /hostproc:/proc/PID`).
//!
//!     cycles.wasm MODEL.gguf CYCLES EVERY

use raw_nn::*;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/hostproc/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse().unwrap()))
        })
        .unwrap_or(0)
}

/// One cycle; the answer.
fn cycle(model: &[u8]) -> Vec<u8> {
    let builders = [buf(model)];
    let meta = br#"{"n-predict": 8, "temp": 0, "ctx-size": 256, "threads": 1}"#;
    let mut g = 0;
    assert_eq!(unsafe { load(builders.as_ptr(), 1, GGML, CPU, &mut g) }, 0, "load");
    let out = run_once(g, meta, b"Once upon a time");
    assert_eq!(unsafe { unload(g) }, 0, "unload");
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = std::fs::read(&args[1]).expect("the model file");
    let (cycles, every): (usize, usize) = (args[2].parse().unwrap(), args[3].parse().unwrap());
    let first = cycle(&model);
    println!("answer: {:?}", String::from_utf8_lossy(&first));
    println!("rss 1: {}", rss_kib());
    for i in 2..=cycles {
        assert_eq!(cycle(&model), first, "cycle {i} answered differently");
        if i % every == 0 {
            println!("rss {i}: {}", rss_kib());
        }
    }
    println!("cycles: {cycles}");
}
