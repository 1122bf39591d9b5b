//! `POST /v1/chat/completions`: a request body read and checked — messages for the model's
//! chat template, pictures (data: URIs), sampling settings, `response_format` and `tools` as a
//! JSON schema — and the context's metadata for it.

use crate::error::ApiError;
use crate::tools::{self, Tools};
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// What a request asks for, checked.
pub struct ChatRequest {
    pub messages: Vec<Value>,
    pub images: Vec<Vec<u8>>,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub temperature: f64,
    pub top_p: f64,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    /// llama.cpp's server's extension: generate past end-of-generation (to `max_tokens`).
    pub ignore_eos: bool,
    /// A JSON schema the answer must follow (`response_format`).
    pub schema: Option<Value>,
    pub tools: Option<Tools>,
}

fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn number(body: &Map<String, Value>, name: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
    match field(body, name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if (min..=max).contains(&v) {
                Ok(Some(v))
            } else {
                Err(ApiError::invalid(name, format!("'{name}' is {v}; it must be between {min} and {max}")))
            }
        }
        Some(other) => Err(ApiError::invalid(name, format!("'{name}' must be a number, not {other}"))),
    }
}

fn integer(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match field(body, name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(name, format!("'{name}' must be a non-negative integer, not {v}"))),
    }
}

fn boolean(body: &Map<String, Value>, name: &str) -> Result<bool, ApiError> {
    match field(body, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ApiError::invalid(name, format!("'{name}' must be true or false, not {v}"))),
    }
}

/// Read and check a request body. `vision`: the model sees pictures.
pub fn parse(body: &Map<String, Value>, vision: bool) -> Result<ChatRequest, ApiError> {
    let Some(Value::Array(given)) = field(body, "messages") else {
        return Err(ApiError::invalid("messages", "'messages' must be an array of messages"));
    };
    if given.is_empty() {
        return Err(ApiError::invalid("messages", "'messages' is empty"));
    }
    let mut images = Vec::new();
    let mut messages = Vec::with_capacity(given.len());
    for (i, m) in given.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::invalid(&format!("messages[{i}]"), "each message must be an object"));
        };
        messages.push(message(m, i, vision, &mut images)?);
    }
    let max_tokens = match integer(body, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => integer(body, "max_tokens")?,
    };
    let stop = match field(body, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::invalid("stop", "'stop' must be a string or an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::invalid("stop", "'stop' must be a string or an array of strings")),
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "'stop' takes up to 4 non-empty strings"));
    }
    let include_usage = match field(body, "stream_options") {
        None => false,
        Some(Value::Object(o)) => boolean(o, "include_usage")?,
        Some(_) => return Err(ApiError::invalid("stream_options", "'stream_options' must be an object")),
    };
    let schema = response_schema(field(body, "response_format"))?;
    let tools = tools::parse(field(body, "tools"), field(body, "tool_choice"))?;
    if tools.is_some() && schema.is_some() {
        return Err(ApiError::invalid("response_format", "give 'tools' or a JSON 'response_format', not both"));
    }
    Ok(ChatRequest {
        messages,
        images,
        stream: boolean(body, "stream")?,
        include_usage,
        max_tokens,
        temperature: number(body, "temperature", 0.0, 2.0)?.unwrap_or(0.8),
        top_p: number(body, "top_p", 0.0, 1.0)?.unwrap_or(0.95),
        seed: integer(body, "seed")?,
        stop,
        ignore_eos: boolean(body, "ignore_eos")?,
        schema,
        tools,
    })
}

/// One message for the template: its role, and its content as text (pictures become
/// `<image>` markers, their bytes go to `images`).
fn message(m: &Map<String, Value>, i: usize, vision: bool, images: &mut Vec<Vec<u8>>) -> Result<Value, ApiError> {
    let param = format!("messages[{i}]");
    let role = match m.get("role") {
        Some(Value::String(r)) if ["system", "developer", "user", "assistant", "tool"].contains(&r.as_str()) => {
            r.as_str()
        }
        _ => {
            return Err(ApiError::invalid(
                &format!("{param}.role"),
                "'role' must be system, developer, user, assistant or tool",
            ))
        }
    };
    let mut text = String::new();
    match m.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let param = format!("{param}.content[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => match part.get("text") {
                        Some(Value::String(s)) => text.push_str(s),
                        _ => return Err(ApiError::invalid(&param, "a text part needs 'text', a string")),
                    },
                    Some("image_url") => {
                        if !vision {
                            return Err(ApiError::invalid(
                                &param,
                                "this server's model does not see pictures: start the server with --mmproj, the model's projector",
                            ));
                        }
                        let url = part
                            .get("image_url")
                            .and_then(|u| u.get("url").or(Some(u)))
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                ApiError::invalid(&param, "an image_url part needs 'image_url': {\"url\": ...}")
                            })?;
                        images.push(data_uri(url).map_err(|m| ApiError::invalid(&param, m))?);
                        text.push_str("<image>");
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            &param,
                            "content parts are {\"type\": \"text\"} or {\"type\": \"image_url\"}",
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(
                &format!("{param}.content"),
                "'content' must be a string or an array of parts",
            ))
        }
    }
    // A NUL cannot reach the model (prompts with pictures go to llama.cpp as C strings); a
    // small model's earlier answer can hold one.
    if text.contains('\0') {
        text = text.replace('\0', "\u{FFFD}");
    }
    let role = if role == "developer" { "system" } else { role };
    match role {
        // A call the assistant made, in the form it was asked to answer in (tools.rs).
        "assistant" => match m.get("tool_calls") {
            Some(Value::Array(calls)) if !calls.is_empty() => {
                Ok(json!({"role": "assistant", "content": tools::history_of_calls(calls)}))
            }
            _ => Ok(json!({"role": "assistant", "content": text})),
        },
        // A tool's result goes back as the user's turn (templates that know no tool role
        // accept it; those that alternate roles stay alternating).
        "tool" => {
            let id = m.get("tool_call_id").cloned().unwrap_or(Value::Null);
            Ok(
                json!({"role": "user", "content": json!({"tool_response": {"tool_call_id": id, "content": text}}).to_string()}),
            )
        }
        _ => Ok(json!({"role": role, "content": text})),
    }
}

/// The bytes of a `data:` URI (pictures come inline; this server fetches nothing).
fn data_uri(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("data:")
        .ok_or("pictures must be data: URIs (data:image/png;base64,...); this server fetches no URLs")?;
    let (meta, data) = rest.split_once(',').ok_or("a data: URI without a comma")?;
    if !meta.ends_with(";base64") {
        return Err("a data: URI must be base64 (data:image/...;base64,...)".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("the picture's base64 does not decode: {e}"))
}

/// `response_format` as a JSON schema (None: free text).
fn response_schema(format: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let Some(format) = format else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(format.get("schema").cloned().unwrap_or_else(|| json!({"type": "object"})))),
        Some("json_schema") => match format.get("json_schema").and_then(|s| s.get("schema")) {
            Some(schema @ Value::Object(_)) => Ok(Some(schema.clone())),
            _ => Err(ApiError::invalid("response_format", "'json_schema' needs 'schema', an object")),
        },
        _ => Err(ApiError::invalid("response_format", "'response_format.type' is text, json_object or json_schema")),
    }
}

impl ChatRequest {
    /// The context's metadata for this request: every sampling key, so that nothing of an
    /// earlier request on the same context stays.
    pub fn metadata(&self) -> String {
        let schema = match (&self.schema, &self.tools) {
            (Some(s), _) => s.to_string(),
            (None, Some(t)) => t.schema().to_string(),
            (None, None) => String::new(),
        };
        json!({
            "n-predict": self.max_tokens.map_or(-1, |n| n.min(i64::MAX as u64) as i64),
            "temp": self.temperature,
            "top-p": self.top_p,
            // Above 2^32 - 2: a random seed.
            "seed": self.seed.map_or(u32::MAX as u64, |s| s & 0xFFFF_FFFF),
            "ignore-eos": self.ignore_eos,
            "grammar": "",
            "json-schema": schema,
            "run-ahead": 4,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn refused(v: Value, vision: bool) -> String {
        parse(&body(v), vision).err().expect("refused").param.unwrap_or_default()
    }

    #[test]
    fn a_full_request() {
        let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG");
        let r = parse(
            &body(json!({
                "messages": [
                    {"role": "developer", "content": "be brief\u{0}"},
                    {"role": "user", "content": [{"type": "text", "text": "what is "},
                        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}}]},
                    {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "2"},
                ],
                "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 9, "max_completion_tokens": 7,
                "temperature": 0, "top_p": 1, "seed": 5, "stop": "\n", "ignore_eos": null,
                "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "array"}}},
            })),
            true,
        )
        .unwrap();
        assert_eq!(r.messages[0], json!({"role": "system", "content": "be brief\u{FFFD}"}));
        assert_eq!(r.messages[1]["content"], "what is <image>");
        assert_eq!(r.messages[2]["content"], r#"{"tool_call":{"name":"f","arguments":{"a":1}}}"#);
        assert_eq!(r.messages[3]["role"], "user");
        assert_eq!(r.images, vec![b"\x89PNG".to_vec()]);
        assert!(r.stream && r.include_usage && !r.ignore_eos);
        assert_eq!((r.max_tokens, r.seed, r.temperature, r.top_p), (Some(7), Some(5), 0.0, 1.0));
        assert_eq!(r.stop, ["\n"]);
        let meta: Value = serde_json::from_str(&r.metadata()).unwrap();
        assert_eq!((meta["n-predict"].as_i64(), meta["json-schema"].as_str()), (Some(7), Some(r#"{"type":"array"}"#)));
    }

    #[test]
    fn defaults() {
        let r = parse(&body(json!({"messages": [{"role": "user", "content": "hi"}]})), false).unwrap();
        assert!(!r.stream && r.tools.is_none() && r.schema.is_none() && r.images.is_empty());
        let meta: Value = serde_json::from_str(&r.metadata()).unwrap();
        assert_eq!(
            (meta["n-predict"].as_i64(), meta["seed"].as_u64(), meta["json-schema"].as_str()),
            (Some(-1), Some(u32::MAX as u64), Some(""))
        );
    }

    #[test]
    fn refusals() {
        let user = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(refused(json!({}), false), "messages");
        assert_eq!(refused(json!({"messages": []}), false), "messages");
        assert_eq!(refused(json!({"messages": [1]}), false), "messages[0]");
        assert_eq!(refused(json!({"messages": [{"role": "bot"}]}), false), "messages[0].role");
        let picture =
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64,AAAA"}]}]);
        assert_eq!(refused(json!({"messages": picture}), false), "messages[0].content[0]");
        let fetch =
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]);
        assert_eq!(refused(json!({"messages": fetch}), true), "messages[0].content[0]");
        assert_eq!(refused(json!({"messages": user, "temperature": 3}), false), "temperature");
        assert_eq!(refused(json!({"messages": user, "max_tokens": -1}), false), "max_tokens");
        assert_eq!(refused(json!({"messages": user, "stop": ["a", "b", "c", "d", "e"]}), false), "stop");
        assert_eq!(refused(json!({"messages": user, "stop": [""]}), false), "stop");
        assert_eq!(refused(json!({"messages": user, "response_format": {"type": "xml"}}), false), "response_format");
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        assert_eq!(
            refused(json!({"messages": user, "tools": tools, "response_format": {"type": "json_object"}}), false),
            "response_format"
        );
    }
}
