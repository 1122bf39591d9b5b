//! `POST /v1/audio/transcriptions`: a `multipart/form-data` request read and checked — the WAV
//! file (its header read for the duration), the answer's format, and the Whisper settings
//! (language, prompt, temperature).

use crate::error::ApiError;
use crate::multipart;
use serde_json::{json, Value};

/// How the transcription is answered (`response_format`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Json,
    Text,
    VerboseJson,
    Srt,
    Vtt,
}

/// What a request asks for, checked.
pub struct TranscriptionRequest<'a> {
    /// The WAV file's bytes, whole (the plugin decodes them).
    pub audio: &'a [u8],
    pub format: Format,
    /// The language asked for, or `auto`.
    pub language: String,
    /// The audio's length in seconds, from the WAV header.
    pub duration: f64,
    /// The Whisper context's settings: `language`, and `prompt` and `temperature` when given.
    pub config: Value,
}

/// Read and check a request with this Content-Type and body.
pub fn parse<'a>(content_type: &str, body: &'a [u8]) -> Result<TranscriptionRequest<'a>, ApiError> {
    let boundary = multipart::boundary(content_type).ok_or_else(|| {
        ApiError::new(415, "send the audio as multipart/form-data with a 'file' field", "invalid_request_error")
    })?;
    let parts = multipart::parse(body, &boundary).map_err(|m| ApiError::invalid("file", m))?;
    let text =
        |name: &str| parts.iter().find(|p| p.name == name).map(|p| String::from_utf8_lossy(p.body).trim().to_owned());
    let file =
        parts.iter().find(|p| p.name == "file").ok_or_else(|| ApiError::invalid("file", "the form has no 'file'"))?;
    let format = match text("response_format").as_deref() {
        None | Some("json") => Format::Json,
        Some("text") => Format::Text,
        Some("verbose_json") => Format::VerboseJson,
        Some("srt") => Format::Srt,
        Some("vtt") => Format::Vtt,
        Some(other) => {
            return Err(ApiError::invalid(
                "response_format",
                format!("'response_format' is json, text, verbose_json, srt or vtt, not {other:?}"),
            ))
        }
    };
    let reader = hound::WavReader::new(file.body).map_err(|e| {
        ApiError::invalid(
            "file",
            format!("the file is not a WAV this server reads ({e}); send a RIFF/WAVE file (any rate, PCM or float)"),
        )
    })?;
    let spec = reader.spec();
    let duration = f64::from(reader.duration()) / f64::from(spec.sample_rate.max(1));
    let language = text("language").filter(|l| !l.is_empty()).unwrap_or_else(|| "auto".to_owned());
    let mut config = json!({"language": language});
    if let Some(prompt) = text("prompt") {
        config["prompt"] = json!(prompt);
    }
    if let Some(t) = text("temperature") {
        let t: f64 = t
            .parse()
            .ok()
            .filter(|t: &f64| (0.0..=1.0).contains(t))
            .ok_or_else(|| ApiError::invalid("temperature", "'temperature' must be a number from 0 to 1"))?;
        config["temperature"] = json!(t);
    }
    Ok(TranscriptionRequest { audio: file.body, format, language, duration, config })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16 kHz mono 16-bit WAV of `samples` silent samples.
    fn wav(samples: u32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = std::io::Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut w, spec).expect("a WAV writer");
        for _ in 0..samples {
            writer.write_sample(0i16).expect("a sample");
        }
        writer.finalize().expect("a whole WAV");
        w.into_inner()
    }

    fn form(fields: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend(format!("--XY\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
            body.extend(*value);
            body.extend(b"\r\n");
        }
        body.extend(b"--XY--\r\n");
        body
    }

    const TYPE: &str = "multipart/form-data; boundary=XY";

    #[test]
    fn a_form() {
        let audio = wav(8000);
        let body = form(&[
            ("file", &audio),
            ("response_format", b"srt"),
            ("language", b" de "),
            ("temperature", b"0.2"),
            ("prompt", b"names"),
        ]);
        let r = parse(TYPE, &body).unwrap();
        assert_eq!((r.audio, r.format, r.language.as_str(), r.duration), (&audio[..], Format::Srt, "de", 0.5));
        assert_eq!(r.config, json!({"language": "de", "prompt": "names", "temperature": 0.2}));
        let body = form(&[("file", &audio), ("language", b"")]);
        let r = parse(TYPE, &body).unwrap();
        assert_eq!((r.format, r.config), (Format::Json, json!({"language": "auto"})));
    }

    #[test]
    fn refusals() {
        let audio = wav(10);
        let refused = |t: &str, body: &[u8]| parse(t, body).err().map(|e| (e.status, e.param));
        assert_eq!(refused("application/json", b"{}"), Some((415, None)));
        assert_eq!(refused(TYPE, b"junk"), Some((400, Some("file".into()))));
        assert_eq!(refused(TYPE, &form(&[("language", b"en")])), Some((400, Some("file".into()))));
        assert_eq!(refused(TYPE, &form(&[("file", b"not a wav")])), Some((400, Some("file".into()))));
        assert_eq!(
            refused(TYPE, &form(&[("file", &audio), ("response_format", b"mp3")])),
            Some((400, Some("response_format".into())))
        );
        assert_eq!(
            refused(TYPE, &form(&[("file", &audio), ("temperature", b"hot")])),
            Some((400, Some("temperature".into())))
        );
        for t in [&b"nan"[..], b"inf", b"-1", b"1.5"] {
            assert_eq!(
                refused(TYPE, &form(&[("file", &audio), ("temperature", t)])),
                Some((400, Some("temperature".into())))
            );
        }
    }
}
