//! The plugin's log: off by default; `WASMEDGE_NN_LOG=info` (or error, warn, debug, trace)
//! turns it on for the process, and the `enable-log` / `enable-debug-log` metadata keys
//! raise it to info / debug. Messages go to stderr.

use log::LevelFilter;
use std::sync::Once;

pub const ENV_VAR: &str = "WASMEDGE_NN_LOG";

static INIT: Once = Once::new();

pub fn init() {
    INIT.call_once(|| {
        let level =
            std::env::var(ENV_VAR).ok().and_then(|v| v.trim().parse::<LevelFilter>().ok()).unwrap_or(LevelFilter::Off);
        // The logger itself lets everything through; the global max level does the filtering,
        // so it can be raised later by metadata.
        let _ = env_logger::Builder::new()
            .filter_level(LevelFilter::Trace)
            .format_timestamp_millis()
            .target(env_logger::Target::Stderr)
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
