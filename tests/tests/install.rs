//! Installing into an existing WasmEdge, and WasmEdge versions: `scripts/install-plugin.sh`
//! run against scratch copies of WasmEdge 0.14.1 and 0.17.1 (so nothing outside the test's
//! folder changes), the same built plugin then loaded without WASMEDGE_PLUGIN_PATH, and a
//! runtime the plugin does not know refused with a reason.
//!
//! (The whole CLI suite also runs against 0.17.1: scripts/test.sh runs it a second time with
//! WASMEDGE_BIN.)

use e2e::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OFFICIAL: &str = "libwasmedgePluginWasiNN.so";
/// The plugin's companion folder (plugin/src/plugin_dir.rs, scripts/env.sh).
const COMPANIONS: &str = "wasmedge-nn";

/// A WasmEdge of its own under `dir`, made from the installation at `prefix`: the CLI and
/// libwasmedge copied, so WasmEdge's default plugin folder (derived from where libwasmedge was
/// loaded from) is `dir/plugin`. The private prefixes' newer C library is linked, not copied.
fn scratch_wasmedge(prefix: &Path, dir: &Path) -> PathBuf {
    let root = dir.join("wasmedge");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::copy(prefix.join("bin/wasmedge"), root.join("bin/wasmedge")).unwrap();
    for entry in std::fs::read_dir(prefix.join("lib")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("libwasmedge.so") {
            // Dereferenced: each name a file of its own in the scratch folder.
            std::fs::copy(entry.path(), root.join("lib").join(&name)).unwrap();
        }
    }
    if prefix.join("trixie").is_dir() {
        std::os::unix::fs::symlink(prefix.join("trixie"), root.join("trixie")).unwrap();
    }
    root
}

/// Run `cmd` with only the scratch WasmEdge in reach: libwasmedge from its lib/ (which also
/// wins over a system libwasmedge), no WASMEDGE_PLUGIN_PATH.
fn scratch_env(cmd: &mut Command, root: &Path) -> Output {
    cmd.current_dir(e2e::root())
        .env_remove("WASMEDGE_PLUGIN_PATH")
        .env_remove("WASMEDGE_BIN")
        .env("LD_LIBRARY_PATH", root.join("lib"))
        .env("WASMEDGE_DIR", root);
    let out = cmd.output().expect("cannot run");
    eprintln!("--- {cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

fn install_plugin(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(e2e::root().join("scripts/install-plugin.sh")).args(args).env("PLUGIN_FILES", plugin_dir());
    scratch_env(&mut cmd, root)
}

fn chat(root: &Path) -> Output {
    let mut cmd = Command::new(root.join("bin/wasmedge"));
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd.args(["--dir", ".:.", "--nn-preload", &ggml_preload("default", SMOLLM2)]).arg(guest("chat")).args([
        "default",
        "What is the capital of France?",
        r#"{"n-predict": 16}"#,
    ]);
    scratch_env(&mut cmd, root)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn install_check_uninstall(prefix: &Path) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let root = scratch_wasmedge(prefix, dir.path());
    let plugins = root.join("plugin");

    // Before: no WASI-NN at all.
    let out = chat(&root);
    assert!(!out.status.success(), "chat ran without the plugin installed");
    assert!(!install_plugin(&root, &["--check"]).status.success(), "--check passed before installing");

    // WasmEdge's own WASI-NN plugin (here a stand-in file) registers the same module: it is set
    // aside while ours is installed, and comes back on uninstall.
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join(OFFICIAL), b"stand-in").unwrap();

    let out = install_plugin(&root, &[]);
    assert!(out.status.success(), "install-plugin.sh failed");
    // The plugin, and its companion folder exactly as the build made it (llama.cpp's and
    // ggml's libraries, ggml's CPU variants, the Whisper runtime).
    let mut want = vec![format!("{OFFICIAL}.off"), "libwasmedge_nn_plugin.so".to_string(), COMPANIONS.to_string()];
    want.sort();
    let companions = names_in(&plugin_dir().join(COMPANIONS));
    assert!(companions.iter().any(|n| n.starts_with("libggml-cpu-x64.")), "{companions:?}");
    assert!(companions.iter().any(|n| n.starts_with("libwasmedge_nn_whisper-x86-64.so.")), "{companions:?}");
    assert_eq!(names_in(&plugins), want, "what the install put in {}", plugins.display());
    assert_eq!(names_in(&plugins.join(COMPANIONS)), companions);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_log_says(&log, &["set aside", "no WASMEDGE_PLUGIN_PATH needed"]);
    assert!(install_plugin(&root, &["--check"]).status.success(), "--check failed after installing");

    // Installed: the guest runs with nothing but the installation.
    let answer = parse_answer(&chat(&root));
    assert!(answer.text.contains("Paris"), "{answer:?}");

    // Installing again (an upgrade) is fine and changes nothing else.
    assert!(install_plugin(&root, &[]).status.success(), "a second install failed");
    assert_eq!(names_in(&plugins), want);
    assert_eq!(names_in(&plugins.join(COMPANIONS)), companions);

    let out = install_plugin(&root, &["--uninstall"]);
    assert!(out.status.success(), "uninstall failed");
    assert_eq!(names_in(&plugins), vec![OFFICIAL.to_string()], "uninstall should leave only WasmEdge's own plugin");
    assert_eq!(std::fs::read(plugins.join(OFFICIAL)).unwrap(), b"stand-in");
    // (The stand-in is not a real plugin: take it away before checking that nothing answers.)
    std::fs::remove_file(plugins.join(OFFICIAL)).unwrap();
    assert!(!install_plugin(&root, &["--check"]).status.success(), "--check passed after uninstalling");
    assert!(!chat(&root).status.success(), "chat ran after uninstalling");
    answer
}

#[test]
fn install_plugin_into_wasmedge_0_14_and_0_17_then_uninstall() {
    let old = install_check_uninstall(&wasmedge_prefix());
    let new = install_check_uninstall(&other_wasmedge("0.17.1"));
    // The same plugin binary, the same greedy answer on either runtime.
    assert_eq!(old, new);
}

#[test]
fn install_plugin_without_a_wasmedge_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(e2e::root().join("scripts/install-plugin.sh"))
        .env("WASMEDGE_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert_log_says(&log, &["has no bin/wasmedge"]);
}

/// A runtime version the plugin does not know (WasmEdge's version getters interposed to say
/// 0.99.0): the plugin declines to register, and says why, instead of WasmEdge's bare
/// "unknown option".
#[test]
fn unknown_wasmedge_version_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("version.c");
    std::fs::write(
        &src,
        "unsigned WasmEdge_VersionGetMajor(void) { return 0; }\n\
         unsigned WasmEdge_VersionGetMinor(void) { return 99; }\n\
         unsigned WasmEdge_VersionGetPatch(void) { return 0; }\n",
    )
    .unwrap();
    let shim = dir.path().join("libversion.so");
    let cc = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&shim).arg(&src).status().expect("cc");
    assert!(cc.success(), "cannot build the version shim");

    let chat = |env: &[(&str, &Path)]| {
        let preload = format!("default:GGML:AUTO:{}", e2e::root().join(model(SMOLLM2)).display());
        wasmedge_command()
            .env("WASMEDGE_PLUGIN_PATH", plugin_dir())
            .envs(env.iter().copied())
            .args(["--nn-preload", &preload])
            .arg(guest("chat"))
            .args(["default", "hello", r#"{"n-predict": 4}"#])
            .output()
            .unwrap()
    };
    let out = chat(&[("LD_PRELOAD", &shim)]);
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("{log}");
    assert!(!out.status.success(), "the plugin registered with a runtime it does not know");
    assert_log_says(&log, &["WasmEdge 0.99.0 is not supported (0.14.0 to 0.17.x are)"]);

    // And without the shim the same command runs: the refusal came from the version alone.
    let out = chat(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
