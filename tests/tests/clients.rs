//! What real clients of WASI-NN do beyond chat, through the real `wasmedge` CLI and the
//! `client` test guest: embeddings, grammars and JSON schemas, per-context settings, a name
//! loaded with several configs, unload during a stream, load from bytes.

use e2e::*;
use std::path::Path;
use std::process::Output;

const THREADS: i32 = 2;

fn client(env: &[(&str, &str)], args: &[&str]) -> Output {
    run_guest_with_env(env, &[ggml_preload("default", SMOLLM2)], "client", args)
}

/// The client's stdout, which must have succeeded.
fn client_ok(args: &[&str]) -> String {
    let out = client(&[], args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(out.status.success(), "client {args:?} failed:\n{stdout}");
    stdout
}

/// A Rust-escaped string as the guest prints it (`"..."`), back to text.
fn unquote(s: &str) -> String {
    let inner = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or_else(|| panic!("not quoted: {s}"));
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn text(stdout: &str, label: &str) -> String {
    unquote(&labelled(stdout, label))
}

fn embedding_of(stdout: &str) -> Vec<f32> {
    let json: serde_json::Value = serde_json::from_str(&labelled(stdout, "embedding")).expect("embedding JSON");
    let values: Vec<f32> =
        json["embedding"].as_array().expect("an embedding array").iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(json["n_embedding"].as_u64(), Some(values.len() as u64), "{json}");
    values
}

#[test]
fn embeddings_equal_native_llama_cpp_and_have_unit_length() {
    let text = "The quick brown fox jumps over the lazy dog.";
    let stdout = client_ok(&["embed", "default", text, r#"{"embedding": true}"#]);
    let plugin = embedding_of(&stdout);
    let (native, n_tokens) = native::embedding(&root().join(model(SMOLLM2)), text, THREADS);
    assert_eq!(plugin.len(), native.len());
    assert_eq!(plugin.len(), 576, "SmolLM2-135M's n_embd");
    let worst = plugin.iter().zip(&native).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("largest difference from native: {worst:e}");
    assert!(worst <= 1e-5, "largest difference {worst}");
    let length = plugin.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    assert!((length - 1.0).abs() < 1e-5, "length {length}");
    let meta: serde_json::Value = serde_json::from_str(&labelled(&stdout, "metadata")).unwrap();
    assert_eq!(meta["input_tokens"].as_u64(), Some(n_tokens as u64), "{meta}");

    // embd-normalize -1: the raw vector, the same direction.
    let raw = embedding_of(&client_ok(&["embed", "default", text, r#"{"embedding": true, "embd-normalize": -1}"#]));
    let raw_length = raw.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    assert!(raw_length > 1.5, "an unnormalised hidden state is longer than 1: {raw_length}");
    for (r, p) in raw.iter().zip(&plugin) {
        assert!((f64::from(*r) / raw_length - f64::from(*p)).abs() < 1e-5);
    }
}

#[test]
fn a_text_longer_than_the_batch_is_prompt_too_long() {
    let long = "word ".repeat(40);
    let out = client(
        &[("WASMEDGE_NN_LOG", "info")],
        &["embed", "default", &long, r#"{"embedding": true, "batch-size": 16}"#],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("error: compute: BackendError(PromptTooLong)"), "{stdout}");
    assert_log_says(&String::from_utf8_lossy(&out.stderr), &["an embedding takes at most batch-size (16)"]);
}

#[test]
fn embedding_and_generation_graphs_of_one_model_coexist() {
    let stdout = client_ok(&[
        "configs",
        "default",
        &chatml("What is the capital of France?"),
        r#"{"embedding": true}"#,
        r#"{"temp": 0, "n-predict": 12}"#,
    ]);
    let a: serde_json::Value = serde_json::from_str(&text(&stdout, "a")).expect("graph a embeds");
    assert_eq!(a["n_embedding"], 576);
    assert!(text(&stdout, "b").contains("Paris"), "graph b generates");
    assert_eq!(text(&stdout, "a again"), text(&stdout, "a"));
}

const YES_NO: &str = r#"root ::= "yes" | "no""#;

fn with_grammar(grammar: &str, extra: &str) -> String {
    serde_json::json!({"grammar": grammar}).to_string().replacen('{', &format!("{{{extra}"), 1)
}

#[test]
fn a_grammar_allowing_only_yes_or_no_yields_one_of_them() {
    let prompt = chatml("Is the sky blue? Answer in one word.");
    for config in [
        with_grammar(YES_NO, r#""temp": 0, "n-predict": 16, "#),
        with_grammar(YES_NO, r#""temp": 1.5, "seed": 7, "n-predict": 16, "#),
    ] {
        let whole = text(&client_ok(&["generate", "default", &prompt, &config]), "text");
        assert!(whole == "yes" || whole == "no", "{config}: {whole:?}");
        let streamed = text(&client_ok(&["stream", "default", &prompt, &config]), "text");
        assert_eq!(streamed, whole, "{config}");
    }
    // Without the grammar the model says more than that.
    let free = text(&client_ok(&["generate", "default", &prompt, r#"{"temp": 0, "n-predict": 16}"#]), "text");
    assert!(free != "yes" && free != "no", "{free:?}");
}

fn person_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": false
    })
}

/// The output validates against [`person_schema`]: an object with exactly a string `name`
/// and an integer `age`.
fn assert_person(output: &str) {
    let v: serde_json::Value = serde_json::from_str(output).unwrap_or_else(|e| panic!("not JSON ({e}): {output:?}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert!(obj["name"].is_string(), "{v}");
    assert!(obj["age"].is_i64() || obj["age"].is_u64(), "{v}");
    assert_eq!(obj.len(), 2, "{v}");
}

#[test]
fn a_json_schema_yields_json_that_validates() {
    let prompt = chatml("Describe a person called Alice, aged 30, as JSON.");
    let schema = person_schema();
    // As an object and as a string holding one (clients send both).
    for given in [schema.clone(), serde_json::Value::String(schema.to_string())] {
        let config = serde_json::json!({"json-schema": given, "temp": 0, "n-predict": 96}).to_string();
        let whole = text(&client_ok(&["generate", "default", &prompt, &config]), "text");
        assert_person(&whole);
        let streamed = text(&client_ok(&["stream", "default", &prompt, &config]), "text");
        assert_eq!(streamed, whole);
    }
}

#[test]
fn an_invalid_grammar_or_schema_is_invalid_argument_with_the_reason() {
    let prompt = chatml("Hi");
    for (config, says) in [
        (with_grammar(r#"root ::= ("yes" | "no""#, ""), "expecting ')'"),
        (with_grammar(r#"start ::= "yes""#, ""), "root not found"),
        (r#"{"json-schema": "{not json"}"#.to_string(), "json-schema is not JSON"),
        (r#"{"json-schema": {"type": "object"}, "grammar": "root ::= \"x\""}"#.to_string(), "not both"),
    ] {
        let out = client(&[("WASMEDGE_NN_LOG", "warn")], &["generate", "default", &prompt, &config]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("error: set_input(1): BackendError(InvalidArgument)"), "{config}: {stdout}");
        assert_log_says(&String::from_utf8_lossy(&out.stderr), &[says]);
    }
}

#[test]
fn two_contexts_of_one_graph_each_follow_their_own_settings() {
    let prompt = chatml("Is the sky blue? Answer in one word.");
    let short = r#"{"temp": 0, "n-predict": 3}"#;
    let yes_no = with_grammar(YES_NO, r#""temp": 0, "n-predict": 16, "#);
    let stdout = client_ok(&["two-contexts", "default", &prompt, short, &yes_no]);
    let alone_a = text(&client_ok(&["stream", "default", &prompt, short]), "text");
    let alone_b = text(&client_ok(&["stream", "default", &prompt, &yes_no]), "text");
    assert_eq!(text(&stdout, "a"), alone_a);
    assert_eq!(text(&stdout, "b"), alone_b);
    assert!(alone_b == "yes" || alone_b == "no");
    assert_ne!(alone_a, alone_b);
}

/// load_by_name_with_config for a loaded name with another config gives a graph with that
/// config (WasmEdge's plugin silently keeps the first); no config gives the latest.
#[test]
fn a_name_loaded_with_another_config_gets_a_graph_with_it() {
    let prompt = chatml("What is the capital of France?");
    let out = client(
        &[("WASMEDGE_NN_LOG", "info")],
        &["configs", "default", &prompt, r#"{"temp": 0, "n-predict": 2}"#, r#"{"temp": 0, "n-predict": 12}"#],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(out.status.success());
    let handles: Vec<&str> = labelled(&stdout, "handles").leak().split(' ').collect();
    assert_eq!(handles.len(), 4);
    assert_ne!(handles[0], handles[1], "another config, another graph");
    assert_ne!(handles[2], handles[0], "handles are never reused");
    assert_eq!(handles[3], handles[2], "no config: the name's latest graph");
    let (a, b) = (text(&stdout, "a"), text(&stdout, "b"));
    assert!(b.starts_with(&a) && b.len() > a.len() && b.contains("Paris"), "a {a:?}, b {b:?}");
    assert_eq!(text(&stdout, "a again"), a);
    assert_eq!(text(&stdout, "plain"), a);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_log_says(&log, &["is loaded with another config"]);
    // The weights were loaded once.
    assert_eq!(log.matches("parameters,").count(), 1, "{log}");

    // A load-time setting that differs loads the model again, with it.
    let out = client(
        &[("WASMEDGE_NN_LOG", "info")],
        &[
            "configs",
            "default",
            &prompt,
            r#"{"temp": 0, "n-predict": 12}"#,
            r#"{"temp": 0, "n-predict": 12, "use-mmap": false}"#,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert_eq!(text(&stdout, "b"), text(&stdout, "a"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert_log_says(&log, &["again for its new load-time settings"]);
    assert_eq!(log.matches("parameters,").count(), 2, "{log}");
}

#[test]
fn unloading_a_graph_while_it_streams_is_safe() {
    let prompt = chatml("Tell me a long story about a dragon.");
    let stdout = client_ok(&["unload-while-streaming", "default", &prompt]);
    assert!(!text(&stdout, "first token").is_empty());
    // The context went with its graph: using it is an error, not a crash.
    assert_eq!(labelled(&stdout, "after unload"), "BackendError(InvalidArgument)");
    assert!(!text(&stdout, "answer").is_empty());
}

#[test]
fn setting_the_same_prompt_twice_counts_the_same_tokens() {
    let stdout = client_ok(&["input-twice", "default", &chatml("What is the capital of France?")]);
    let first: serde_json::Value = serde_json::from_str(&labelled(&stdout, "first")).unwrap();
    let second: serde_json::Value = serde_json::from_str(&labelled(&stdout, "second")).unwrap();
    assert_eq!(first["input_tokens"], second["input_tokens"]);
    assert!(first["input_tokens"].as_u64().unwrap() > 10);
}

/// Every file under `dir` with its size and modification time.
fn listing(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        all.push((entry.file_name().to_string_lossy().into_owned(), meta.len(), meta.modified().unwrap()));
    }
    all.sort();
    all
}

#[test]
fn loading_from_bytes_writes_no_file() {
    let guest_dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("test-models/tiny/tiny-llama.gguf"), guest_dir.path().join("model.gguf")).unwrap();
    let before = listing(guest_dir.path());
    let config = r#"{"temp": 0, "n-predict": 8, "ignore-eos": true}"#;
    let out = wasmedge_command()
        .current_dir(guest_dir.path())
        .env("WASMEDGE_PLUGIN_PATH", plugin_dir())
        .env("TMPDIR", tmp.path())
        .args(["--dir", ".:."])
        .arg(guest("client"))
        .args(["from-bytes", "model.gguf", "hello", config])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert_eq!(listing(guest_dir.path()), before, "the guest's directory changed");
    assert!(listing(tmp.path()).is_empty(), "files left in TMPDIR: {:?}", listing(tmp.path()));
    // The same text as the file preloaded by name.
    let by_name = run_guest(
        &["tiny:GGML:AUTO:test-models/tiny/tiny-llama.gguf".to_string()],
        "client",
        &["generate", "tiny", "hello", config],
    );
    let by_name = String::from_utf8_lossy(&by_name.stdout).into_owned();
    assert_eq!(text(&stdout, "text"), text(&by_name, "text"));
    assert!(!text(&stdout, "text").is_empty());
}

/// Metadata on a context cannot change how the model was loaded: said once, and the context
/// works on (LlamaEdge sends `n-gpu-layers` with every request).
#[test]
fn load_time_keys_on_a_context_are_reported_and_ignored() {
    let out = client(
        &[("WASMEDGE_NN_LOG", "warn")],
        &[
            "two-contexts",
            "default",
            &chatml("What is the capital of France?"),
            r#"{"temp": 0, "n-predict": 12, "n-gpu-layers": 100}"#,
            r#"{"temp": 0, "n-predict": 12, "n-gpu-layers": 100, "use-mmap": false}"#,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(text(&stdout, "a").contains("Paris") && text(&stdout, "a") == text(&stdout, "b"), "{stdout}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("are load-time settings").count(), 1, "{log}");
}

/// A LlamaEdge-style chat loop in a small context: the guest applies the template, trims
/// the oldest exchanges when the prompt passes 4/5 of ctx-size (it reads the size from output
/// 1 before computing), and keeps the partial answer when the context fills up.
#[test]
fn a_llamaedge_style_chat_trims_its_history_and_survives_a_full_context() {
    let config = r#"{"ctx-size": 256, "temp": 0, "n-predict": 1000}"#;
    let questions = [
        "Tell me about the history of Paris in detail.",
        "Tell me about the history of Rome in detail.",
        "Tell me about the history of London in detail.",
    ];
    let args: Vec<&str> = ["chat-loop", "default", config].into_iter().chain(questions).collect();
    let stdout = client_ok(&args);
    let (mut dropped, mut full) = (0, 0);
    for turn in 0..questions.len() {
        let line = labelled(&stdout, &format!("turn {turn}"));
        let get = |key: &str| line.split(' ').find_map(|kv| kv.strip_prefix(&format!("{key}="))).unwrap().to_string();
        let tokens: u64 = get("input_tokens").parse().unwrap();
        assert!(tokens <= 256 * 4 / 5, "turn {turn}: the prompt was not trimmed: {line}");
        dropped += get("dropped").parse::<u32>().unwrap();
        full += u32::from(get("finish") == "length");
        assert!(!text(&stdout, &format!("answer {turn}")).trim().is_empty(), "turn {turn}");
    }
    assert!(full > 0, "no answer filled the context:\n{stdout}");
    assert!(dropped > 0, "no turn had to drop history:\n{stdout}");
}

/// LlamaEdge's reverse prompt: the answer stops where it first appears, which stays in it.
#[test]
fn a_reverse_prompt_ends_the_answer() {
    let config = r#"{"ctx-size": 1024, "temp": 0, "n-predict": 200, "reverse-prompt": "."}"#;
    let stdout = client_ok(&["chat-loop", "default", config, "Tell me about the history of Paris in detail."]);
    let answer = text(&stdout, "answer 0");
    assert!(labelled(&stdout, "turn 0").ends_with("finish=stop"));
    assert!(answer.ends_with('.') && answer.matches('.').count() == 1, "{answer:?}");
}

/// llama.cpp's build record as the libllama-common shipped beside the plugin holds it,
/// read with dlsym: the number, and the commit string.
fn shipped_build_info() -> (u64, String) {
    use std::ffi::{c_char, c_int, CStr, CString};
    let lib = plugin_dir().join("wasmedge-nn/libllama-common.so.0");
    let path = CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: dlopen/dlsym with NUL-terminated names; the symbols are build-info.cpp's
    // `int LLAMA_BUILD_NUMBER` and `char const * LLAMA_COMMIT`, read as such; the library
    // stays loaded (never dlclosed).
    unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!handle.is_null(), "dlopen {}: {:?}", lib.display(), CStr::from_ptr(libc::dlerror()));
        let number = libc::dlsym(handle, c"LLAMA_BUILD_NUMBER".as_ptr()) as *const c_int;
        let commit = libc::dlsym(handle, c"LLAMA_COMMIT".as_ptr()) as *const *const c_char;
        assert!(!number.is_null() && !commit.is_null(), "build-info symbols missing from {}", lib.display());
        (*number as u64, CStr::from_ptr(*commit).to_string_lossy().into_owned())
    }
}

/// The versions written in the llama.cpp sources that cargo resolved for llama-cpp-sys-2
/// (found with `cargo metadata`, not through the build): llama.cpp's, as its CMakeLists makes
/// LLAMA_VERSION (with "-dev" while LLAMA_BUILD_IS_DEV defaults ON), and ggml's.
fn vendored_versions() -> (String, String) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--manifest-path"])
        .arg(root().join("Cargo.toml"))
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "llama-cpp-sys-2")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("llama-cpp-sys-2 among the packages");
    let sources = Path::new(manifest).parent().unwrap().join("llama.cpp");
    let cmake = |file: &str| std::fs::read_to_string(sources.join(file)).unwrap();
    let number = |text: &str, name: &str| {
        let line = text.lines().find_map(|l| l.trim().strip_prefix(&format!("set({name} ")));
        line.and_then(|rest| rest.strip_suffix(')')).unwrap_or_else(|| panic!("{name} in the sources")).to_owned()
    };
    let version = |text: &str, project: &str| {
        ["MAJOR", "MINOR", "PATCH"].map(|part| number(text, &format!("{project}_VERSION_{part}"))).join(".")
    };
    let llama = cmake("CMakeLists.txt");
    let dev = llama.lines().any(|l| l.starts_with("option(LLAMA_BUILD_IS_DEV") && l.trim_end().ends_with("ON)"));
    (
        format!("{}{}", version(&llama, "LLAMA"), if dev { "-dev" } else { "" }),
        version(&cmake("ggml/CMakeLists.txt"), "GGML"),
    )
}

/// LlamaEdge's `get_plugin_info` reads output 1 of a fresh context, before any input, and
/// refuses to start unless `llama_build_number` is an unsigned number and `llama_commit` a
/// string (WasmEdge's plugin's keys). They are llama.cpp's own build record; beside them, the
/// versions that the vendored sources carry.
#[test]
fn output_1_of_a_fresh_context_carries_llama_cpp_s_build_as_llamaedge_reads_it() {
    let stdout = client_ok(&["plugin-info", "default"]);
    let meta: serde_json::Value = serde_json::from_str(&labelled(&stdout, "metadata")).expect("output 1 is JSON");
    let (number, commit) = shipped_build_info();
    assert_eq!(meta["llama_build_number"].as_u64(), Some(number), "{meta}");
    assert_eq!(meta["llama_commit"].as_str(), Some(commit.as_str()), "{meta}");
    let (llama, ggml) = vendored_versions();
    assert_eq!(meta["llama_version"].as_str(), Some(llama.as_str()), "{meta}");
    assert_eq!(meta["ggml_version"].as_str(), Some(ggml.as_str()), "{meta}");
    assert_eq!((meta["input_tokens"].as_u64(), meta["output_tokens"].as_u64()), (Some(0), Some(0)), "{meta}");
}

/// With no logging set up at all, a refused call says why on stderr (a guest that never reads
/// output 1's `last_error` still tells its user); `WASMEDGE_NN_LOG=off` silences it.
#[test]
fn a_refused_call_says_why_by_default_and_off_silences_it() {
    let outside = tempfile::tempdir().unwrap();
    let picture = outside.path().join("secret.png");
    std::fs::write(&picture, b"not even a picture").unwrap();
    let config = format!(r#"{{"temp": 0, "n-predict": 4, "image": "{}"}}"#, picture.display());
    let prompt = chatml("What is in the picture?");
    // ("": as if the variable were not set at all.)
    for (level, says) in [("", true), ("off", false)] {
        let out = client(&[("WASMEDGE_NN_LOG", level)], &["generate", "default", &prompt, &config]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("error: compute: BackendError(InvalidArgument)"), "{stdout}");
        let log = String::from_utf8_lossy(&out.stderr);
        let reason = "is outside the directories given to the guest";
        assert_eq!(log.contains(reason), says, "WASMEDGE_NN_LOG={level:?}, stderr:\n{log}");
        if says {
            assert_log_says(&log, &["compute", "InvalidArgument", "--dir"]);
        }
    }
}

/// WasmEdge's `tts` example asks for speech (`tts`, `model-vocoder`, `tts-output-file`): this
/// plugin makes none, so the request fails with UnsupportedOperation naming TTS, at load and
/// on a context, instead of answering with text the guest would write into its WAV file.
#[test]
fn text_to_speech_is_refused_with_its_reason_not_answered_with_text() {
    let tts =
        r#"{"tts": true, "model-vocoder": "WavTokenizer-Large-75-F16.gguf", "tts-output-file": "output-buffer.wav"}"#;
    let out = client(&[("WASMEDGE_NN_LOG", "")], &["generate", "default", &chatml("Hello"), tts]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("error: set_input(1): BackendError(UnsupportedOperation)"), "{stdout}");
    assert!(!stdout.contains("text:"), "text was generated: {stdout}");
    assert_log_says(&String::from_utf8_lossy(&out.stderr), &["text-to-speech (TTS", "not supported"]);
    // As the load config too.
    let out = client(&[], &["embed", "default", "Hello", tts]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("error: load_by_name: BackendError(UnsupportedOperation)"), "{stdout}");
    assert!(!root().join("output-buffer.wav").exists());
}
