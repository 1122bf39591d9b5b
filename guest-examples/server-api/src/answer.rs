//! A tools answer read as it is generated. The model writes `{"tool_call": {"name": ...,
//! "arguments": {...}}}` or `{"response": "..."}` (see [`crate::tools`]), a token at a time;
//! this scanner follows the JSON so that a stream can send a call's name as soon as it is
//! written, its arguments as they are written (the model's own JSON text, as OpenAI streams
//! them), and a direct answer's text as it is written, decoded. The whole answer read at the
//! end gives the same call and text, so a streamed answer equals the one answered whole.

/// What a stream sends next.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A call begins: its tool's name.
    Call(String),
    /// More of the call's arguments (JSON text).
    Arguments(String),
    /// More of a direct answer's text.
    Text(String),
}

#[derive(Default)]
struct Frame {
    object: bool,
    /// (objects) The key whose value comes or is being read.
    key: Option<String>,
    /// (objects) A string now would be a key.
    expect_key: bool,
}

/// Where a watched value is.
#[derive(Default, Clone, Copy)]
struct Span {
    start: Option<usize>,
    end: Option<usize>,
}

#[derive(Default)]
pub struct AnswerReader {
    scanned: usize,
    stack: Vec<Frame>,
    in_string: bool,
    /// The string being read started here (its first content byte).
    string_start: usize,
    /// Bytes of an escape still to come (`\u` needs 4), and a high surrogate waiting for its
    /// low half: no safe end for decoding until both are whole.
    escape_left: u8,
    hex: u32,
    high_surrogate: bool,
    /// Where the string being read may be cut and decoded.
    safe: usize,
    /// A bare literal (number, true, false, null) is being read.
    in_literal: bool,
    name: Option<String>,
    arguments: Span,
    /// Stack depth at the arguments value's start.
    arguments_depth: usize,
    response: Span,
    // What went out.
    call_sent: bool,
    arguments_sent: usize,
    response_raw_sent: usize,
    sent_any: bool,
}

impl AnswerReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// What of `text` (the answer so far: each call's text extends the last) can go out now.
    pub fn feed(&mut self, text: &[u8]) -> Vec<Piece> {
        for (i, &b) in text.iter().enumerate().skip(self.scanned) {
            self.byte(text, i, b);
        }
        self.scanned = text.len();
        let mut pieces = Vec::new();
        if let Some(name) = &self.name {
            if !self.call_sent {
                self.call_sent = true;
                pieces.push(Piece::Call(name.clone()));
            }
            if let Some(start) = self.arguments.start {
                let from = self.arguments_sent.max(start);
                let to = valid_end(text, from, self.arguments.end.unwrap_or(self.scanned));
                if to > from {
                    pieces.push(Piece::Arguments(String::from_utf8_lossy(&text[from..to]).into_owned()));
                    self.arguments_sent = to;
                }
            }
        }
        if let Some(start) = self.response.start {
            let from = self.response_raw_sent.max(start);
            let end = match self.response.end {
                Some(end) => end,
                None if self.in_string => self.safe,
                None => from,
            };
            let to = valid_end(text, from, end);
            if to > from {
                if let Some(decoded) = decode(&text[from..to]) {
                    self.response_raw_sent = to;
                    if !decoded.is_empty() {
                        pieces.push(Piece::Text(decoded));
                    }
                }
            }
        }
        self.sent_any |= !pieces.is_empty();
        pieces
    }

    /// Whether anything went out as a call or a text (else an unreadable answer goes out
    /// whole, as text, at the end).
    pub fn sent_any(&self) -> bool {
        self.sent_any
    }

    /// The call, when its name and whole arguments were written: (name, arguments as JSON text).
    pub fn call<'t>(&self, text: &'t [u8]) -> Option<(&str, &'t str)> {
        let name = self.name.as_deref()?;
        let (start, end) = (self.arguments.start?, self.arguments.end?);
        Some((name, std::str::from_utf8(&text[start..end]).ok()?))
    }

    /// The direct answer, when it was written whole.
    pub fn response(&self, text: &[u8]) -> Option<String> {
        decode(&text[self.response.start?..self.response.end?])
    }

    /// The path of the value being read: the keys of the enclosing objects.
    fn at(&self, path: &[&str]) -> bool {
        self.stack.len() == path.len()
            && self.stack.iter().zip(path).all(|(f, k)| f.object && f.key.as_deref() == Some(*k))
    }

    /// A value starts at `i` (its first byte).
    fn value_starts(&mut self, i: usize) {
        if self.at(&["tool_call", "arguments"]) && self.arguments.start.is_none() {
            self.arguments.start = Some(i);
            self.arguments_depth = self.stack.len();
        }
    }

    /// The value that started at the arguments' depth ended just before `end`.
    fn value_ends(&mut self, end: usize) {
        if self.arguments.start.is_some() && self.arguments.end.is_none() && self.stack.len() == self.arguments_depth {
            self.arguments.end = Some(end);
        }
    }

    fn byte(&mut self, text: &[u8], i: usize, b: u8) {
        if self.in_string {
            self.string_byte(text, i, b);
            return;
        }
        if self.in_literal {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+') {
                return;
            }
            self.in_literal = false;
            self.value_ends(i);
        }
        let expecting_key = self.stack.last().is_some_and(|f| f.object && f.expect_key);
        match b {
            b'{' | b'[' => {
                self.value_starts(i);
                self.stack.push(Frame { object: b == b'{', key: None, expect_key: b == b'{' });
            }
            b'}' | b']' => {
                self.stack.pop();
                self.value_ends(i + 1);
            }
            b'"' => {
                if !expecting_key {
                    self.value_starts(i);
                    if self.at(&["response"]) && self.response.start.is_none() {
                        self.response.start = Some(i + 1);
                    }
                }
                self.in_string = true;
                self.string_start = i + 1;
                self.safe = i + 1;
            }
            b',' => {
                if let Some(f) = self.stack.last_mut() {
                    if f.object {
                        f.expect_key = true;
                        f.key = None;
                    }
                }
            }
            b':' | b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                self.value_starts(i);
                self.in_literal = true;
            }
        }
    }

    fn string_byte(&mut self, text: &[u8], i: usize, b: u8) {
        if self.escape_left > 0 {
            self.escape_left -= 1;
            if self.escape_left == 4 && b != b'u' {
                // A one-character escape (\n, \", ...).
                self.escape_left = 0;
            } else if self.escape_left < 4 {
                self.hex = self.hex * 16 + (b as char).to_digit(16).unwrap_or(0);
            }
            if self.escape_left == 0 {
                let high = (0xD800..0xDC00).contains(&self.hex);
                self.high_surrogate = high;
                self.hex = 0;
                if !high {
                    self.safe = i + 1;
                }
            }
            return;
        }
        match b {
            b'\\' => {
                self.escape_left = 5;
                self.hex = 0;
            }
            b'"' => {
                self.in_string = false;
                self.high_surrogate = false;
                let content = &text[self.string_start..i];
                let expecting_key = self.stack.last().is_some_and(|f| f.object && f.expect_key);
                if expecting_key {
                    let key = decode(content);
                    if let Some(f) = self.stack.last_mut() {
                        f.key = key;
                        f.expect_key = false;
                    }
                    return;
                }
                if self.at(&["tool_call", "name"]) && self.name.is_none() {
                    self.name = decode(content);
                }
                if self.at(&["response"]) && self.response.end.is_none() {
                    self.response.end = Some(i);
                }
                self.value_ends(i + 1);
            }
            _ if !self.high_surrogate => self.safe = i + 1,
            _ => {}
        }
    }
}

/// The end of the longest run of whole UTF-8 characters in `text[from..to]`.
fn valid_end(text: &[u8], from: usize, to: usize) -> usize {
    let to = to.min(text.len());
    if from >= to {
        return from;
    }
    match std::str::from_utf8(&text[from..to]) {
        Ok(_) => to,
        Err(e) => from + e.valid_up_to(),
    }
}

/// A JSON string's content (between its quotes), decoded.
fn decode(content: &[u8]) -> Option<String> {
    let mut quoted = Vec::with_capacity(content.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(content);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `text` a byte at a time (as tokens may cut anywhere); every piece sent.
    fn pieces(text: &str) -> (Vec<Piece>, AnswerReader) {
        let mut reader = AnswerReader::new();
        let mut all = Vec::new();
        for end in 1..=text.len() {
            all.extend(reader.feed(&text.as_bytes()[..end]));
        }
        (all, reader)
    }

    fn joined(pieces: &[Piece]) -> (Vec<String>, String, String) {
        let mut calls = Vec::new();
        let (mut args, mut said) = (String::new(), String::new());
        for p in pieces {
            match p {
                Piece::Call(n) => calls.push(n.clone()),
                Piece::Arguments(a) => args.push_str(a),
                Piece::Text(t) => said.push_str(t),
            }
        }
        (calls, args, said)
    }

    #[test]
    fn a_call_streams_its_name_then_its_arguments() {
        let text = r#" { "tool_call" : {"name": "get_weather", "arguments": {"city": "Paris, \"FR\"", "days": [1, {"x": null}]}} } "#;
        let (all, reader) = pieces(text);
        let (calls, args, said) = joined(&all);
        assert_eq!(calls, ["get_weather"]);
        assert_eq!(args, r#"{"city": "Paris, \"FR\"", "days": [1, {"x": null}]}"#);
        assert!(said.is_empty());
        assert_eq!(reader.call(text.as_bytes()), Some(("get_weather", args.as_str())));
        assert!(matches!(all.first(), Some(Piece::Call(_))));
        assert!(all.iter().filter(|p| matches!(p, Piece::Arguments(_))).count() > 10, "sent in pieces");
    }

    #[test]
    fn arguments_before_the_name_wait_for_it() {
        let text = r#"{"tool_call": {"arguments": {"a": 1}, "name": "f"}}"#;
        let (all, _) = pieces(text);
        assert_eq!(all, [Piece::Call("f".into()), Piece::Arguments(r#"{"a": 1}"#.into())]);
    }

    #[test]
    fn an_answer_streams_decoded() {
        let text = r#"{"response": "caf\u00e9 \ud83d\ude00 line\nnext \"q\" 東京"}"#;
        let (all, reader) = pieces(text);
        let (calls, args, said) = joined(&all);
        assert!(calls.is_empty() && args.is_empty());
        assert_eq!(said, "café 😀 line\nnext \"q\" 東京");
        assert_eq!(reader.response(text.as_bytes()).as_deref(), Some(said.as_str()));
    }

    #[test]
    fn cut_short_sends_what_was_whole() {
        let (all, reader) = pieces(r#"{"tool_call": {"name": "f", "arguments": {"a": "b"#);
        assert_eq!(joined(&all).1, r#"{"a": "b"#);
        assert!(reader.call(br#"{"tool_call": {"name": "f", "arguments": {"a": "b"#).is_none());
        let (all, reader) = pieces(r#"{"tool_c"#);
        assert!(all.is_empty() && !reader.sent_any());
    }
}
