//! `POST /v1/embeddings`: a request body read and checked — its text inputs, and whether the
//! vectors go back as floats or as base64 little-endian f32.

use crate::error::ApiError;
use serde_json::{Map, Value};

/// What a request asks for, checked.
pub struct EmbeddingsRequest<'a> {
    /// The texts to embed, in order (1 to 2048; an empty one is refused when its turn
    /// comes, after those before it).
    pub inputs: Vec<&'a str>,
    /// `encoding_format: base64`: each vector as base64 little-endian f32.
    pub base64: bool,
}

/// At most this many inputs per request.
pub const MAX_INPUTS: usize = 2048;

/// Read and check a request body.
pub fn parse(body: &Map<String, Value>) -> Result<EmbeddingsRequest<'_>, ApiError> {
    let inputs: Vec<&str> = match body.get("input") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).collect()
        }
        Some(Value::Array(a)) if a.first().is_some_and(|v| v.is_number() || v.is_array()) => {
            return Err(ApiError::invalid("input", "this server takes text inputs, not token arrays"))
        }
        _ => return Err(ApiError::invalid("input", "'input' must be a string or a non-empty array of strings")),
    };
    if inputs.len() > MAX_INPUTS {
        return Err(ApiError::invalid("input", format!("at most {MAX_INPUTS} inputs per request")));
    }
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => return Err(ApiError::invalid("encoding_format", "'encoding_format' is float or base64")),
    };
    Ok(EmbeddingsRequest { inputs, base64 })
}

/// The error for input `index` when it is empty (checked as each input's turn comes).
pub fn check_input(index: usize, input: &str) -> Result<(), ApiError> {
    if input.is_empty() {
        return Err(ApiError::invalid("input", format!("input {index} is empty")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(v: Value) -> Result<(Vec<String>, bool), Option<String>> {
        let body = v.as_object().cloned().unwrap();
        parse(&body).map(|r| (r.inputs.iter().map(|s| s.to_string()).collect(), r.base64)).map_err(|e| e.param)
    }

    #[test]
    fn inputs_and_formats() {
        assert_eq!(decode(json!({"input": "a"})), Ok((vec!["a".into()], false)));
        assert_eq!(
            decode(json!({"input": ["a", ""], "encoding_format": "base64"})),
            Ok((vec!["a".into(), "".into()], true))
        );
        assert_eq!(decode(json!({"input": [1, 2]})), Err(Some("input".into())));
        assert_eq!(decode(json!({"input": []})), Err(Some("input".into())));
        assert_eq!(decode(json!({"input": vec!["a"; MAX_INPUTS + 1]})), Err(Some("input".into())));
        assert_eq!(decode(json!({"input": "a", "encoding_format": "f16"})), Err(Some("encoding_format".into())));
        assert!(check_input(1, "").is_err() && check_input(0, "a").is_ok());
    }
}
