fn main() {
    // llama.cpp's shared libraries (libllama, libmtmd, libggml, libggml-base: built with ggml's
    // dynamic backends) are installed in the plugin's companion folder: look for them there,
    // wherever the plugin is (plugin_dir::COMPANIONS names the folder). As DT_RPATH, not
    // RUNPATH: it then comes before LD_LIBRARY_PATH and also serves the libraries' own
    // dependencies, so the plugin never picks up another copy of llama.cpp.
    if std::env::var_os("CARGO_FEATURE_GGML").is_some() {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--disable-new-dtags,-rpath,$ORIGIN/wasmedge-nn");
    }
}
