//! The server's request decoding (server_api) on any bytes. The first byte chooses:
//! - a JSON body, decoded as the server does: the object (body::json_object), its `model`,
//!   a chat completion request with and without vision (messages, pictures as data: URIs,
//!   sampling settings, response_format, tools and tool_choice) and its context metadata,
//!   the tools alone (their schema, instructions, and an answer read back), an embeddings
//!   request;
//! - a transcription form: the first line is the boundary (`multipart/form-data;
//!   boundary=...`) or the whole Content-Type, the rest the body.
//!
//! Checked, besides "never panics":
//! - a refusal is 400 (415 for a form that is not multipart) and, but for a body that is not a
//!   JSON object, names the field at fault;
//! - a chat request the server accepts without vision it accepts with vision, alike; without
//!   vision it carries no pictures, with vision no more than the `<image>` markers in the
//!   prompt; every message has a role templates know and text content without NUL; the
//!   settings are within their ranges; the metadata is JSON with a schema that is JSON;
//! - the tools' schema is an object and a tool call read back has JSON arguments; read a piece
//!   at a time, the answer streams exactly the call and text it holds whole;
//! - an embeddings request has 1 to 2048 inputs;
//! - multipart parts, and the transcription's audio, are slices of the body, in order; the
//!   duration is finite and the Whisper settings name the language.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use server_api::{answer, body, chat, embeddings, multipart, tools, transcription, ApiError};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 3 {
        0 => json(rest),
        choice => {
            let line = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let first = String::from_utf8_lossy(&rest[..line]);
            let body = rest.get(line + 1..).unwrap_or_default();
            let content_type =
                if choice == 1 { format!("multipart/form-data; boundary={first}") } else { first.into_owned() };
            form(&content_type, body);
        }
    }
});

fn json(bytes: &[u8]) {
    let map = match body::json_object(bytes) {
        Ok(map) => map,
        Err(e) => return refusal(&e, &[400], false),
    };
    let model_ok = matches!(map.get("model"), None | Some(Value::Null)) || map.get("model") == Some(&Value::from("m"));
    assert_eq!(body::check_model(&map, "m").is_ok(), model_ok);

    let blind = chat::parse(&map, false);
    let seeing = chat::parse(&map, true);
    for (r, vision) in [(&blind, false), (&seeing, true)] {
        match r {
            Ok(r) => check_chat(&map, r, vision),
            Err(e) => refusal(e, &[400], true),
        }
    }
    if let Ok(b) = &blind {
        let s = seeing.as_ref().expect("accepted without vision but refused with it");
        assert!(b.messages == s.messages && b.images.is_empty() && s.images.is_empty());
        assert_eq!(b.metadata(), s.metadata());
    }

    let field = |name: &str| map.get(name).filter(|v| !v.is_null());
    match tools::parse(field("tools"), field("tool_choice")) {
        Ok(Some(t)) => {
            assert!(t.schema().is_object());
            assert!(!t.instructions().is_empty());
            let answer = serde_json::to_string(&map).expect("a map serializes");
            for text in [answer.as_str(), &String::from_utf8_lossy(bytes)] {
                // Read as it is generated, a piece at a time (cut at every 7th byte): what
                // goes out is what the whole answer, read at once, holds.
                let mut reader = answer::AnswerReader::new();
                let (mut names, mut streamed, mut said) = (Vec::new(), String::new(), String::new());
                let ends = (1..text.len()).step_by(7).chain([text.len()]);
                for end in ends {
                    for piece in reader.feed(&text.as_bytes()[..end]) {
                        match piece {
                            answer::Piece::Call(n) => names.push(n),
                            answer::Piece::Arguments(a) => streamed.push_str(&a),
                            answer::Piece::Text(t) => said.push_str(&t),
                        }
                    }
                }
                assert!(names.len() <= 1, "one call's name, once");
                if let tools::Answer::Calls(calls) = t.read_answer(text, "chatcmpl-1") {
                    assert_eq!(calls.len(), 1);
                    let arguments = calls[0]["function"]["arguments"].as_str().expect("arguments as a string");
                    assert!(serde_json::from_str::<Value>(arguments).is_ok());
                    assert_eq!(streamed, arguments, "streamed arguments differ from the whole answer's");
                    assert_eq!(names, [calls[0]["function"]["name"].as_str().unwrap_or_default()]);
                }
                if let Some(whole) = reader.response(text.as_bytes()) {
                    assert_eq!(said, whole, "streamed text differs from the whole answer's");
                }
            }
        }
        Ok(None) => {}
        Err(e) => refusal(&e, &[400], true),
    }

    match embeddings::parse(&map) {
        Ok(r) => {
            assert!((1..=embeddings::MAX_INPUTS).contains(&r.inputs.len()));
            for (i, input) in r.inputs.iter().enumerate() {
                assert_eq!(embeddings::check_input(i, input).is_ok(), !input.is_empty());
            }
        }
        Err(e) => refusal(&e, &[400], true),
    }
}

fn check_chat(map: &Map<String, Value>, r: &chat::ChatRequest, vision: bool) {
    assert_eq!(Some(r.messages.len()), map.get("messages").and_then(Value::as_array).map(Vec::len));
    let mut markers = 0;
    for m in &r.messages {
        assert!(matches!(m["role"].as_str(), Some("system" | "user" | "assistant")), "role {}", m["role"]);
        let content = m["content"].as_str().expect("text content");
        assert!(!content.contains('\0'), "a NUL in the prompt");
        markers += content.matches("<image>").count();
    }
    assert!(r.images.len() <= markers);
    assert!(vision || r.images.is_empty());
    assert!((0.0..=2.0).contains(&r.temperature) && (0.0..=1.0).contains(&r.top_p));
    assert!(r.stop.len() <= 4 && r.stop.iter().all(|s| !s.is_empty()));
    assert!(r.schema.is_none() || r.tools.is_none());
    let meta: Value = serde_json::from_str(&r.metadata()).expect("the metadata is JSON");
    assert!(meta["n-predict"].as_i64().is_some_and(|n| n >= -1));
    assert!(meta["seed"].as_u64().is_some_and(|s| s <= u64::from(u32::MAX)));
    let schema = meta["json-schema"].as_str().expect("a schema string");
    assert_eq!(schema.is_empty(), r.schema.is_none() && r.tools.is_none());
    if !schema.is_empty() {
        assert!(serde_json::from_str::<Value>(schema).is_ok());
    }
}

fn form(content_type: &str, body: &[u8]) {
    let within = |part: &[u8]| {
        let (start, end) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
        let (lo, hi) = (body.as_ptr() as usize, body.as_ptr() as usize + body.len());
        assert!(lo <= start && end <= hi, "a part outside the body");
        (start - lo, end - lo)
    };
    let boundary = multipart::boundary(content_type);
    if let Some(b) = &boundary {
        if let Ok(parts) = multipart::parse(body, b) {
            let closing = format!("\r\n--{b}");
            let mut after = 0;
            for p in &parts {
                let (start, end) = within(p.body);
                assert!(start >= after, "parts out of order");
                assert!(body[end..].starts_with(closing.as_bytes()), "a part not ended by its boundary");
                after = end;
            }
        }
    }
    match transcription::parse(content_type, body) {
        Ok(r) => {
            within(r.audio);
            assert!(r.duration.is_finite() && r.duration >= 0.0);
            assert!(!r.language.is_empty() && r.config["language"] == r.language.as_str());
        }
        Err(e) => refusal(&e, if boundary.is_some() { &[400] } else { &[415] }, boundary.is_some()),
    }
}

/// A refusal with one of these statuses, naming the field at fault when `named`, whose
/// response is OpenAI's error JSON.
fn refusal(e: &ApiError, statuses: &[u16], named: bool) {
    assert!(statuses.contains(&e.status), "status {} for {:?}", e.status, e.message);
    assert!(!named || e.param.as_ref().is_some_and(|p| !p.is_empty()), "no field named for {:?}", e.message);
    let response = e.response(false);
    let body = &response[response.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4..];
    assert!(serde_json::from_slice::<Value>(body).is_ok_and(|v| v["error"]["message"].is_string()));
}
