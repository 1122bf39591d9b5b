//! HTTP/1.1 over byte buffers: a request is parsed (httparse) once its head and body have
//! arrived; a response is written whole, or as a chunked stream (Server-Sent Events). No
//! sockets here (the server's net.rs has them).

use crate::error::ApiError;

/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The client keeps the connection for another request.
    pub keep_alive: bool,
}

impl Request {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }
}

pub enum Parsed {
    /// More bytes are needed; `continue_wanted` when the head is complete and the client
    /// waits for `100 Continue` before sending its body.
    Partial { continue_wanted: bool },
    /// A request, and how many bytes of the buffer it took.
    Complete(Request, usize),
}

/// Parse the request at the start of `buf`, whose body may be up to `max_body` bytes.
pub fn parse(buf: &[u8], max_body: usize) -> Result<Parsed, ApiError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        // The cap holds however the head arrived: in one read or in pieces.
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => {
            return Err(ApiError::new(431, "the request's head is over 64 KiB", "invalid_request_error"))
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ApiError::new(431, "the request's head is over 64 KiB", "invalid_request_error"))
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial { continue_wanted: false }),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ApiError::new(431, "more than 64 headers", "invalid_request_error"))
        }
        Err(e) => return Err(ApiError::new(400, format!("not an HTTP request: {e}"), "invalid_request_error")),
    };
    let headers: Vec<(String, Vec<u8>)> = req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_owned())
    };
    if find("transfer-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity")) {
        return Err(ApiError::new(411, "send the body with a Content-Length, not chunked", "invalid_request_error"));
    }
    let length = match find("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::new(400, format!("Content-Length {v:?} is not a number"), "invalid_request_error")
        })?,
    };
    if length > max_body {
        return Err(ApiError::new(
            413,
            format!("the body is {length} bytes, over this server's cap of {max_body} (--max-body-mib)"),
            "invalid_request_error",
        ));
    }
    if buf.len() < head + length {
        let continue_wanted = find("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        return Ok(Parsed::Partial { continue_wanted });
    }
    let version = req.version.unwrap_or(1);
    let connection = find("connection").map(|v| v.to_ascii_lowercase());
    let keep_alive = match connection.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => version >= 1,
    };
    let target = req.path.unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_owned();
    let request = Request {
        method: req.method.unwrap_or("GET").to_owned(),
        path,
        headers,
        body: buf[head..head + length].to_vec(),
        keep_alive,
    };
    Ok(Parsed::Complete(request, head + length))
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The headers every response carries: any page may call this API (CORS).
const COMMON: &str = "Server: wasmedge-nn-server\r\nAccess-Control-Allow-Origin: *\r\n";

/// A whole response.
pub fn response(status: u16, content_type: &str, body: &[u8], keep_alive: bool, extra: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {}\r\n{COMMON}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n{extra}\r\n",
            reason(status),
            body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

pub fn json(status: u16, body: &serde_json::Value, keep_alive: bool) -> Vec<u8> {
    response(status, "application/json", body.to_string().as_bytes(), keep_alive, "")
}

/// The reply to a CORS preflight.
pub fn preflight(keep_alive: bool) -> Vec<u8> {
    response(
        204,
        "text/plain",
        b"",
        keep_alive,
        "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\nAccess-Control-Allow-Headers: *\r\nAccess-Control-Max-Age: 86400\r\n",
    )
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The head of a streamed response (chunked, so the connection can be kept after it).
pub fn stream_head(content_type: &str, keep_alive: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\n{COMMON}Content-Type: {content_type}\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" },
    )
    .into_bytes()
}

/// One chunk of a streamed response.
pub fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The end of a streamed response.
pub fn last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// One Server-Sent Event (`data: ...`) as a chunk.
pub fn event(out: &mut Vec<u8>, data: &str) {
    let mut frame = Vec::with_capacity(data.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(data.as_bytes());
    frame.extend_from_slice(b"\n\n");
    chunk(out, &frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8], max_body: usize) -> (Request, usize) {
        match parse(buf, max_body) {
            Ok(Parsed::Complete(r, n)) => (r, n),
            Ok(Parsed::Partial { .. }) => panic!("partial"),
            Err(e) => panic!("{}", e.message),
        }
    }

    #[test]
    fn a_request_with_a_body_and_what_follows_it() {
        let buf = b"POST /v1/embeddings?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n\r\n";
        let (r, n) = complete(buf, 16);
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.body.as_slice(), r.keep_alive),
            ("POST", "/v1/embeddings", &b"{}"[..], true)
        );
        assert_eq!(r.header("HOST"), Some("a"));
        let (r, m) = complete(&buf[n..], 16);
        assert_eq!((r.method.as_str(), r.path.as_str(), n + m), ("GET", "/", buf.len()));
    }

    #[test]
    fn partial_heads_and_bodies_and_100_continue() {
        let full = b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd";
        let head = full.len() - 4;
        for cut in 0..full.len() {
            let continue_wanted = cut >= head;
            assert!(
                matches!(parse(&full[..cut], 8), Ok(Parsed::Partial { continue_wanted: c }) if c == continue_wanted),
                "cut {cut}"
            );
        }
        assert_eq!(complete(full, 8).1, full.len());
    }

    #[test]
    fn refusals() {
        let status = |buf: &[u8]| parse(buf, 8).err().map(|e| e.status);
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n"), Some(413));
        assert_eq!(status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Some(411));
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), Some(400));
        assert_eq!(status(b"\x00\x01 / HTTP/1.1\r\n\r\n"), Some(400));
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert_eq!(status(&long), Some(431));
        // The same head, whole: refused too, not only while it is arriving.
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(status(&long), Some(431));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(status(many.as_bytes()), Some(431));
    }

    #[test]
    fn keep_alive() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n", 0).0.keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0).0.keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0).0.keep_alive);
    }

    #[test]
    fn responses() {
        let r = response(404, "text/plain", b"no", false, "X: y\r\n");
        assert!(r.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(r.ends_with(b"Content-Length: 2\r\nConnection: close\r\nX: y\r\n\r\nno"));
        let mut out = Vec::new();
        event(&mut out, "hi");
        chunk(&mut out, b"");
        last_chunk(&mut out);
        assert_eq!(out, b"a\r\ndata: hi\n\n\r\n0\r\n\r\n");
    }
}
