//! LLaVA-style vision through the real `wasmedge` CLI with the tiny random-weight pair under
//! test-models/tiny (scripts/make-tiny-llava.sh): every way a guest can give a picture yields
//! the greedy tokens of llama-cpp-2's mtmd called natively, and files outside the guest's
//! directories are refused without being opened.

use e2e::native::{self, Image};
use e2e::*;
use inotify::{Inotify, WatchMask};
use llama_cpp_2::mtmd::mtmd_default_marker;
use std::path::PathBuf;

const TINY: &str = "tiny/tiny-llama.gguf";
/// The vision guest's prompt and settings (tests/guests/vision).
const PROMPT: &str = "<|im_start|>user\n<image>\nwhat is in this image<|im_end|>\n<|im_start|>assistant\n";
const N_PREDICT: usize = 16;
const THREADS: i32 = 2;

fn tiny(file: &str) -> PathBuf {
    root().join("test-models/tiny").join(file)
}

fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Native greedy generation with the tiny pair: the bytes as hex (what the guest prints),
/// and the number of tokens.
fn native_with_count(prompt: &str, image: Image) -> (String, usize) {
    let (model, mmproj) = (tiny("tiny-llama.gguf"), tiny("tiny-mmproj.gguf"));
    let (bytes, n) = native::generate_with_images(&model, &mmproj, prompt, &[image], N_PREDICT, THREADS);
    assert!(n > 0, "the native run generated nothing");
    (hex(&bytes), n)
}

fn native(prompt: &str, image: Image) -> String {
    native_with_count(prompt, image).0
}

#[test]
fn pictures_given_every_way_match_native_mtmd_and_outside_files_stay_unopened() {
    // A file that exists, outside every directory the guest is given (it gets the repository).
    let outside_dir = tempfile::tempdir().expect("a folder outside the repository");
    let outside = outside_dir.path().join("secret.png");
    std::fs::copy(tiny("picture-a.png"), &outside).unwrap();
    let mut watch = Inotify::init().expect("inotify");
    watch.watches().add(&outside, WatchMask::OPEN | WatchMask::ACCESS).expect("watch the outside file");

    let out = run_host(
        &[("WASMEDGE_NN_LOG", "error")],
        &["--nn-preload", &ggml_preload("tiny", TINY)],
        &guest("vision"),
        &["tiny", "test-models/tiny", outside.to_str().unwrap(), &sha256(&tiny("tiny-mmproj.gguf"))],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(out.status.success(), "the vision guest (and so the host) must run to the end");
    let line = |label: &str| labelled(&stdout, label);

    let marker = mtmd_default_marker();
    let prompt = PROMPT.replace("<image>", marker);
    let png_a = std::fs::read(tiny("picture-a.png")).unwrap();
    let rgb_a = std::fs::read(tiny("picture-a.rgb")).unwrap();
    let (expected, expected_tokens) = native_with_count(&prompt, Image::Encoded(&png_a));
    assert!(expected_tokens >= 4, "too short to show anything: {expected}");

    // The three ways, and streaming, give native mtmd's tokens.
    for way in ["file", "base64", "tensor", "stream", "after", "pinned"] {
        assert_eq!(line(way), expected, "{way}");
    }
    // Raw pixels are the decoded file: the same natively and through the plugin.
    assert_eq!(native(&prompt, Image::Rgb { width: 48, height: 40, pixels: &rgb_a }), expected);
    assert_eq!(line("rgb"), expected);
    // Another picture is another answer (the image really reaches the model).
    let png_b = std::fs::read(tiny("picture-b.png")).unwrap();
    let expected_b = native(&prompt, Image::Encoded(&png_b));
    assert_eq!(line("file_b"), expected_b);
    assert_ne!(expected_b, expected, "the two pictures give the same answer: the test shows nothing");
    // Without a marker the image goes first.
    let plain = format!("{marker}\n{}", PROMPT.replace("<image>\n", ""));
    assert_eq!(line("no_marker"), native(&plain, Image::Encoded(&png_a)));
    // Output 1: the prompt's tokens include the image's (16 for the tiny projector).
    let meta: serde_json::Value = serde_json::from_str(&line("file_meta")).unwrap();
    assert!(meta["input_tokens"].as_u64().unwrap() > 16, "{meta}");
    assert_eq!(meta["output_tokens"].as_u64(), Some(expected_tokens as u64), "{meta}");

    // The wrong ways: InvalidArgument, with the reason in the log, and the host goes on.
    for case in ["no_mmproj", "undecodable", "outside_image", "outside_mmproj", "two_markers_one_image", "pinned_wrong"]
    {
        assert_eq!(line(case), "error InvalidArgument", "{case}");
    }
    for case in ["wrong_width_at_load", "outside_mmproj_at_load"] {
        assert_eq!(line(case), "InvalidArgument", "{case}");
    }
    let log = String::from_utf8_lossy(&out.stderr);
    e2e::assert_log_says(
        &log,
        &[
            "no projector was given",
            "cannot be decoded as an image",
            "is outside the directories given to the guest",
            "more <image> markers than images",
            "cannot use",
            "not the pinned 0000000000000000000000000000000000000000000000000000000000000000",
        ],
    );
    // The outside file was refused before anything opened it.
    let mut buffer = [0u8; 4096];
    let events: Vec<_> = match watch.read_events(&mut buffer) {
        Ok(events) => events.map(|e| format!("{:?}", e.mask)).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Vec::new(),
        Err(e) => panic!("inotify: {e}"),
    };
    assert!(events.is_empty(), "the host opened the outside file: {events:?}");
    // (The watch itself works: opening the file is seen.)
    std::fs::read(&outside).unwrap();
    assert!(watch.read_events(&mut buffer).map(|e| e.count()).unwrap_or(0) > 0, "inotify saw no open at all");
}

/// A chat about a picture: the second turn, on the context that answered the first, keeps
/// what its KV holds of the conversation (the picture's tokens, compared by the picture's
/// bytes, and the first turn's text) and evaluates only the rest; its greedy answer is a
/// fresh context's, and native mtmd's, for the whole conversation.
#[test]
fn a_second_turn_about_a_picture_evaluates_only_the_new_part() {
    let outside = tempfile::tempdir().unwrap();
    let out = run_host(
        &[("WASMEDGE_NN_LOG", "error")],
        &["--nn-preload", &ggml_preload("tiny", TINY)],
        &guest("vision"),
        &["tiny", "test-models/tiny", outside.path().join("none.png").to_str().unwrap(), &"0".repeat(64)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(out.status.success());
    let line = |label: &str| labelled(&stdout, label);
    let meta = |label: &str| -> serde_json::Value { serde_json::from_str(&line(label)).unwrap() };
    let count = |m: &serde_json::Value, key: &str| m[key].as_u64().unwrap_or_else(|| panic!("{key} in {m}"));
    let (first, second, fresh) = (meta("chat_1_meta"), meta("chat_2_meta"), meta("chat_fresh_meta"));
    let reused = count(&second, "prompt_tokens_reused");
    let evaluated = count(&second, "prompt_tokens_evaluated");
    assert_eq!(reused + evaluated, count(&second, "input_tokens"), "{second}");
    // All of the first turn's prompt (its picture included) is kept.
    assert!(reused >= count(&first, "input_tokens"), "the first turn was not kept: {first} then {second}");
    assert_eq!(count(&fresh, "prompt_tokens_reused"), 0, "{fresh}");
    assert_eq!(count(&fresh, "prompt_tokens_evaluated"), count(&second, "input_tokens"));
    assert_eq!(line("chat_2"), line("chat_fresh"));
    // ... which is native mtmd's answer to the whole conversation.
    let said = String::from_utf8_lossy(&hex_bytes(&line("chat_1"))).into_owned();
    let conversation =
        format!("{PROMPT}{said}<|im_end|>\n<|im_start|>user\nand what colour is it<|im_end|>\n<|im_start|>assistant\n")
            .replace("<image>", mtmd_default_marker());
    let png = std::fs::read(tiny("picture-a.png")).unwrap();
    assert_eq!(line("chat_2"), native(&conversation, Image::Encoded(&png)));
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect()
}

/// The `llava` example (guest-examples/llava) streams what native mtmd generates for the same
/// picture and question.
#[test]
fn llava_example_streams_what_native_mtmd_generates() {
    let question = "what is in this image";
    let config = format!(r#"{{"n-predict": {N_PREDICT}, "threads": {THREADS}, "ctx-size": 2048}}"#);
    let out = run_guest(
        &[ggml_preload("tiny", TINY)],
        "llava",
        &[
            "tiny",
            "test-models/tiny/tiny-mmproj.gguf",
            "test-models/tiny/picture-a.png",
            question,
            &config,
            "--template",
            "chatml",
        ],
    );
    let answer = parse_answer(&out);
    let png = std::fs::read(tiny("picture-a.png")).unwrap();
    let prompt = chatml(&format!("<image>\n{question}")).replace("<image>", mtmd_default_marker());
    let (model, mmproj) = (tiny("tiny-llama.gguf"), tiny("tiny-mmproj.gguf"));
    let (bytes, n) =
        native::generate_with_images(&model, &mmproj, &prompt, &[Image::Encoded(&png)], N_PREDICT, THREADS);
    assert_eq!(answer.text, String::from_utf8_lossy(&bytes));
    assert_eq!(answer.output_tokens, n);
    assert!(answer.input_tokens > 16, "{answer:?}");
}
