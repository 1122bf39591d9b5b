//! Speed harness (not a test): the plugin side by side with native llama.cpp and whisper.cpp.
//!
//!     scripts/bench.sh          (builds everything, then runs this)
//!
//! Settings: BENCH_RUNS (whole-process rounds, default 5), BENCH_PAIRS (paired speed
//! measurements, 60), BENCH_TOKENS (128), BENCH_THREADS (2), BENCH_OUT (the
//! results folder, default `bench-results/` in the repository).

use e2e::speed::{self, Config};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let cfg = Config {
        runs: setting("BENCH_RUNS", 5),
        pairs: setting("BENCH_PAIRS", 60),
        tokens: setting("BENCH_TOKENS", 128),
        threads: setting("BENCH_THREADS", 2) as u32,
        out_dir: std::env::var_os("BENCH_OUT").map_or_else(|| e2e::root().join("bench-results"), Into::into),
        llama_native: env!("CARGO_BIN_EXE_llama-native").into(),
        whisper_native: e2e::var_path("WHISPER_NATIVE"),
    };
    let report = speed::measure(&cfg);
    println!("\n{}", speed::table(&report));
    println!("written: {}", cfg.out_dir.join("speed.{json,md,png}").display());
}
