//! `--nn-preload NAME:ENCODING:TARGET:PATH`: models the host makes available by name. A path
//! ending in `#sha256=HEX` pins the file's hash (see [`crate::integrity`]).
//!
//! WasmEdge keeps only the last value of a plugin option, but the flag is meant to repeat
//! (LlamaEdge passes two), so the process's own command line is read as well.

use crate::abi::{ExecutionTarget, GraphEncoding};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub struct Preload {
    pub name: String,
    pub encoding: GraphEncoding,
    pub target: ExecutionTarget,
    pub path: PathBuf,
    /// The pinned sha256 (lowercase hex), checked before loading.
    pub sha256: Option<String>,
}

/// Parse one entry. Encoding and target are case-insensitive; everything after the third
/// colon is the path (which may itself contain colons).
pub fn parse(spec: &str) -> Result<Preload, String> {
    let mut parts = spec.splitn(4, ':');
    let (Some(name), Some(encoding), Some(target), Some(path)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("'{spec}' is not NAME:ENCODING:TARGET:PATH"));
    };
    if name.is_empty() || path.is_empty() {
        return Err(format!("'{spec}' has an empty name or path"));
    }
    let encoding = GraphEncoding::from_name(encoding)
        .ok_or_else(|| format!("'{spec}': unknown encoding '{encoding}' (GGML, Whisper...)"))?;
    let target = ExecutionTarget::from_name(target)
        .ok_or_else(|| format!("'{spec}': unknown target '{target}' (CPU, GPU, TPU, AUTO)"))?;
    let (path, sha256) = crate::integrity::split_pin(path).map_err(|e| format!("'{spec}': {e}"))?;
    Ok(Preload { name: name.to_owned(), encoding, target, path: PathBuf::from(path), sha256 })
}

/// Every `--nn-preload` value on a `wasmedge` command line, in order. Scanning stops at the
/// first argument naming a `.wasm` file: what follows belongs to the guest.
pub fn values_from_args(args: impl IntoIterator<Item = OsString>) -> Vec<String> {
    let mut values = Vec::new();
    let mut args = args.into_iter().skip(1).map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        if let Some(v) = arg.strip_prefix("--nn-preload=") {
            values.push(v.to_owned());
        } else if arg == "--nn-preload" || arg == "-nn-preload" {
            values.extend(args.next());
        } else if !arg.starts_with('-') && (arg.ends_with(".wasm") || arg.ends_with(".so")) {
            break;
        }
    }
    values
}

/// Preloads for hosts that embed WasmEdge and cannot pass `--nn-preload`: the environment
/// variable holds entries separated by `;`.
pub const ENV_VAR: &str = "WASMEDGE_NN_PRELOAD";

pub fn values_from_env() -> Vec<String> {
    split_env(&std::env::var(ENV_VAR).unwrap_or_default())
}

fn split_env(value: &str) -> Vec<String> {
    value.split(';').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

/// The preloads of this process: all values from its command line, plus the option value
/// WasmEdge stored (which matters when the plugin is driven by an embedding host). Invalid
/// entries are skipped with a log line, so looking them up later gives NotFound.
pub fn collect(cmdline: Vec<String>, option_value: Option<String>) -> Vec<Preload> {
    let mut values = cmdline;
    if let Some(v) = option_value.filter(|v| !v.is_empty()) {
        if !values.contains(&v) {
            values.push(v);
        }
    }
    values
        .iter()
        .filter_map(|v| match parse(v) {
            Ok(p) => {
                log::info!("preload '{}': {} model at {}", p.name, p.encoding.name(), p.path.display());
                Some(p)
            }
            Err(e) => {
                log::error!("--nn-preload {e}; entry skipped");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_entries_with_colons_in_path() {
        let p = parse("default:GGML:AUTO:/models/a:b.gguf").unwrap();
        assert_eq!(p.name, "default");
        assert_eq!(p.encoding, GraphEncoding::Ggml);
        assert_eq!(p.target, ExecutionTarget::Auto);
        assert_eq!(p.path, PathBuf::from("/models/a:b.gguf"));
        assert_eq!(parse("w:whisper:cpu:x.bin").unwrap().encoding, GraphEncoding::Whisper);
        let pinned = parse(&format!("p:GGML:AUTO:m.gguf#sha256={}", "ab".repeat(32))).unwrap();
        assert_eq!((pinned.path, pinned.sha256), (PathBuf::from("m.gguf"), Some("ab".repeat(32))));
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(parse("a:GGML:AUTO").is_err());
        assert!(parse("a:NOPE:AUTO:x").is_err());
        assert!(parse("a:GGML:SOMEWHERE:x").is_err());
        assert!(parse(":GGML:AUTO:x").is_err());
        assert!(parse("a:GGML:AUTO:x.gguf#sha256=123").is_err());
    }

    #[test]
    fn reads_repeated_flags_until_the_wasm_file() {
        let v = values_from_args(args(&[
            "wasmedge",
            "--dir",
            ".:.",
            "--nn-preload",
            "a:GGML:AUTO:a.gguf",
            "--nn-preload=b:GGML:CPU:b.gguf",
            "app.wasm",
            "--nn-preload",
            "guest-arg",
        ]));
        assert_eq!(v, vec!["a:GGML:AUTO:a.gguf", "b:GGML:CPU:b.gguf"]);
    }

    #[test]
    fn environment_entries_are_split_on_semicolons() {
        assert_eq!(
            split_env(" a:GGML:AUTO:a.gguf; ;b:GGML:AUTO:/m/b.gguf"),
            vec!["a:GGML:AUTO:a.gguf", "b:GGML:AUTO:/m/b.gguf"]
        );
        assert!(split_env("").is_empty());
    }

    #[test]
    fn option_value_is_added_once_and_bad_entries_dropped() {
        let p = collect(vec!["a:GGML:AUTO:a.gguf".into(), "bad".into()], Some("a:GGML:AUTO:a.gguf".into()));
        assert_eq!(p.len(), 1);
        let p = collect(vec![], Some("x:GGML:AUTO:x.gguf".into()));
        assert_eq!(p[0].name, "x");
    }
}
