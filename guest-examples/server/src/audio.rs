//! `POST /v1/audio/transcriptions`: the WAV file of a checked form (server_api::transcription),
//! transcribed by the Whisper graph one segment per step, answered as json, text,
//! verbose_json, srt or vtt.

use crate::chat::explain;
use crate::error;
use crate::net::{ConnId, Out};
use serde_json::{json, Value};
use server_api::http::{self, Request};
use server_api::transcription::{self, Format};
use server_api::ApiError;
use wasmedge_wasi_nn::{BackendError, Error as NnError, GraphExecutionContext, TensorType};

pub struct TranscriptionJob {
    pub conn: ConnId,
    pub ctx: Option<GraphExecutionContext>,
    keep_alive: bool,
    format: Format,
    language: String,
    duration: f64,
    segments: Vec<(f64, f64, String)>,
    line: Vec<u8>,
}

/// Read the form and start the transcription on `ctx`.
pub fn start(conn: ConnId, mut ctx: GraphExecutionContext, request: &Request) -> Result<TranscriptionJob, (GraphExecutionContext, ApiError)> {
    match begin(&mut ctx, request) {
        Ok((format, language, duration)) => Ok(TranscriptionJob {
            conn,
            ctx: Some(ctx),
            keep_alive: request.keep_alive,
            format,
            language,
            duration,
            segments: Vec::new(),
            line: vec![0u8; 16 * 1024],
        }),
        Err(e) => Err((ctx, e)),
    }
}

fn begin(ctx: &mut GraphExecutionContext, request: &Request) -> Result<(Format, String, f64), ApiError> {
    let form = transcription::parse(request.header("content-type").unwrap_or(""), &request.body)?;
    ctx.set_input(1, TensorType::U8, &[1], form.config.to_string().as_bytes())
        .map_err(|e| explain(ctx, "the transcription's settings", e))?;
    ctx.set_input(0, TensorType::F32, &[1, form.audio.len()], form.audio).map_err(|e| explain(ctx, "the audio", e))?;
    Ok((form.format, form.language, form.duration))
}

impl TranscriptionJob {
    /// One segment. Returns the context when the job is over.
    pub fn step(&mut self, out: &mut Vec<Out>) -> Option<GraphExecutionContext> {
        let ctx = self.ctx.as_mut().expect("a context");
        match ctx.compute_single() {
            Ok(()) => {
                match ctx.get_output_single(0, &mut self.line) {
                    Ok(n) => {
                        if let Some(segment) = segment(&String::from_utf8_lossy(&self.line[..n])) {
                            self.segments.push(segment);
                        }
                    }
                    Err(e) => return self.end(out, Err(error::nn("reading a segment", e))),
                }
                None
            }
            Err(NnError::BackendError(BackendError::EndOfSequence)) => {
                let body = self.body();
                self.end(out, Ok(body))
            }
            Err(e) => {
                let e = explain(ctx, "transcribing", e);
                self.end(out, Err(e))
            }
        }
    }

    fn end(&mut self, out: &mut Vec<Out>, answer: Result<Vec<u8>, ApiError>) -> Option<GraphExecutionContext> {
        let bytes = answer.unwrap_or_else(|e| e.response(self.keep_alive));
        out.push(Out { conn: self.conn, bytes, end: Some(self.keep_alive) });
        let mut ctx = self.ctx.take();
        if let Some(c) = ctx.as_mut() {
            let _ = c.fini_single();
        }
        ctx
    }

    fn text(&self) -> String {
        self.segments.iter().map(|(_, _, t)| t.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ")
    }

    fn body(&self) -> Vec<u8> {
        let k = self.keep_alive;
        match self.format {
            Format::Json => http::json(200, &json!({"text": self.text()}), k),
            Format::Text => http::response(200, "text/plain; charset=utf-8", format!("{}\n", self.text()).as_bytes(), k, ""),
            Format::VerboseJson => {
                let segments: Vec<Value> = self
                    .segments
                    .iter()
                    .enumerate()
                    .map(|(id, (start, end, text))| {
                        json!({"id": id, "seek": 0, "start": start, "end": end, "text": text, "tokens": [],
                               "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0})
                    })
                    .collect();
                let body = json!({"task": "transcribe", "language": self.language, "duration": self.duration,
                                  "text": self.text(), "segments": segments});
                http::json(200, &body, k)
            }
            Format::Srt | Format::Vtt => {
                let vtt = self.format == Format::Vtt;
                let mut s = String::from(if vtt { "WEBVTT\n\n" } else { "" });
                for (i, (start, end, text)) in self.segments.iter().enumerate() {
                    if !vtt {
                        s.push_str(&format!("{}\n", i + 1));
                    }
                    s.push_str(&format!("{} --> {}\n{}\n\n", clock(*start, vtt), clock(*end, vtt), text.trim()));
                }
                http::response(200, if vtt { "text/vtt; charset=utf-8" } else { "text/plain; charset=utf-8" }, s.as_bytes(), k, "")
            }
        }
    }
}

/// A segment line of the plugin, `[00:00:00.000 --> 00:00:04.300]  text`: (start s, end s, text).
fn segment(line: &str) -> Option<(f64, f64, String)> {
    let line = line.trim_end_matches('\n');
    let rest = line.strip_prefix('[')?;
    let (times, text) = rest.split_once(']')?;
    let (start, end) = times.split_once(" --> ")?;
    Some((seconds(start)?, seconds(end)?, text.trim_start_matches(' ').to_owned()))
}

fn seconds(t: &str) -> Option<f64> {
    let mut parts = t.trim().split(':');
    let (h, m, s) = (parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?);
    Some(h * 3600.0 + m * 60.0 + s)
}

fn clock(t: f64, vtt: bool) -> String {
    let ms = (t * 1000.0).round() as u64;
    let sep = if vtt { '.' } else { ',' };
    format!("{:02}:{:02}:{:02}{sep}{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}
