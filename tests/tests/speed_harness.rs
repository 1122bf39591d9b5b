//! The speed harness in its quick form (one short run): it must produce every figure, for
//! every side, and its files. The values are not judged here: timing goals belong to the
//! full harness (`scripts/bench.sh`).

use e2e::speed::{self, Config, SIDES};
use e2e::var_path;

#[test]
fn the_speed_harness_produces_every_figure() {
    let out = tempfile::tempdir().unwrap();
    let cfg = Config {
        runs: 1,
        pairs: 1,
        tokens: 8,
        threads: 2,
        out_dir: out.path().to_path_buf(),
        llama_native: env!("CARGO_BIN_EXE_llama-native").into(),
        whisper_native: var_path("WHISPER_NATIVE"),
    };
    let report = speed::measure(&cfg);
    println!("{}", speed::table(&report));
    let figures = [
        "prompt_tokens",
        "load_ms",
        "ttft_ms",
        "prompt_tok_s",
        "decode_tok_s",
        "stream_token_ms",
        "exec_to_first_token_ms",
        "peak_rss_mib",
        "whisper_rtf",
    ];
    for side in SIDES {
        for f in figures {
            let v = report["sides"][side][f].as_f64();
            assert!(v.is_some_and(|v| v.is_finite() && v > 0.0), "{side}: {f} = {:?}", report["sides"][side][f]);
        }
    }
    for side in &SIDES[1..] {
        for r in ["prompt", "decode", "streaming", "whisper_rtf"] {
            let v = report["ratios_wasm_over_native"][side][r].as_f64();
            assert!(v.is_some_and(|v| v.is_finite() && v > 0.0), "ratio {side} {r}: {v:?}");
        }
    }
    for c in ["wasmedge_with_plugin", "wasmedge_without_plugins"] {
        assert!(report["cold_start_ms"][c].as_f64().is_some_and(|v| v > 0.0), "cold start {c}");
    }
    let table = speed::table(&report);
    assert!(!table.contains("NaN"), "{table}");
    for file in ["speed.json", "speed.md", "speed.png"] {
        let len = std::fs::metadata(out.path().join(file)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{file} missing or empty");
    }
}
