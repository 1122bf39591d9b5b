//! The batching engine through the real `wasmedge` CLI: contexts are cheap handles on
//! sequences of one llama.cpp context per model, so a guest that never finalizes keeps
//! working in bounded memory, and batched streams can be cut by unload or by the guest's end.
//! (Interleaved streams equal to their runs alone, swapping, grammar, vision, embeddings and
//! multi-turn reuse are covered where those features are: cli.rs, clients.rs, vision.rs.)

use e2e::*;

/// A guest built with the public guest crate (which cannot finalize) makes a context per
/// request, one request each, 1,000 times: every answer is right, nothing is Busy, and the
/// host's peak memory after 1,000 is within 5% of its peak after 100.
#[test]
fn a_thousand_contexts_never_finalized_all_answer_in_bounded_memory() {
    let out = run_host_with_proc(
        &["--nn-preload", &ggml_preload("default", SMOLLM2)],
        &guest("contexts"),
        &["default", "1000", "100", "1000"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wrong: Vec<&str> = stdout.lines().filter(|l| l.starts_with("wrong:")).collect();
    assert!(wrong.is_empty(), "{} wrong answers, the first: {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    assert_eq!(labelled(&stdout, "answered"), "1000");
    let kib = |label: &str| -> f64 { labelled(&stdout, label).parse().unwrap() };
    let (peak_100, peak_1000) = (kib("peak 100"), kib("peak 1000"));
    let (rss_100, rss_1000) = (kib("rss 100"), kib("rss 1000"));
    println!(
        "peak RSS after 100 contexts: {:.1} MiB, after 1,000: {:.1} MiB ({:+.2}%); RSS {:.1} -> {:.1} MiB",
        peak_100 / 1024.0,
        peak_1000 / 1024.0,
        (peak_1000 / peak_100 - 1.0) * 100.0,
        rss_100 / 1024.0,
        rss_1000 / 1024.0
    );
    assert!(peak_100 > 100_000.0, "the host's memory was not readable");
    assert!(peak_1000 <= peak_100 * 1.05, "900 more contexts took the peak from {peak_100} to {peak_1000} KiB");
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
