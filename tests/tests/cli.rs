//! The real `wasmedge` CLI, the plugin found through WASMEDGE_PLUGIN_PATH, real guests and a
//! real model.

use e2e::*;

#[test]
fn chat_answers_paris() {
    let out = run_guest(&[ggml_preload("default", SMOLLM2)], "chat", &["default", "What is the capital of France?"]);
    let answer = parse_answer(&out);
    assert!(answer.text.contains("Paris"), "answer: {answer:?}");
    assert!(answer.input_tokens > 10 && answer.output_tokens > 0, "{answer:?}");
}

#[test]
fn stream_prints_exactly_what_chat_prints() {
    let preload = [ggml_preload("default", SMOLLM2)];
    for question in ["What is the capital of France?", "Write a haiku about the sea."] {
        let config = r#"{"n-predict": 48}"#;
        let chat = run_guest(&preload, "chat", &["default", question, config]);
        let stream = run_guest(&preload, "stream", &["default", question, config]);
        assert_eq!(parse_answer(&stream), parse_answer(&chat), "question: {question}");
        assert_eq!(stream.stdout, chat.stdout);
    }
}

#[test]
fn two_preloads_give_two_models_by_name() {
    let preloads = [ggml_preload("smol", SMOLLM2), ggml_preload("gemma", GEMMA3)];
    let q = "What is the capital of France?";
    let smol = parse_answer(&run_guest(&preloads, "chat", &["smol", q, r#"{"n-predict": 16}"#]));
    let gemma = parse_answer(&run_guest(&preloads, "chat", &["gemma", q, r#"{"n-predict": 16}"#]));
    // Different vocabularies: the same prompt is a different number of tokens.
    assert_ne!(smol.input_tokens, gemma.input_tokens, "{smol:?} {gemma:?}");
    assert!(smol.output_tokens > 0 && gemma.output_tokens > 0);
    // And each name really is its own model: the answers match each model run alone.
    let smol_alone = parse_answer(&run_guest(&preloads[..1], "chat", &["smol", q, r#"{"n-predict": 16}"#]));
    let gemma_alone = parse_answer(&run_guest(&preloads[1..], "chat", &["gemma", q, r#"{"n-predict": 16}"#]));
    assert_eq!(smol, smol_alone);
    assert_eq!(gemma, gemma_alone);
}

/// Every error path a guest can reach, through the raw ABI, with the host alive after each.
#[test]
fn hostile_and_mistaken_calls_get_their_codes() {
    let preloads = [ggml_preload("default", SMOLLM2), "missing:GGML:AUTO:test-models/no-such-model.gguf".to_string()];
    let out = run_guest_with_env(&[("WASMEDGE_NN_LOG", "error")], &preloads, "nn-probe", &["default", &model(SMOLLM2)]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(out.status.success(), "the probe (and so the host) must run to the end");
    let line = |case: &str| labelled(&stdout, case);
    let expected = [
        ("unsupported_encoding", "2"),
        ("out_of_bounds_builders", "1"),
        ("not_a_model", "1"),
        ("load_from_bytes", "0"),
        ("load_from_bytes_compute", "0"),
        ("load_from_bytes_unload", "0"),
        ("unknown_name", "8"),
        ("missing_file", "103"),
        ("bad_graph_handle", "1"),
        ("bad_context_handle", "1"),
        ("out_of_bounds_out_ptr", "1"),
        ("out_of_bounds_tensor", "1"),
        ("out_of_bounds_tensor_data", "1"),
        ("out_of_bounds_tensor_dims", "1"),
        ("bad_tensor_type", "1"),
        ("unparsable_metadata", "2"),
        ("wrong_type_metadata", "1"),
        ("out_of_bounds_output_buffer", "1"),
        ("out_of_bounds_output_written", "1"),
        ("prompt_too_long", "102"),
        ("prompt_too_long_single", "102"),
        ("metadata_after_error", "0"),
        ("context_full", "101"),
        ("compute", "0"),
        ("output_too_small", "7"),
        ("fini_single", "0"),
        ("unload", "0"),
        ("unload_again", "1"),
        ("context_of_unloaded_graph", "1"),
        ("alive_compute", "0"),
    ];
    for (case, code) in expected {
        assert_eq!(line(case), code, "case {case}");
    }
    // ContextFull leaves the partial answer readable, and it is not empty.
    let partial: Vec<usize> = line("context_full_output").split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(partial[0], 0, "get_output after ContextFull succeeds");
    assert!(partial[1] > 0, "partial output: {partial:?}");
    // TooLarge wrote the size needed, which is what a large enough buffer then receives.
    let needed: Vec<usize> = line("needed_size").split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!((needed[0], needed[2]), (needed[1], 0));
    assert!(needed[0] > 2);
    // Streaming stops after n-predict (4) tokens with EndOfSequence.
    assert_eq!(line("stream_steps"), "4 100");
    assert!(line("alive_answer").contains("Paris"));
    // Output 1 carries the last error's message.
    let meta: serde_json::Value = serde_json::from_str(&line("last_error")).unwrap();
    let last = meta["last_error"].as_str().unwrap_or_default();
    assert!(last.contains("tokens but ctx-size is 64"), "output 1: {meta}");
    assert!(line("load_from_bytes_answer").contains("Paris"));
    // Each failure is explained in the log (turned on here with WASMEDGE_NN_LOG=error).
    let log = String::from_utf8_lossy(&out.stderr);
    e2e::assert_log_says(
        &log,
        &[
            "no model preloaded as 'no-such-model'",
            "no-such-model.gguf' for 'missing' does not exist",
            "lies outside the guest's memory",
            "unknown graph handle",
            "unknown execution context handle",
            "tensor type I64 is not supported",
            "metadata is not valid JSON",
            "metadata has a value of the wrong type",
            "graph encoding 'onnx' is not supported",
            "call again with a larger buffer",
        ],
    );
}

/// A guest that exports no memory gets MissingMemory (3) instead of a trap. The module exits
/// with the code `compute` returned.
#[test]
fn guest_without_memory_gets_missing_memory() {
    let wasm = wat::parse_str(
        r#"(module
             (import "wasi_ephemeral_nn" "compute" (func $compute (param i32) (result i32)))
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (func (export "_start") (call $exit (call $compute (i32.const 0)))))"#,
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("nn-no-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("no-memory.wasm");
    std::fs::write(&path, wasm).unwrap();
    let out = run_wasm(&[], &[], &path, &[]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

/// Contexts of one graph, advanced in turn token by token, produce exactly the streams each
/// produces alone, though the engine decodes them together: 2 streams, 8 streams in 8 slots
/// (tokens decoded in batches of 8), and 8 streams in the default 4 slots (batches of 4, the
/// streams taking turns in the slots, their KV copied out and back). Every prompt is
/// evaluated ahead as it is given; computed last to first (`reverse`), with fewer slots than
/// streams, the first contexts' prompts evaluated ahead are taken back when later contexts
/// need their slots, and evaluated again when their own turn comes.
#[test]
fn interleaved_contexts_do_not_interfere() {
    for (n, slots, order) in
        [("2", "4", ""), ("8", "8", ""), ("8", "4", ""), ("8", "4", "reverse"), ("3", "1", "reverse")]
    {
        let args: Vec<&str> = [n, order].into_iter().filter(|a| !a.is_empty()).collect();
        let stdout = run_test_guest_with(&[], &["--nn-slots", slots], "interleave", &args);
        let stream = |label: String| labelled(&stdout, &label);
        let (n, slots): (usize, usize) = (n.parse().unwrap(), slots.parse().unwrap());
        for i in 0..n {
            assert_eq!(stream(format!("interleaved_{i}")), stream(format!("alone_{i}")), "stream {i} of {n}");
            let tokens: usize = stream(format!("alone_{i}")).split(' ').next().unwrap().parse().unwrap();
            assert!(tokens >= 5, "stream {i} is too short to show anything: {tokens} tokens");
        }
        assert_ne!(stream("alone_0".into()), stream("alone_1".into()));
        let batched: usize = stream("batched".into()).parse().unwrap();
        assert!(batched >= n.min(slots), "{n} streams were never decoded together (largest batch: {batched} tokens)");
    }
}

/// Multi-turn chat on one context: later turns reuse the conversation already in the KV
/// cache, and the answers are those of a fresh context given the whole conversation.
#[test]
fn multi_turn_reuses_the_prompt_prefix() {
    let stdout = run_test_guest("multi-turn");
    let line = |label: &str| labelled(&stdout, label);
    let meta = |label: &str| -> serde_json::Value { serde_json::from_str(&line(label)).unwrap() };
    let (turn1, turn3, fresh) = (meta("turn 1"), meta("turn 3"), meta("fresh"));
    assert_eq!(turn1["prompt_tokens_reused"], 0);
    let reused = turn3["prompt_tokens_reused"].as_u64().unwrap();
    assert!(reused > 0, "turn 3 reused nothing: {turn3}");
    assert_eq!(
        reused + turn3["prompt_tokens_evaluated"].as_u64().unwrap(),
        turn3["input_tokens"].as_u64().unwrap(),
        "{turn3}"
    );
    assert_eq!(fresh["prompt_tokens_reused"], 0);
    assert_eq!(fresh["input_tokens"], turn3["input_tokens"]);
    assert_eq!(line("answer 3"), line("fresh answer"));
    assert_eq!(fresh["output_tokens"], turn3["output_tokens"]);
}

/// Streaming through a worker that runs ahead gives exactly the tokens of streaming in the
/// guest's thread and of `compute`, whatever the window; a stream stopped by `fini_single`,
/// a new input or finalisation leaves the host (and the context) answering correctly.
#[test]
fn run_ahead_streams_equal_blocking_ones_and_stop_cleanly() {
    let stdout = run_test_guest_with(&[], &[], "stream-control", &["windows"]);
    let line = |label: &str| labelled(&stdout, label);
    let inline = line("run_ahead_0");
    for window in [1, 4, 64] {
        assert_eq!(line(&format!("run_ahead_{window}")), inline, "run-ahead {window}");
    }
    // The stream's tokens, joined, are compute's output.
    let tokens: Vec<String> = {
        let list = inline.split_once(' ').unwrap().1;
        serde_json::from_str(list).expect("a list of strings")
    };
    assert!(tokens.len() >= 8, "too short to show anything: {inline}");
    assert_eq!(format!("{:?}", tokens.concat()), line("compute"));

    assert_eq!(line("fini_single"), "ok");
    let first3: Vec<String> = serde_json::from_str(line("first_3").split_once(' ').unwrap().1).unwrap();
    assert_eq!(first3, tokens[..3], "a long stream starts like the short one");
    assert_eq!(line("after_fini"), inline, "the context streams afresh after a cancelled stream");
    assert_eq!(line("after_set_input"), line("fresh_other"), "set_input mid-stream, then compute");
    assert_eq!(line("finalize"), "ok");
    for timing in ["fini_single_ms", "finalize_ms"] {
        let ms: f64 = line(timing).parse().unwrap();
        println!("{timing}: {ms}");
    }
}

/// Output 3 says whether `compute_single` would wait on work under way: 0 right after a long
/// prompt is given (it is being evaluated ahead), then 1; a stream read only when it says 1
/// gives exactly the tokens of one read blindly; with run-ahead 0 it always says 1 (nothing
/// is computed unasked); after the end, 1.
#[test]
fn output_3_says_when_compute_single_would_wait() {
    let stdout = run_test_guest_with(&[], &[], "stream-control", &["ready"]);
    let line = |label: &str| labelled(&stdout, label);
    assert_eq!(line("after_set_input"), "0", "a 1,500-token prompt was evaluated before set_input returned?");
    println!("ready after {} ms ({} polls)", line("became_ready_ms"), line("became_ready_after_polls"));
    assert!(line("polled_stream").starts_with("12 "), "{}", line("polled_stream"));
    assert_eq!(line("polled_stream"), line("plain_stream"));
    assert_eq!(line("after_end"), "1");
    assert_eq!(line("run_ahead_0_always_ready"), "true");
}

/// The host's caps: `--nn-max-contexts` gives Busy (4) beyond it. With one sequence slot
/// (`WASMEDGE_NN_SLOTS=1`) two streams take turns in it instead of one getting Busy:
/// each one's KV is copied out while the other generates and copied back for its next
/// token, and each gives exactly the tokens it gives alone.
#[test]
fn context_cap_answers_busy_and_streams_take_turns_in_one_slot() {
    let stdout =
        run_test_guest_with(&[("WASMEDGE_NN_SLOTS", "1")], &["--nn-max-contexts", "2"], "stream-control", &["limits"]);
    let line = |label: &str| labelled(&stdout, label);
    assert_eq!(line("third_context"), "Busy");
    let (a, b) = (line("a_interleaved"), line("b_interleaved"));
    assert!(a.starts_with("12 "), "{a}");
    assert_eq!(a, line("a_alone"), "a's stream, taking turns, equals a alone");
    // b's whole answer computed again (its KV swapped back in and its prompt reused) is the
    // text it streamed.
    let b_text: Vec<String> = serde_json::from_str(b.split_once(' ').unwrap().1).unwrap();
    assert_eq!(format!("{:?}", b_text.concat()), line("b_alone_compute"));
    assert_eq!(line("a_fini"), "ok");
    assert_eq!(line("a_finalize"), "ok");
}
