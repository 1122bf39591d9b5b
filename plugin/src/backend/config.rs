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

/// The `enable-log` / `enable-debug-log` switches: they raise the process-wide log level to
/// info / debug (never lower it).
pub fn apply_logging(enable_log: bool, enable_debug_log: bool) {
    if enable_debug_log {
        crate::logging::raise_level(log::LevelFilter::Debug);
    } else if enable_log {
        crate::logging::raise_level(log::LevelFilter::Info);
    }
}
