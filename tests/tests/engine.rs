//! The batching engine through the real `wasmedge` CLI: contexts are cheap handles on
//! sequences of one llama.cpp context per model, so a guest that never finalizes keeps
//! working in bounded memory, and batched streams can be cut by unload or by the guest's end.
//! (Interleaved streams equal to their runs alone, swapping, grammar, vision, embeddings and
//! multi-turn reuse are covered where those features are: cli.rs, clients.rs, vision.rs.)

use e2e::*;

/// A guest built with the public guest crate (which cannot finalize) makes a context per
/// request, one request each, 1,000 times: every answer is right, nothing is Busy, and what
/// the host's heap holds each time the engine runs out of work grows from a tenth of the way
/// through to the end by less than a margin derived from the model's size. The heap's own count
/// (glibc's mallinfo2, logged at debug level at that point) is judged, not the resident size,
/// which depends on how freed memory lies in the allocator's arenas. By then the idle
/// contexts' saved KV is at its budget, so what may grow is their records alone (measured:
/// +0.84 MiB over 900 contexts, under 1 KB each).
#[test]
fn a_thousand_contexts_never_finalized_all_answer_in_bounded_memory() {
    let dir = tempfile::Builder::new().prefix("nn-contexts").tempdir().unwrap();
    let log_file = dir.path().join("host.log");
    let out = run_host_with_proc_env(
        &[("WASMEDGE_NN_LOG", "debug"), ("WASMEDGE_NN_LOG_FILE", log_file.to_str().unwrap())],
        &["--nn-preload", &ggml_preload("default", SMOLLM2)],
        &guest("contexts"),
        &["default", "1000", "100", "1000"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wrong: Vec<&str> = stdout.lines().filter(|l| l.starts_with("wrong:")).collect();
    assert!(wrong.is_empty(), "{} wrong answers, the first: {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    assert_eq!(labelled(&stdout, "answered"), "1000");
    // Most requests leave the engine without work once they are answered (measured: 902 of
    // 1,000; the guest's next request can come before the engine has looked for more).
    let heap = heap_after(&std::fs::read_to_string(&log_file).unwrap(), "the engine's work");
    assert!(heap.len() >= 500, "the engine ran out of work only {} times in 1,000 requests", heap.len());
    let tenths: Vec<f64> = (0..=10).map(|k| heap[(heap.len() - 1) * k / 10] / 1024.0).collect();
    println!("heap in use (MiB) at each tenth of the run: {tenths:.3?}");
    let warm = heap[heap.len() / 10];
    assert!(warm > 1024.0, "the heap's count was not readable: {warm} KiB");
    // The last three readings' median (one reading can catch a table growing its capacity).
    let mut last = [heap[heap.len() - 3], heap[heap.len() - 2], heap[heap.len() - 1]];
    last.sort_by(f64::total_cmp);
    let growth = last[1] - warm;
    // A leak of 1/16 of the model's size over 900 requests: 7 KiB a request, eight times
    // what an idle context's record costs.
    let margin = std::fs::metadata(root().join(model(SMOLLM2))).unwrap().len() as f64 / 1024.0 / 16.0;
    let kib = |label: &str| -> f64 { labelled(&stdout, label).parse().unwrap() };
    println!(
        "heap in use when the engine ran out of work: {:.2} MiB a tenth of the way, {:.2} MiB at the end \
         ({:+.3} MiB, margin {:.2} MiB); resident, for information: {:.1} MiB after 100, {:.1} MiB after \
         1,000 (peaks {:.1} and {:.1} MiB)",
        warm / 1024.0,
        last[1] / 1024.0,
        growth / 1024.0,
        margin / 1024.0,
        kib("rss 100") / 1024.0,
        kib("rss 1000") / 1024.0,
        kib("peak 100") / 1024.0,
        kib("peak 1000") / 1024.0
    );
    assert!(growth < margin, "900 more contexts grew the heap by {:.2} MiB", growth / 1024.0);
}

/// Eight streams decoding together: unloading their graph stops them all (a context of it is
/// then unknown), the host answers afterwards exactly as before, and a guest that ends with
/// eight streams running releases them and exits.
#[test]
fn unload_and_the_guest_s_end_cut_batched_streams_cleanly() {
    let cut = run_test_guest_with(&[], &[], "interleave", &["8", "cut"]);
    assert_eq!(labelled(&cut, "after_unload"), "InvalidArgument");
    let plain = run_test_guest_with(&[], &[], "interleave", &["1"]);
    assert_eq!(labelled(&cut, "alone_0"), labelled(&plain, "alone_0"));
    assert_eq!(labelled(&cut, "ending"), "8 streams running");
}

/// A prompt of about 1,000 tokens (a fixed pseudo-random text): long enough that a lone
/// token's attention takes ggml's split-KV path, which a batch of tokens does not.
fn long_prompt() -> String {
    let words = ["the", "ship", "sea", "storm", "light", "keeper", "night", "wave", "rock", "island", "boat", "wind"];
    let mut x: u32 = 12345;
    let text: Vec<&str> = (0..700)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            words[(x >> 16) as usize % words.len()]
        })
        .collect();
    format!(
        "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\nWrite a story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n",
        text.join(" ")
    )
}

/// `--nn-deterministic 1`: every sequence is decoded on its own, so two streams of a long
/// prompt advanced in turns each give exactly the text one stream alone gives, for both test
/// models, whatever ggml's CPU kernels do with batches (README: "Batching and determinism").
#[test]
fn deterministic_mode_keeps_long_streams_equal_to_their_runs_alone() {
    let prompt = long_prompt();
    let config = r#"{"temp": 0, "n-predict": 32, "ctx-size": 2048}"#;
    for model_file in [SMOLLM2, GEMMA3] {
        let preload = ggml_preload("default", model_file);
        let host = ["--nn-deterministic", "1", "--nn-preload", preload.as_str()];
        let run = |args: &[&str]| {
            let out = run_host(&[], &host, &guest("client"), args);
            assert!(out.status.success(), "{model_file}: {args:?} failed");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let together = run(&["two-contexts", "default", &prompt, config, config]);
        let alone = run(&["stream", "default", &prompt, config]);
        let alone = labelled(&alone, "text");
        assert_eq!(labelled(&together, "a"), alone, "{model_file}: the first of two streams");
        assert_eq!(labelled(&together, "b"), alone, "{model_file}: the second of two streams");
        assert!(alone.len() > 20, "{model_file}: too short an answer to show anything: {alone}");
    }
}
