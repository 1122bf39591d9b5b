//! Errors as OpenAI's API gives them: an HTTP status and
//! `{"error": {"message", "type", "param", "code"}}`.

use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// OpenAI's error `type`: `invalid_request_error`, `not_found_error`, `server_error`...
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>, kind: &'static str) -> Self {
        Self { status, message: message.into(), kind, param: None, code: None }
    }

    /// 400: the request is wrong; `param` names the field.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self { param: Some(param.to_owned()), ..Self::new(400, message, "invalid_request_error") }
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self::new(500, message, "server_error")
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(503, message, "server_error").with_code("server_busy")
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }

    /// The whole HTTP response. 503s ask clients to come back later; the other errors say
    /// that retrying the same request will not help (OpenAI's clients honour
    /// `x-should-retry`).
    pub fn response(&self, keep_alive: bool) -> Vec<u8> {
        let extra = if self.status == 503 { "Retry-After: 1\r\n" } else { "x-should-retry: false\r\n" };
        crate::http::response(self.status, "application/json", self.body().to_string().as_bytes(), keep_alive, extra)
    }
}
