//! The server's HTTP request parser (server_api::http::parse) on any bytes, whole and as they
//! might arrive: a prefix first (cut where the fuzzer says), then the whole buffer, then every
//! request pipelined after the first, as the server's event loop parses them.
//!
//! Checked, besides "never panics":
//! - a complete request takes at least one byte and at most the buffer, its body is the bytes
//!   before that end and within the cap, and its path has no query string;
//! - a prefix parses as the whole does wherever it holds the whole request (complete, the same
//!   request and length); a prefix refused means the whole is refused with that status (for
//!   prefixes within the 64 KiB head limit); a prefix that wants `100 Continue` means the
//!   whole, still partial, wants it too;
//! - `100 Continue` is wanted only when an `Expect` header asks for it;
//! - a refusal is 400, 411, 413 or 431, and its response is an HTTP response with a JSON body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use server_api::http::{self, Parsed, Request};
use server_api::ApiError;

/// A small body cap, so that refusals for size happen too.
const MAX_BODY: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((cut, input)) = data.split_first_chunk::<2>() else { return };
    let cut = usize::from(u16::from_le_bytes(*cut)) % (input.len() + 1);
    let whole = parse(input);
    let prefix = parse(&input[..cut]);
    match (&prefix, &whole) {
        (Ok(Parsed::Complete(a, n)), Ok(Parsed::Complete(b, m))) => {
            assert_eq!(n, m, "a prefix and the whole took different lengths");
            assert_same(a, b);
        }
        (Ok(Parsed::Complete(..)), _) => panic!("a prefix is a complete request but the whole is not"),
        (Err(a), Err(b)) if cut <= http::MAX_HEAD => {
            assert_eq!(a.status, b.status, "a prefix and the whole refused differently")
        }
        (Err(a), Ok(_)) if cut <= http::MAX_HEAD => panic!("a prefix was refused ({}) but not the whole", a.message),
        (_, Ok(Parsed::Complete(_, m))) => {
            assert!(cut < *m, "the prefix holds the whole request but did not parse as it")
        }
        (Ok(Parsed::Partial { continue_wanted: true }), Ok(Parsed::Partial { continue_wanted })) => {
            assert!(continue_wanted, "a prefix wants 100 Continue but the whole does not")
        }
        _ => {}
    }
    // The requests pipelined after the first.
    let mut at = 0;
    while let Ok(Parsed::Complete(_, n)) = parse(&input[at..]) {
        at += n;
    }
});

/// Parse `buf` and check what any one parse must satisfy.
fn parse(buf: &[u8]) -> Result<Parsed, ApiError> {
    let parsed = http::parse(buf, MAX_BODY);
    match &parsed {
        Ok(Parsed::Complete(r, n)) => {
            assert!(*n >= 1 && *n <= buf.len(), "took {n} bytes of {}", buf.len());
            assert!(r.body.len() <= MAX_BODY);
            assert_eq!(r.body, buf[n - r.body.len()..*n], "the body is not the request's last bytes");
            assert!(!r.path.contains('?'));
            assert!(!r.method.is_empty());
            let _ = r.header("content-type");
            let head = http::response(200, "text/plain", &r.body, r.keep_alive, "");
            assert!(head.ends_with(&r.body));
            let mut out = Vec::new();
            http::event(&mut out, &r.path);
            check_chunks(&out);
        }
        Ok(Parsed::Partial { continue_wanted }) => {
            if *continue_wanted {
                assert!(contains_ignoring_case(buf, b"expect"), "100 Continue without an Expect header");
            }
        }
        Err(e) => {
            assert!(matches!(e.status, 400 | 411 | 413 | 431), "status {}", e.status);
            let response = e.response(true);
            assert!(response.starts_with(format!("HTTP/1.1 {} ", e.status).as_bytes()));
            let body = &response[response.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4..];
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok(), "the error's body is not JSON");
        }
    }
    parsed
}

fn assert_same(a: &Request, b: &Request) {
    assert_eq!(
        (&a.method, &a.path, &a.headers, &a.body, a.keep_alive),
        (&b.method, &b.path, &b.headers, &b.body, b.keep_alive)
    );
}

/// `out` is whole chunks: each a hex length, CRLF, that many bytes, CRLF.
fn check_chunks(mut out: &[u8]) {
    while !out.is_empty() {
        let line = out.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&out[..line]).expect("ASCII"), 16).expect("a hex size");
        assert!(size > 0 && out.len() >= line + 2 + size + 2 && &out[line + 2 + size..line + 4 + size] == b"\r\n");
        out = &out[line + 4 + size..];
    }
}

fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}
