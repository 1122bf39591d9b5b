//! `multipart/form-data` bodies (RFC 7578), already whole in memory: the parts split at the
//! boundary, each part's headers parsed by httparse.

pub struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub body: &'a [u8],
}

/// The boundary of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_owned())
    })
}

pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, String> {
    let delimiter = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delimiter.as_bytes());
    let mut parts = Vec::new();
    let mut at = finder.find(body).ok_or("the body has no multipart boundary")? + delimiter.len();
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let rest = rest.strip_prefix(b"\r\n").ok_or("a multipart boundary not followed by a line end")?;
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let head = match httparse::parse_headers(rest, &mut headers) {
            Ok(httparse::Status::Complete((n, _))) => n,
            _ => return Err("a multipart part's headers do not parse".into()),
        };
        let content = &rest[head..];
        // The part ends at CRLF before the next delimiter.
        let end = memchr::memmem::find(content, format!("\r\n{delimiter}").as_bytes())
            .ok_or("a multipart part with no closing boundary")?;
        let mut part = Part { name: String::new(), filename: None, content_type: None, body: &content[..end] };
        for h in headers.iter().take_while(|h| !h.name.is_empty()) {
            let value = String::from_utf8_lossy(h.value);
            if h.name.eq_ignore_ascii_case("content-disposition") {
                for param in value.split(';').skip(1) {
                    if let Some((k, v)) = param.split_once('=') {
                        let v = v.trim().trim_matches('"').to_owned();
                        match k.trim().to_ascii_lowercase().as_str() {
                            "name" => part.name = v,
                            "filename" => part.filename = Some(v),
                            _ => {}
                        }
                    }
                }
            } else if h.name.eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.trim().to_owned());
            }
        }
        parts.push(part);
        at = at + 2 + head + end + 2 + delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert_eq!(boundary("multipart/form-data; boundary=\"ab c\"").as_deref(), Some("ab c"));
        assert_eq!(boundary("Multipart/Form-Data;charset=x; Boundary=xyz").as_deref(), Some("xyz"));
        assert_eq!(boundary("multipart/mixed; boundary=xyz"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn parts() {
        let body = b"preamble\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--B\r\n\
Content-Disposition: form-data; name=language\r\n\r\nen\r\n--B--\r\n";
        let parts = parse(body, "B").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].filename.as_deref(), parts[0].content_type.as_deref()),
            ("file", Some("a.wav"), Some("audio/wav"))
        );
        assert_eq!(parts[0].body, b"RIFF");
        assert_eq!((parts[1].name.as_str(), parts[1].body), ("language", &b"en"[..]));
        assert!(parse(b"--B\r\n\r\nno end", "B").is_err());
        assert!(parse(b"--Bx", "B").is_err());
        assert!(parse(b"nothing", "B").is_err());
    }
}
