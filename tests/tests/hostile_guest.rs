//! A guest that throws random call sequences at the real plugin (`tests/guests/stress`):
//! calls on stale and made-up handles, double finalize and unload, set_input in the middle of
//! a stream, compute without input, bad pointers, metadata that breaks a rule, prompts that do
//! not fit. The host must answer every call with a documented code, keep the guest's handles
//! straight, and still give the same answers afterwards.

use e2e::{labelled, model, SPEECH, WHISPER_TINY_EN};

const CALLS: usize = 2500;

fn storm(seed: u64) -> String {
    let preloads = [
        "tiny:GGML:AUTO:test-models/tiny/tiny-llama.gguf".to_string(),
        format!("whisper:Whisper:AUTO:{}", model(WHISPER_TINY_EN)),
    ];
    let wav = format!("{SPEECH}/door.wav");
    let (seed, calls) = (seed.to_string(), CALLS.to_string());
    let out = e2e::run_wasm(
        &[("WASMEDGE_NN_LOG", "off")],
        &preloads,
        &e2e::guest("stress"),
        &[&seed, &calls, "test-models/tiny/tiny-llama.gguf", &wav],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(out.status.success(), "the stress guest (seed {seed}) failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(labelled(&stdout, "stress"), "survived");
    stdout
}

/// How often `call` answered `code`.
fn count(stdout: &str, call: &str, code: u32) -> u32 {
    stdout.lines().find_map(|l| l.strip_prefix(&format!("code {call} {code}: "))).map_or(0, |n| n.parse().unwrap())
}

#[test]
fn random_call_sequences_get_documented_codes_and_leave_the_host_answering() {
    for seed in [1, 2] {
        let stdout = storm(seed);
        let calls: usize = labelled(&stdout, "calls").parse().unwrap();
        let checks: usize = labelled(&stdout, "checks").parse().unwrap();
        assert!(calls >= CALLS, "only {calls} calls were made");
        assert!(checks >= 300, "only {checks} answers were checked");
        // The storm reached what it is meant to: each of these happened at least once.
        for (call, code, what) in [
            ("load", 0, "a model loaded"),
            ("load", 1, "a broken model refused"),
            ("load", 2, "an unsupported encoding refused"),
            ("load", 8, "an unknown name refused"),
            ("init_execution_context", 1, "a stale graph handle refused"),
            ("set_input", 1, "a broken tensor or stale context refused"),
            ("set_input", 2, "unparsable metadata refused"),
            ("set_input", 7, "a ctx-size above the cap refused"),
            ("compute", 0, "a computation done"),
            ("compute", 102, "a prompt too long for the context"),
            ("compute_single", 0, "a token streamed"),
            ("compute_single", 100, "a stream ended"),
            ("get_output", 7, "a buffer too small"),
            ("get_output_single", 0, "a streamed piece read"),
            ("finalize_execution_context", 0, "a context finalized"),
            ("finalize_execution_context", 1, "a finalized context finalized again"),
            ("unload", 1, "an unloaded graph unloaded again"),
        ] {
            assert!(count(&stdout, call, code) > 0, "seed {seed}: never {what} ({call} → {code})");
        }
    }
}
