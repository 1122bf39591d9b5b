//! What every backend's config JSON shares: how it is parsed and its logging switches.
//! Unknown keys are ignored (guests send extra ones); a value of the wrong JSON type is
//! InvalidArgument; JSON that does not parse is InvalidEncoding.

use crate::error::{NnError, NnResult};
use serde::de::DeserializeOwned;

/// Parse a config JSON object into a backend's key struct (all fields optional).
pub fn parse<T: DeserializeOwned>(json: &[u8]) -> NnResult<T> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| NnError::invalid_encoding(format!("metadata is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(NnError::invalid_argument(format!("metadata must be a JSON object, got: {value}")));
    }
    serde_json::from_value(value)
        .map_err(|e| NnError::invalid_argument(format!("metadata has a value of the wrong type: {e}")))
}

/// A backend's options, as config JSON sets them.
pub trait Configurable: Default {
    /// Apply a JSON document on top of these options; nothing changes when it fails.
    fn apply_json(&mut self, json: &[u8]) -> NnResult<()>;
    /// Apply the logging switches to the process-wide log level.
    fn apply_logging(&self);
}

/// The options a load config gives: the defaults, then the config (if any), whose logging
/// switches then take effect.
pub fn load_options<O: Configurable>(config: Option<&[u8]>) -> NnResult<O> {
    let mut options = O::default();
    if let Some(json) = config.filter(|c| !c.is_empty()) {
        options.apply_json(json)?;
    }
    options.apply_logging();
    Ok(options)
}

/// The `enable-log` / `enable-debug-log` switches: they raise the process-wide log level to
/// info / debug (never lower it).
pub fn apply_logging(enable_log: bool, enable_debug_log: bool) {
    if enable_debug_log {
        crate::logging::raise_level(log::LevelFilter::Debug);
    } else if enable_log {
        crate::logging::raise_level(log::LevelFilter::Info);
    }
}
