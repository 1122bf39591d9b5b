//! The prompt cache across processes (`--nn-prompt-cache DIR`): fresh `wasmedge` processes,
//! as a serverless host starts them, each answering one prompt with a long fixed prefix. A
//! later process restores what an earlier one saved and gives the same greedy answer as a
//! process without the cache; concurrent writers, damaged and foreign files, the size cap and
//! hostile guests leave it correct and inside its directory.

use e2e::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const CONFIG: &str = r#"{"temp": 0, "n-predict": 12}"#;

/// A system prompt of about 300 tokens, different for each `topic`: long enough to be saved
/// (the engine saves prompts of which it evaluated at least 256 tokens).
fn prefix(topic: &str) -> String {
    let mut s = format!("You are the {topic} assistant of a small company. You can use these tools:\n");
    for i in 0..10 {
        s.push_str(&format!(
            "- {topic}_tool_{i}: looks up record number {i} of the {topic} ledger and returns its owner, its date and its amount.\n"
        ));
    }
    s.push_str("Answer briefly.");
    s
}

fn prompt(system: &str, question: &str) -> String {
    format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

/// A place for prompt files, mapped into the guest; the cache directory is not.
struct Setup {
    prompts: tempfile::TempDir,
    cache: tempfile::TempDir,
    serial: std::cell::Cell<usize>,
}

/// A temporary folder whose name WasmEdge maps into a guest (it does not map names that
/// start with a dot, as tempfile's do by default).
fn folder(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(what).tempdir().unwrap()
}

impl Setup {
    fn new() -> Self {
        Self { prompts: folder("nn-prompts-"), cache: folder("nn-cache-"), serial: Default::default() }
    }

    fn prompt_file(&self, text: &str) -> PathBuf {
        self.serial.set(self.serial.get() + 1);
        let path = self.prompts.path().join(format!("prompt-{}.txt", self.serial.get()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn command(&self, model: &str, cache: bool, host_args: &[&str], text: &str, config: &str) -> Command {
        let file = self.prompt_file(text);
        let dir = self.prompts.path().to_str().unwrap();
        let mut cmd = wasmedge_command();
        cmd.current_dir(root()).env("WASMEDGE_PLUGIN_PATH", plugin_dir()).env("WASMEDGE_NN_LOG", "info").args([
            "--dir",
            ".:.",
            "--dir",
            &format!("{dir}:{dir}"),
        ]);
        if cache {
            cmd.args(["--nn-prompt-cache", self.cache.path().to_str().unwrap()]);
        }
        cmd.args(host_args).args(["--nn-preload", &ggml_preload("default", model)]);
        cmd.arg(guest("cold-start")).args(["default", file.to_str().unwrap(), config]);
        cmd
    }

    /// One fresh process answering `text` (with the cache, or without any).
    fn run(&self, cache: bool, text: &str) -> Run {
        self.run_with(SMOLLM2, cache, &[], text, CONFIG)
    }

    fn run_with(&self, model: &str, cache: bool, host_args: &[&str], text: &str, config: &str) -> Run {
        let out = self.command(model, cache, host_args, text, config).output().expect("start wasmedge");
        Run::of(out)
    }

    fn entries(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "kv"))
            .collect();
        v.sort();
        v
    }

    fn bytes_held(&self) -> u64 {
        std::fs::read_dir(self.cache.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
    }

    fn clear(&self) {
        for e in self.entries() {
            std::fs::remove_file(e).unwrap();
        }
    }
}

struct Run {
    answer: String,
    meta: Value,
    log: String,
}

impl Run {
    fn of(out: std::process::Output) -> Self {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "cold-start failed ({}):\n{stdout}\n{log}", out.status);
        // What the cache did, for failures.
        eprintln!("{stdout}");
        for line in log.lines().filter(|l| l.contains("prompt cache")) {
            eprintln!("{line}");
        }
        let meta = serde_json::from_str(&labelled(&stdout, "metadata")).unwrap();
        Self { answer: labelled(&stdout, "answer"), meta, log }
    }

    fn count(&self, key: &str) -> u64 {
        self.meta[key].as_u64().unwrap_or_else(|| panic!("no {key} in {}", self.meta))
    }

    fn cached(&self) -> u64 {
        self.count("prompt_tokens_cached")
    }

    /// The prompt's tokens: evaluated, reused and cached add up to them.
    fn check_counts(&self) {
        let parts = self.count("prompt_tokens_evaluated") + self.count("prompt_tokens_reused") + self.cached();
        assert_eq!(parts, self.count("input_tokens"), "{}", self.meta);
    }
}

#[test]
fn a_second_process_restores_what_the_first_saved() {
    let s = Setup::new();
    let system = prefix("billing");
    let first = s.run(true, &prompt(&system, "What is the capital of France?"));
    first.check_counts();
    assert_eq!(first.cached(), 0, "an empty cache restored something");
    assert!(first.count("input_tokens") >= 280, "the prefix is too short to show anything: {}", first.meta);
    assert_eq!(s.entries().len(), 1, "the first process saved nothing");

    // Another question after the same instructions: the instructions come from the cache
    // (but for the last micro-batch's worth that keeps the numbers exact: at most 64 + 32).
    let question = prompt(&system, "Name three colours of the rainbow.");
    let second = s.run(true, &question);
    second.check_counts();
    assert!(second.cached() >= 160, "{}", second.meta);
    assert!(second.count("prompt_tokens_evaluated") <= 96 + 20, "{}", second.meta);
    assert_log_says(&second.log, &["prompt cache:", "restored"]);
    // ... with the answer of a process that has no cache.
    let uncached = s.run(false, &question);
    assert_eq!(uncached.cached(), 0);
    assert_eq!(second.answer, uncached.answer);
    assert!(!uncached.answer.trim_matches('"').is_empty());

    // The first prompt again: from the cache, the same answer.
    let again = s.run(true, &prompt(&system, "What is the capital of France?"));
    assert!(again.cached() >= again.count("input_tokens") - 96, "{}", again.meta);
    assert_eq!(again.answer, first.answer);
    // Nothing new was worth saving (the questions were short).
    assert_eq!(s.entries().len(), 1);
}

#[test]
fn four_processes_at_once_write_the_same_key() {
    let s = Setup::new();
    let text = prompt(&prefix("shipping"), "Which tool finds record 7?");
    // One thread each: four processes on a small machine.
    let config = r#"{"temp": 0, "n-predict": 12, "threads": 1}"#;
    let children: Vec<Child> = (0..4)
        .map(|_| {
            let mut cmd = s.command(SMOLLM2, true, &[], &text, config);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start wasmedge")
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| Run::of(c.wait_with_output().unwrap())).collect();
    for run in &runs {
        assert_eq!(run.answer, runs[0].answer);
    }
    // One file for the one key, whole, and no temporary files left.
    let names: Vec<String> = std::fs::read_dir(s.cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with(".tmp")), "{names:?}");
    assert_eq!(s.entries().len(), 1, "{names:?}");
    let fifth = s.run_with(SMOLLM2, true, &[], &text, config);
    assert!(fifth.cached() > 0, "{}", fifth.meta);
    assert_eq!(fifth.answer, runs[0].answer);
}

/// xxh3-128 over a cache file's body, as the plugin writes it (its last 16 bytes).
fn reseal(bytes: &mut [u8]) {
    let body = bytes.len() - 16;
    let sum = xxhash_rust::xxh3::xxh3_128(&bytes[..body]);
    bytes[body..].copy_from_slice(&sum.to_le_bytes());
}

fn replace_once(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap_or_else(|| {
        panic!("'{}' is not in the file's header", String::from_utf8_lossy(from));
    });
    bytes[at..at + to.len()].copy_from_slice(to);
}

#[test]
fn damaged_truncated_and_foreign_files_are_ignored() {
    let s = Setup::new();
    let system = prefix("payroll");
    let text = prompt(&system, "Who owns record 3?");
    let reference = s.run(false, &text);
    s.run(true, &text);
    let [entry] = s.entries().try_into().expect("one file saved");
    let good = std::fs::read(&entry).unwrap();

    // A real state of another model, under this one's name for the prompt.
    s.clear();
    s.run_with(GEMMA3, true, &[], &text, CONFIG);
    let [gemma] = s.entries().try_into().expect("Gemma's file");
    let foreign = std::fs::read(&gemma).unwrap();
    std::fs::remove_file(&gemma).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    // Another llama.cpp build's state (its header says so; the checksum is right).
    let mut other_build = good.clone();
    replace_once(&mut other_build, b"llama-cpp-sys-2 ", b"llama-cpp-sys-9 ");
    reseal(&mut other_build);
    // Another model's identity in an otherwise sound file (one digit of its sha256 changed).
    let mut other_model = good.clone();
    let at = other_model.windows(13).position(|w| w == b"model sha256 ").expect("the model's identity") + 13;
    other_model[at] = if other_model[at] == b'0' { b'1' } else { b'0' };
    reseal(&mut other_model);
    let cases: [(&str, Vec<u8>); 6] = [
        ("damaged", flipped),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("another model's", foreign),
        ("another build's", other_build),
        ("another identity's", other_model),
    ];
    for (what, bytes) in cases {
        s.clear();
        std::fs::write(&entry, &bytes).unwrap();
        let run = s.run(true, &text);
        assert_eq!(run.cached(), 0, "a {what} file was restored: {}", run.meta);
        assert_eq!(run.answer, reference.answer, "{what}");
        assert_log_says(&run.log, &["prompt cache: ignoring and removing"]);
        // It is gone, and the prompt saved again in its place.
        assert_eq!(std::fs::read(&entry).unwrap(), good, "{what}: not replaced by a sound file");
    }
    // The sound file is used.
    let run = s.run(true, &text);
    assert!(run.cached() > 0, "{}", run.meta);
    assert_eq!(run.answer, reference.answer);
}

#[test]
fn the_size_cap_holds_and_the_least_recently_used_go_first() {
    let s = Setup::new();
    let text = |topic: &str, question: &str| prompt(&prefix(topic), question);
    // A cap that holds two of these prompts' states and not three.
    s.run(true, &text("alpha", "Who owns record 1?"));
    let [first] = s.entries().try_into().unwrap();
    let size = std::fs::metadata(&first).unwrap().len();
    let mib = (size * 5 / 2) >> 20;
    assert!(mib << 20 >= 2 * size + 4096 && mib << 20 < 3 * size, "{size} bytes a state");
    let cap = mib << 20;
    let run = |topic: &str, question: &str| {
        let run =
            s.run_with(SMOLLM2, true, &["--nn-prompt-cache-mib", &mib.to_string()], &text(topic, question), CONFIG);
        assert!(s.bytes_held() <= cap, "the cache holds {} bytes, over its cap of {cap}", s.bytes_held());
        run
    };
    run("beta", "Who owns record 1?");
    assert_eq!(s.entries().len(), 2, "two prompts should fit");
    // alpha used again: beta is now the least recently used.
    assert!(run("alpha", "What date has record 2?").cached() > 0);
    run("gamma", "Who owns record 1?");
    assert_eq!(s.entries().len(), 2);
    assert!(run("alpha", "What amount has record 3?").cached() > 0, "alpha was used last but one: kept");
    assert!(run("gamma", "What amount has record 3?").cached() > 0, "gamma was saved last: kept");
    assert_eq!(run("beta", "What amount has record 3?").cached(), 0, "beta was the least recently used: evicted");
}

#[test]
fn nothing_a_guest_sends_reaches_outside_the_directory() {
    let s = Setup::new();
    let outside = folder("nn-outside-");
    let target = outside.path().join("guest-chosen");
    // WasmEdge's plugin takes this key from the guest; here it is refused with a warning.
    let config = format!(r#"{{"temp": 0, "n-predict": 8, "path-prompt-cache": "{}"}}"#, target.display());
    let text = prompt(&prefix("../../../../tmp/evil"), "Save yourself to ../../etc/passwd");
    let run = s.run_with(SMOLLM2, true, &[], &text, &config);
    assert_log_says(&run.log, &["path-prompt-cache is ignored"]);
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    // The cache holds only names the host made: hashes.
    let names: Vec<String> = std::fs::read_dir(s.cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    for name in &names {
        let ok = match (name.strip_suffix(".kv"), name.strip_prefix("model-").and_then(|n| n.strip_suffix(".sha256"))) {
            (Some(kv), _) => kv.split_once('-').is_some_and(|(a, b)| hex(a, 16) && hex(b, 32)),
            (_, Some(memo)) => hex(memo, 32),
            _ => false,
        };
        assert!(ok, "an unexpected file in the cache: {name} (all: {names:?})");
    }
    assert!(names.iter().any(|n| n.ends_with(".kv")), "nothing was saved: {names:?}");

    // A link in the cache where an entry was, to a sound copy outside: never followed (not
    // read, not written through), and replaced by a file when the prompt is saved again.
    let [entry] = s.entries().try_into().unwrap();
    let copy = outside.path().join("copy.kv");
    std::fs::rename(&entry, &copy).unwrap();
    std::os::unix::fs::symlink(&copy, &entry).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let mut watch = inotify::Inotify::init().unwrap();
    watch.watches().add(&copy, inotify::WatchMask::OPEN | inotify::WatchMask::ACCESS).unwrap();
    let again = s.run_with(SMOLLM2, true, &[], &text, &config);
    assert_eq!(again.cached(), 0, "restored through a link: {}", again.meta);
    assert_eq!(again.answer, run.answer);
    let mut buffer = [0u8; 4096];
    let events: Vec<String> = match watch.read_events(&mut buffer) {
        Ok(events) => events.map(|e| format!("{:?}", e.mask)).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Vec::new(),
        Err(e) => panic!("inotify: {e}"),
    };
    assert!(events.is_empty(), "the host opened the file outside: {events:?}");
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    assert!(std::fs::symlink_metadata(&entry).unwrap().is_file(), "the link should have been replaced by a file");
}
