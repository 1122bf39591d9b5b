//! `tools` and `tool_choice`: the model is told about the tools and made to answer in one
//! JSON form — `{"tool_call": {"name": ..., "arguments": {...}}}` or `{"response": "..."}` —
//! by a JSON schema the plugin turns into a grammar, so every call it makes names a real tool
//! with arguments that follow that tool's schema. (llama.cpp's server answers the same way
//! for templates without a tool-call format of their own: its "generic" format.)

use crate::answer::AnswerReader;
use crate::error::ApiError;
use serde_json::{json, Value};

pub struct Tools {
    /// The functions the model may call: (name, description, parameters schema).
    functions: Vec<(String, String, Value)>,
    /// `tool_choice` is `required` or names a function: no plain answer.
    must_call: bool,
}

/// `tools` and `tool_choice` read from a request (None: no tools, or `tool_choice: none`).
pub fn parse(tools: Option<&Value>, choice: Option<&Value>) -> Result<Option<Tools>, ApiError> {
    let Some(tools) = tools else {
        return match choice {
            None | Some(Value::String(_)) => Ok(None),
            Some(_) => {
                Err(ApiError::invalid("tool_choice", "'tool_choice' names a function, but there are no 'tools'"))
            }
        };
    };
    let Value::Array(list) = tools else {
        return Err(ApiError::invalid("tools", "'tools' must be an array"));
    };
    let mut functions = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let param = format!("tools[{i}]");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::invalid(&param, "each tool must be {\"type\": \"function\", \"function\": {...}}"));
        }
        let f = tool.get("function").ok_or_else(|| ApiError::invalid(&param, "a tool needs 'function'"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::invalid(&format!("{param}.function.name"), "a function needs a 'name'"))?;
        let description = f.get("description").and_then(Value::as_str).unwrap_or("").to_owned();
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    &format!("{param}.function.parameters"),
                    "'parameters' must be a JSON schema object",
                ))
            }
        };
        functions.push((name.to_owned(), description, parameters));
    }
    let mut must_call = false;
    match choice {
        None => {}
        Some(Value::String(c)) => match c.as_str() {
            "none" => return Ok(None),
            "auto" => {}
            "required" => must_call = true,
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("'tool_choice' is none, auto, required or a function, not {other:?}"),
                ))
            }
        },
        Some(Value::Object(o)) => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid("tool_choice", "'tool_choice' must name {\"function\": {\"name\": ...}}")
            })?;
            functions.retain(|(n, _, _)| n == name);
            if functions.is_empty() {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("'tool_choice' names {name:?}, which is not among 'tools'"),
                ));
            }
            must_call = true;
        }
        Some(_) => return Err(ApiError::invalid("tool_choice", "'tool_choice' must be a string or an object")),
    }
    if functions.is_empty() {
        return Ok(None);
    }
    Ok(Some(Tools { functions, must_call }))
}

impl Tools {
    /// The schema the answer must follow.
    pub fn schema(&self) -> Value {
        let mut forms: Vec<Value> = self
            .functions
            .iter()
            .map(|(name, _, parameters)| {
                json!({
                    "type": "object",
                    "properties": {"tool_call": {
                        "type": "object",
                        "properties": {"name": {"const": name}, "arguments": parameters},
                        "required": ["name", "arguments"],
                    }},
                    "required": ["tool_call"],
                })
            })
            .collect();
        if !self.must_call {
            forms.push(
                json!({"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]}),
            );
        }
        if forms.len() == 1 {
            forms.pop().unwrap_or_default()
        } else {
            json!({"anyOf": forms})
        }
    }

    /// What the model is told, as a system message before the conversation.
    pub fn instructions(&self) -> String {
        let list: Vec<Value> = self
            .functions
            .iter()
            .map(|(name, description, parameters)| json!({"name": name, "description": description, "parameters": parameters}))
            .collect();
        let mut text = format!(
            "You can call these tools:\n{}\n\nRespond in JSON. To call a tool: {{\"tool_call\": {{\"name\": \"<tool name>\", \"arguments\": {{...}}}}}}.",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        if !self.must_call {
            text.push_str(" To answer the user directly: {\"response\": \"<your answer>\"}.");
        }
        text
    }

    /// The model's whole answer, read: a call (its arguments the JSON text the model wrote,
    /// as a stream sends them), the direct answer's text, or — cut short or unreadable — the
    /// text as it is.
    pub fn read_answer(&self, text: &str, id: &str) -> Answer {
        let mut reader = AnswerReader::new();
        reader.feed(text.as_bytes());
        if serde_json::from_str::<Value>(text.trim()).is_ok() {
            if let Some((name, arguments)) = reader.call(text.as_bytes()) {
                return Answer::Calls(vec![json!({
                    "id": call_id(id), "type": "function", "function": {"name": name, "arguments": arguments},
                })]);
            }
            if let Some(response) = reader.response(text.as_bytes()) {
                return Answer::Text(response);
            }
        }
        Answer::Text(text.to_owned())
    }
}

/// The id of the call made in the answer `id` (`chatcmpl-...`).
pub fn call_id(id: &str) -> String {
    format!("call_{}", id.trim_start_matches("chatcmpl-"))
}

pub enum Answer {
    /// OpenAI's `tool_calls` entries.
    Calls(Vec<Value>),
    Text(String),
}

/// An assistant's earlier `tool_calls`, as the text it answered in.
pub fn history_of_calls(calls: &[Value]) -> String {
    let call = &calls[0];
    let function = call.get("function").cloned().unwrap_or_default();
    let arguments = match function.get("arguments") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(other) => other.clone(),
        None => json!({}),
    };
    json!({"tool_call": {"name": function.get("name").cloned().unwrap_or_default(), "arguments": arguments}})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Value {
        json!([
            {"type": "function", "function": {"name": "weather", "description": "the weather", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "time"}},
        ])
    }

    #[test]
    fn choices() {
        let auto = parse(Some(&tools()), None).unwrap().unwrap();
        assert_eq!(auto.schema()["anyOf"].as_array().map(Vec::len), Some(3));
        assert!(auto.instructions().contains("\"weather\"") && auto.instructions().contains("\"response\""));
        let required = parse(Some(&tools()), Some(&json!("required"))).unwrap().unwrap();
        assert_eq!(required.schema()["anyOf"].as_array().map(Vec::len), Some(2));
        let named =
            parse(Some(&tools()), Some(&json!({"type": "function", "function": {"name": "time"}}))).unwrap().unwrap();
        assert_eq!(named.schema()["properties"]["tool_call"]["properties"]["name"]["const"], "time");
        assert!(parse(Some(&tools()), Some(&json!("none"))).unwrap().is_none());
        assert!(parse(None, Some(&json!("auto"))).unwrap().is_none());
        assert!(parse(Some(&json!([])), None).unwrap().is_none());
    }

    #[test]
    fn refusals() {
        let param = |t: Option<Value>, c: Option<Value>| parse(t.as_ref(), c.as_ref()).err().and_then(|e| e.param);
        assert_eq!(param(None, Some(json!({"function": {"name": "f"}}))).as_deref(), Some("tool_choice"));
        assert_eq!(param(Some(json!({})), None).as_deref(), Some("tools"));
        assert_eq!(param(Some(json!([{"type": "web"}])), None).as_deref(), Some("tools[0]"));
        assert_eq!(
            param(Some(json!([{"type": "function", "function": {"name": ""}}])), None).as_deref(),
            Some("tools[0].function.name")
        );
        assert_eq!(param(Some(tools()), Some(json!("sometimes"))).as_deref(), Some("tool_choice"));
        assert_eq!(param(Some(tools()), Some(json!({"function": {"name": "nope"}}))).as_deref(), Some("tool_choice"));
    }

    #[test]
    fn answers() {
        let t = parse(Some(&tools()), None).unwrap().unwrap();
        match t.read_answer(r#" {"tool_call": {"name": "time", "arguments": {"tz": "UTC"}}} "#, "chatcmpl-7") {
            Answer::Calls(c) => {
                assert_eq!(c[0]["id"], "call_7");
                assert_eq!(c[0]["function"]["arguments"], r#"{"tz": "UTC"}"#);
            }
            Answer::Text(t) => panic!("text {t}"),
        }
        assert!(matches!(t.read_answer(r#"{"response": "hi"}"#, "x"), Answer::Text(s) if s == "hi"));
        assert!(matches!(t.read_answer(r#"{"respo"#, "x"), Answer::Text(s) if s == r#"{"respo"#));
    }
}
