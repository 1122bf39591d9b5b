//! `tools` and `tool_choice`: the model is told about the tools and made to answer in one
//! JSON form — `{"tool_call": {"name": ..., "arguments": {...}}}` or `{"response": "..."}` —
//! by a JSON schema the plugin turns into a grammar, so every call it makes names a real tool
//! with arguments that follow that tool's schema. (llama.cpp's server answers the same way
//! for templates without a tool-call format of their own: its "generic" format.)

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
            Some(_) => Err(ApiError::invalid("tool_choice", "'tool_choice' names a function, but there are no 'tools'")),
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
            Some(_) => return Err(ApiError::invalid(&format!("{param}.function.parameters"), "'parameters' must be a JSON schema object")),
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
            other => return Err(ApiError::invalid("tool_choice", format!("'tool_choice' is none, auto, required or a function, not {other:?}"))),
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid("tool_choice", "'tool_choice' must name {\"function\": {\"name\": ...}}"))?;
            functions.retain(|(n, _, _)| n == name);
            if functions.is_empty() {
                return Err(ApiError::invalid("tool_choice", format!("'tool_choice' names {name:?}, which is not among 'tools'")));
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
            forms.push(json!({"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]}));
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

    /// The model's answer, read.
    pub fn read_answer(&self, text: &str, id: &str) -> Answer {
        let Ok(value) = serde_json::from_str::<Value>(text.trim()) else {
            // Cut short (max_tokens): what there is, as text.
            return Answer::Text(text.to_owned());
        };
        if let Some(call) = value.get("tool_call") {
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
            let arguments = call.get("arguments").cloned().unwrap_or_else(|| json!({}));
            return Answer::Calls(vec![json!({
                "id": format!("call_{}", id.trim_start_matches("chatcmpl-")),
                "type": "function",
                "function": {"name": name, "arguments": arguments.to_string()},
            })]);
        }
        match value.get("response") {
            Some(Value::String(s)) => Answer::Text(s.clone()),
            _ => Answer::Text(text.to_owned()),
        }
    }
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
    json!({"tool_call": {"name": function.get("name").cloned().unwrap_or_default(), "arguments": arguments}}).to_string()
}
