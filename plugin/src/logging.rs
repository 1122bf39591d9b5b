//! The plugin's log: off by default; `WASMEDGE_NN_LOG=info` (or error, warn, debug, trace)
//! turns it on for the process, and the `enable-log` / `enable-debug-log` metadata keys
//! raise it to info / debug. Messages go to stderr, or are appended to the file named by
//! `WASMEDGE_NN_LOG_FILE` (for hosts whose stderr belongs to the guest, or is not kept).

use log::LevelFilter;
use std::sync::Once;

pub const ENV_VAR: &str = "WASMEDGE_NN_LOG";
pub const FILE_ENV_VAR: &str = "WASMEDGE_NN_LOG_FILE";

static INIT: Once = Once::new();

pub fn init() {
    INIT.call_once(|| {
        let level =
            std::env::var(ENV_VAR).ok().and_then(|v| v.trim().parse::<LevelFilter>().ok()).unwrap_or(LevelFilter::Off);
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
