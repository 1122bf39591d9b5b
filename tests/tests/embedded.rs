//! WasmEdge embedded in this test process through wasmedge-sdk, as a serverless host would:
//! the plugin from the build output, one preloaded model, and several guest instances (each
//! its own store, WASI and `wasi_nn` instance) running on their own threads at once.
//!
//! Needs the runner and paths set by scripts/test.sh (the test binary links libwasmedge).

use e2e::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Once;
use wasmedge_sdk::{plugin::PluginManager, vm::SyncInst, wasi::WasiModule, AsInstance, Module, Store, Vm};

const QUESTIONS: [&str; 4] =
    ["What is the capital of France?", "Name three colours.", "Write a haiku about the sea.", "What is two plus two?"];
/// One thread per context: four contexts really run side by side on two cores.
const CONFIG: &str = r#"{"temp": 0, "n-predict": 24, "threads": 1, "ctx-size": 1024}"#;

/// The plugin's settings come from the environment, read when the first guest instance is
/// made; this test binary makes instances only here.
fn setup(log_file: &Path) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let model = root().join(model(SMOLLM2));
        std::env::set_var("WASMEDGE_NN_PRELOAD", format!("default:GGML:AUTO:{}", model.display()));
        std::env::set_var("WASMEDGE_NN_LOG", "debug");
        std::env::set_var("WASMEDGE_NN_LOG_FILE", log_file);
        PluginManager::load(Some(&plugin_dir())).expect("load the plugin from the build output");
        assert_eq!(PluginManager::names(), ["wasi_nn"]);
    });
}

/// Run a wasm32-wasip1 guest in a fresh store with its own WASI and `wasi_nn` instances and
/// `dir` preopened as `.`; its exit code (an error if it trapped).
fn run_guest_embedded(wasm: &Path, args: &[&str], dir: &Path) -> Result<u32, String> {
    let preopen = format!(".:{}", dir.display());
    let mut wasi =
        WasiModule::create(Some(args.to_vec()), None, Some(vec![preopen.as_str()])).map_err(|e| e.to_string())?;
    let mut nn = PluginManager::create_plugin_instance("wasi_nn", "wasi_nn").map_err(|e| e.to_string())?;
    let mut imports: HashMap<String, &mut dyn SyncInst> = HashMap::new();
    imports.insert(wasi.name().to_string(), wasi.as_mut());
    imports.insert(nn.name().expect("the plugin's module has a name"), &mut nn);
    let mut vm = Vm::new(Store::new(None, imports).map_err(|e| e.to_string())?);
    let module = Module::from_file(None, wasm).map_err(|e| e.to_string())?;
    vm.register_module(Some("main"), module).map_err(|e| e.to_string())?;
    let run = vm.run_func(Some("main"), "_start", []);
    drop(vm);
    run.map(|_| wasi.exit_code()).map_err(|e| e.to_string())
}

/// Answer a question with the `answer` guest in a private folder: the file it wrote.
fn answer(question: &str, dir: &Path) -> String {
    let code = run_guest_embedded(&guest("answer"), &["answer.wasm", "default", question, "answer.txt", CONFIG], dir)
        .unwrap_or_else(|e| panic!("'{question}': the guest trapped: {e}"));
    assert_eq!(code, 0, "'{question}': the guest failed");
    std::fs::read_to_string(dir.join("answer.txt")).expect("the guest's answer file")
}

fn tokens_of(answer: &str) -> String {
    answer.lines().take(2).collect::<Vec<_>>().join("\n")
}

#[test]
fn four_guest_instances_on_four_threads_share_one_preloaded_model() {
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let log = scratch.path().join("plugin.log");
    setup(&log);
    let dirs: Vec<PathBuf> = (0..QUESTIONS.len())
        .map(|i| {
            let d = scratch.path().join(format!("guest{i}"));
            std::fs::create_dir(&d).unwrap();
            d
        })
        .collect();

    // All at once first, so the four instances race for the model's first load.
    let together: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = QUESTIONS.iter().zip(&dirs).map(|(q, d)| s.spawn(move || answer(q, d))).collect();
        runs.into_iter().map(|r| r.join().expect("a guest thread panicked")).collect()
    });
    // Then each alone.
    let alone: Vec<String> = QUESTIONS.iter().zip(&dirs).map(|(q, d)| answer(q, d)).collect();

    for ((q, t), a) in QUESTIONS.iter().zip(&together).zip(&alone) {
        println!("{q}\n  together: {}\n  alone:    {}", tokens_of(t), tokens_of(a));
        assert_eq!(tokens_of(t), tokens_of(a), "'{q}' on four threads differs from its run alone");
        let n: usize = t.lines().next().unwrap().parse().unwrap();
        assert!(n >= 4, "'{q}': too short an answer to show anything");
    }
    assert_ne!(tokens_of(&alone[0]), tokens_of(&alone[1]));

    let log = std::fs::read_to_string(&log).expect("the plugin's log file");
    let loads = log.lines().filter(|l| l.contains("] loaded ") && l.contains(SMOLLM2)).count();
    let instances = log.lines().filter(|l| l.contains("wasi_ephemeral_nn module created")).count();
    let released = log.lines().filter(|l| l.contains("execution contexts released")).count();
    println!("model loads: {loads}, guest instances: {instances}, instances that released contexts: {released}");
    assert_eq!(loads, 1, "the model must be loaded once for all eight guest instances:\n{log}");
    assert!(released >= 8, "every ended instance releases its context:\n{log}");
}
