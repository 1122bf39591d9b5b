//! Greedy output through WasmEdge equals llama-cpp-2 called natively with the same model,
//! prompt and parameters.

use e2e::*;

#[test]
fn greedy_generation_matches_native_llama_cpp() {
    let preload = [ggml_preload("default", SMOLLM2)];
    let questions = [
        "Explain in detail how photosynthesis works.",
        "Write a short story about a robot who learns to paint.",
        "List ten fruits and say one thing about each.",
    ];
    let (n_predict, ctx_size, threads) = (64, 4096, 2);
    let config = format!(r#"{{"temp": 0, "n-predict": {n_predict}, "ctx-size": {ctx_size}, "threads": {threads}}}"#);
    for q in questions {
        let through_wasmedge = parse_answer(&run_guest(&preload, "chat", &["default", q, &config]));
        let (bytes, tokens) =
            native::generate(&e2e::root().join(model(SMOLLM2)), &chatml(q), n_predict, ctx_size, threads);
        let native = String::from_utf8(bytes).expect("UTF-8");
        assert!(tokens >= 32, "the native answer to '{q}' is only {tokens} tokens: pick a longer question");
        assert_eq!(through_wasmedge.text, native, "question: {q}");
        assert_eq!(through_wasmedge.output_tokens, tokens, "question: {q}");
    }
}
