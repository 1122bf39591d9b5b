//! Long runs in one process: nothing a cycle allocates may stay behind.

use e2e::{guest, labelled};

/// 1000 times load (bytes) → init → set_input → compute → get_output → finalize → unload of
/// the tiny model, in one `wasmedge` process: every answer equals the first, and the host's
/// resident memory, read after `unload` (which hands freed memory back before it returns),
/// grows from cycle 100 to the end by less than a margin derived from the model's size.
#[test]
fn a_thousand_graph_lifetimes_leave_nothing_behind() {
    let (cycles, every) = (1000, 50);
    let (n, k) = (cycles.to_string(), every.to_string());
    let out = e2e::run_host_with_proc(&[], &guest("cycles"), &["test-models/tiny/tiny-llama.gguf", &n, &k]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(labelled(&stdout, "cycles"), cycles.to_string());
    assert!(!labelled(&stdout, "answer").trim_matches('"').is_empty(), "the tiny model answered nothing");
    let rss = |i: usize| -> f64 { labelled(&stdout, &format!("rss {i}")).parse().unwrap() };
    let warm = rss(100);
    assert!(warm > 50_000.0, "the host's RSS was not readable: {warm}");
    // The last three readings' median against the warm-up's (one reading can catch a
    // transient allocation).
    let mut last = [rss(cycles - 2 * every), rss(cycles - every), rss(cycles)];
    last.sort_by(f64::total_cmp);
    let growth = last[1] - warm;
    let readings: Vec<f64> = (1..=cycles / every).map(|k| rss(k * every) / 1024.0).collect();
    // A cycle's own allocations start with the model's bytes (copied into an in-memory file,
    // then loaded): a leak of even 1/32 of them per cycle adds the margin over 900 cycles.
    // The heap's plateau steps stay under it (up to 2.8 MiB measured, once, after cycle 400).
    let model_kib =
        std::fs::metadata(e2e::root().join("test-models/tiny/tiny-llama.gguf")).unwrap().len() as f64 / 1024.0;
    let margin = 32.0 * model_kib;
    println!(
        "RSS (MiB) every {every} cycles: {readings:.1?}; growth after warm-up {:.2} MiB (margin {:.2} MiB)",
        growth / 1024.0,
        margin / 1024.0
    );
    assert!(growth < margin, "RSS grew by {:.2} MiB from cycle 100 to {cycles}", growth / 1024.0);
}

/// The host's caps on graphs, ctx-size and input size, set on the command line and through
/// the environment: Busy and TooLarge at the cap, room again after an unload.
#[test]
fn caps_on_graphs_ctx_size_and_input_size_hold() {
    let model = "test-models/tiny/tiny-llama.gguf";
    let by_flags = e2e::run_host(
        &[("WASMEDGE_NN_LOG", "error")],
        &["--nn-max-graphs", "3", "--nn-max-ctx-size", "1024", "--nn-max-input-mib", "1"],
        &guest("caps"),
        &[model],
    );
    let by_env = e2e::run_host(
        &[
            ("WASMEDGE_NN_LOG", "error"),
            ("WASMEDGE_NN_MAX_GRAPHS", "3"),
            ("WASMEDGE_NN_MAX_CTX_SIZE", "1024"),
            ("WASMEDGE_NN_MAX_INPUT_MIB", "1"),
        ],
        &[],
        &guest("caps"),
        &[model],
    );
    for out in [by_flags, by_env] {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("{stdout}");
        assert!(out.status.success());
        for (case, code) in [
            ("graphs_loaded", "3"),
            ("one_more_graph", "4"),
            ("ctx_size_at_cap", "0"),
            ("ctx_size_above_cap", "7"),
            ("input_above_cap", "7"),
            ("input_at_cap", "0"),
            ("unload", "0"),
            ("load_after_unload", "0"),
        ] {
            assert_eq!(labelled(&stdout, case), code, "{case}");
        }
        let log = String::from_utf8_lossy(&out.stderr);
        e2e::assert_log_says(
            &log,
            &[
                "3 graphs are loaded (the limit is 3)",
                "ctx-size 1025 is above this host's limit of 1024",
                "above this host's limit of 1 MiB",
            ],
        );
    }
}
