//! Long runs in one process: nothing a cycle allocates may stay behind.

use e2e::{guest, labelled};

/// 1000 times load (bytes) → init → set_input → compute → get_output → finalize → unload of
/// the tiny model, in one `wasmedge` process: every answer equals the first, and what the
/// host's heap holds after `unload` (an explicit release point: the graph's contexts dropped,
/// the allocator trimmed) grows from cycle 100 to the end by less than a margin derived from
/// the model's size. The heap's own count of the bytes it has handed out (glibc's mallinfo2,
/// which the host logs at debug level at each release point) is judged, not the resident
/// size, which depends on how freed memory lies in the allocator's arenas (the hearing test
/// saw the same work leave anywhere between 267 and 316 MiB resident).
#[test]
fn a_thousand_graph_lifetimes_leave_nothing_behind() {
    let (cycles, every) = (1000, 50);
    let (n, k) = (cycles.to_string(), every.to_string());
    let dir = tempfile::Builder::new().prefix("nn-long-runs").tempdir().unwrap();
    let log_file = dir.path().join("host.log");
    let out = e2e::run_host_with_proc_env(
        &[("WASMEDGE_NN_LOG", "debug"), ("WASMEDGE_NN_LOG_FILE", log_file.to_str().unwrap())],
        &[],
        &guest("cycles"),
        &["test-models/tiny/tiny-llama.gguf", &n, &k],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(labelled(&stdout, "cycles"), cycles.to_string());
    assert!(!labelled(&stdout, "answer").trim_matches('"').is_empty(), "the tiny model answered nothing");
    let log = std::fs::read_to_string(&log_file).unwrap();
    let heap = e2e::heap_after(&log, "unload");
    assert_eq!(heap.len(), cycles, "every unload should log the heap");
    let warm = heap[99];
    assert!(warm > 1024.0, "the heap's count was not readable: {warm} KiB");
    // The last three sampled cycles' median against cycle 100's (one reading can catch an
    // allocation that is not a leak: a table growing its capacity).
    let mut last = [heap[cycles - 2 * every - 1], heap[cycles - every - 1], heap[cycles - 1]];
    last.sort_by(f64::total_cmp);
    let growth = last[1] - warm;
    let readings: Vec<f64> = (1..=cycles / every).map(|k| heap[k * every - 1] / 1024.0).collect();
    let rss: Vec<f64> = (1..=cycles / every)
        .filter_map(|k| labelled(&stdout, &format!("rss {}", k * every)).parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .collect();
    // A cycle's own allocations start with the model's bytes (copied into an in-memory file,
    // then loaded): a leak of even 1/32 of them per cycle adds the margin over 900 cycles.
    let model_kib =
        std::fs::metadata(e2e::root().join("test-models/tiny/tiny-llama.gguf")).unwrap().len() as f64 / 1024.0;
    let margin = 32.0 * model_kib;
    println!(
        "heap in use after unload (MiB) every {every} cycles: {readings:.2?}; growth after warm-up {:.3} MiB \
         (margin {:.2} MiB); resident (MiB), for information: {rss:.1?}",
        growth / 1024.0,
        margin / 1024.0
    );
    assert!(growth < margin, "the heap grew by {:.2} MiB from cycle 100 to {cycles}", growth / 1024.0);
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
