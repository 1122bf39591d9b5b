//! What every JSON request body shares: it is one JSON object, and its `model`, when given,
//! names the model the endpoint serves.

use crate::error::ApiError;
use serde_json::{Map, Value};

/// The body as a JSON object.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::new(400, "the body must be a JSON object", "invalid_request_error")),
        Err(e) => Err(ApiError::new(400, format!("the body is not JSON: {e}"), "invalid_request_error")),
    }
}

/// `model` is absent, null or `name`.
pub fn check_model(body: &Map<String, Value>, name: &str) -> Result<(), ApiError> {
    match body.get("model") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(m)) if m == name => Ok(()),
        Some(Value::String(m)) => Err(ApiError::new(
            404,
            format!("no model {m:?} here: this endpoint serves {name:?}"),
            "invalid_request_error",
        )
        .with_code("model_not_found")),
        Some(other) => Err(ApiError::invalid("model", format!("'model' must be a string, not {other}"))),
    }
}
