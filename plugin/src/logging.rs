//! The plugin's log: errors by default (every call that fails says why on stderr, as
//! WasmEdge's own plugin does, so a guest that never reads output 1's `last_error` still
//! tells its user); `WASMEDGE_NN_LOG` sets the level (off, error, warn, info, debug, trace),
//! and the `enable-log` / `enable-debug-log` metadata keys raise it to info / debug. Messages go to stderr, or are appended to the file named by
//! `WASMEDGE_NN_LOG_FILE` (for hosts whose stderr belongs to the guest, or is not kept).

use log::LevelFilter;
use std::sync::Once;

pub const ENV_VAR: &str = "WASMEDGE_NN_LOG";
/// The level without `WASMEDGE_NN_LOG`: failed calls are said, warnings that fail nothing
/// (an unknown key, a value clamped) are not.
pub const DEFAULT_LEVEL: LevelFilter = LevelFilter::Error;
pub const FILE_ENV_VAR: &str = "WASMEDGE_NN_LOG_FILE";

static INIT: Once = Once::new();

pub fn init() {
    INIT.call_once(|| {
        let given = std::env::var(ENV_VAR).ok().filter(|v| !v.trim().is_empty());
        let level = match given.as_deref().map(|v| v.trim().parse::<LevelFilter>()) {
            None => DEFAULT_LEVEL,
            Some(Ok(level)) => level,
            Some(Err(_)) => {
                eprintln!(
                    "wasmedge-nn: {ENV_VAR}={} is not a level (off, error, warn, info, debug, trace); using error",
                    given.unwrap_or_default()
                );
                DEFAULT_LEVEL
            }
        };
        // The logger itself lets everything through; the global max level does the filtering,
        // so it can be raised later by metadata.
        let target = match std::env::var_os(FILE_ENV_VAR) {
            Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => env_logger::Target::Pipe(Box::new(file)),
                Err(e) => {
                    eprintln!(
                        "wasmedge-nn: cannot open the log file {}: {e}; logging to stderr",
                        path.to_string_lossy()
                    );
                    env_logger::Target::Stderr
                }
            },
            None => env_logger::Target::Stderr,
        };
        let _ = env_logger::Builder::new()
            .filter_level(LevelFilter::Trace)
            .format_timestamp_millis()
            .target(target)
            .try_init();
        log::set_max_level(level);
    });
}

/// Raise the process-wide level (never lowers it).
pub fn raise_level(level: LevelFilter) {
    init();
    if level > log::max_level() {
        log::set_max_level(level);
    }
}
