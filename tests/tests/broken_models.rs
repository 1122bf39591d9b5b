//! Broken model files, given to the real plugin through a guest: each gets InvalidArgument
//! with its reason in the log, never a crash, and the host then still loads and runs good
//! models of both backends.

use e2e::{guest, model, root, run_host, SMOLLM2, WHISPER_TINY_EN};

#[test]
fn broken_models_are_refused_with_reasons_and_the_host_lives_on() {
    let gguf = std::fs::read(root().join(model(SMOLLM2))).unwrap();
    let whisper = std::fs::read(root().join(model(WHISPER_TINY_EN))).unwrap();
    // No leading dot in the name: WasmEdge does not preopen such folders.
    let dir = tempfile::Builder::new().prefix("broken-models-").tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let mut bad_magic = gguf[..2 << 20].to_vec();
    bad_magic[..4].copy_from_slice(b"XXXX");
    // Tensor data overwritten (the last 4 MiB): GGUF has no checksums, so this loads and
    // runs; it must not bring the host down (sha256 pinning is what catches it). The bytes
    // are 0x3C, whose half floats are ordinary numbers: random bytes make NaNs and subnormals,
    // which are merely slow (minutes per token) and would say nothing more.
    let mut corrupt = gguf.clone();
    let n = corrupt.len();
    corrupt[n - (4 << 20)..].fill(0x3C);
    let cases = [
        ("ggml", "gguf_header_only", write("a.gguf", &gguf[..1_000_000])),
        ("ggml", "gguf_half", write("b.gguf", &gguf[..gguf.len() / 2])),
        ("ggml", "gguf_bad_magic", write("c.gguf", &bad_magic)),
        ("ggml", "gguf_empty", write("d.gguf", b"")),
        ("ggml", "whisper_as_ggml", write("e.bin", &whisper)),
        ("whisper", "gguf_as_whisper", write("f.gguf", &gguf)),
        ("whisper", "whisper_cut_in_header", write("g.bin", &whisper[..30_000])),
        ("whisper", "whisper_cut_in_tensors", write("h.bin", &whisper[..whisper.len() - 12_345])),
        ("whisper", "whisper_empty", write("i.bin", b"")),
        ("ggml", "gguf_corrupt_data", write("j.gguf", &corrupt)),
        ("ggml", "good_gguf", write("k.gguf", &gguf)),
        ("whisper", "good_whisper", write("l.bin", &whisper)),
    ];
    let args: Vec<String> = cases.iter().map(|(enc, label, path)| format!("{enc}:{label}:{path}")).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = dir.path().to_str().unwrap();
    let preopen = format!("{d}:{d}");
    let out = run_host(&[("WASMEDGE_NN_LOG", "error")], &["--dir", &preopen], &guest("load-files"), &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(out.status.success(), "the host must survive every file");
    let line = |label: &str| e2e::labelled(&stdout, label);
    for (_, label, _) in &cases[..9] {
        assert_eq!(line(label), "InvalidArgument", "{label}");
    }
    assert_eq!(line("gguf_corrupt_data"), "Ok");
    assert!(stdout.contains("gguf_corrupt_data_compute: "), "the corrupt model was run");
    assert_eq!((line("good_gguf"), line("good_gguf_compute")), ("Ok".into(), "Ok".into()));
    assert_eq!((line("good_whisper"), line("good_whisper_compute")), ("Ok".into(), "Ok".into()));
    assert!(stdout.trim_end().ends_with("alive"));
    let log = String::from_utf8_lossy(&out.stderr);
    e2e::assert_log_says(
        &log,
        &[
            "invalid magic characters",
            "data is not within the file bounds",
            "is not a whole whisper.cpp model: the file ends inside the mel filters",
            "is not a whole whisper.cpp model: the file ends inside tensor",
            "neither a whisper.cpp model",
            "builder 0 (the model's bytes or path) is empty",
        ],
    );
}

/// A preload pinned with `#sha256=` loads when the file matches and is refused, before
/// loading, when it does not.
#[test]
fn pinned_preloads_load_only_the_file_they_name() {
    use sha2::{Digest, Sha256};
    let path = model(SMOLLM2);
    let sum: String =
        Sha256::digest(std::fs::read(root().join(&path)).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    let q = ["default", "What is the capital of France?", r#"{"n-predict": 8}"#];
    let pinned = format!("default:GGML:AUTO:{path}#sha256={sum}");
    let answer = e2e::parse_answer(&e2e::run_guest(&[pinned], "chat", &q));
    assert!(answer.text.contains("Paris"), "{answer:?}");

    let wrong = format!("default:GGML:AUTO:{path}#sha256={}", "0".repeat(64));
    let out = e2e::run_guest_with_env(&[("WASMEDGE_NN_LOG", "error")], &[wrong], "chat", &q);
    assert!(!out.status.success(), "a mismatching pin must keep the model out");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("Caller module passed an invalid argument"), "InvalidArgument expected:\n{log}");
    assert!(log.contains(&format!("has sha256 {sum}, not the pinned {}", "0".repeat(64))), "{log}");
}
