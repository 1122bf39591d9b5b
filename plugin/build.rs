fn main() {
    // llama.cpp's shared libraries (libllama, libmtmd, libggml, libggml-base: built with ggml's
    // dynamic backends) are installed in the plugin's companion folder: look for them there,
    // wherever the plugin is (plugin_dir::COMPANIONS names the folder). As DT_RPATH, not
    // RUNPATH: it then comes before LD_LIBRARY_PATH and also serves the libraries' own
    // dependencies, so the plugin never picks up another copy of llama.cpp.
    if std::env::var_os("CARGO_FEATURE_GGML").is_some() {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--disable-new-dtags,-rpath,$ORIGIN/wasmedge-nn");
        // The rpc-server program is installed in that folder itself.
        println!("cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,$ORIGIN");
    }
    // The llama-cpp-sys-2 release built in, which pins the llama.cpp sources it vendors: it
    // names the build whose KV states the prompt cache keeps (backend/ggml/build_info.rs).
    let lock = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let version = text
        .split("[[package]]")
        .find(|p| p.contains("name = \"llama-cpp-sys-2\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_owned)))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=LLAMA_CPP_SYS_VERSION={version}");
}
