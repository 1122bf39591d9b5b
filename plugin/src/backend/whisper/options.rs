//! Whisper config: the JSON of `load` (builder 1), `load_by_name_with_config`, or a context's
//! input index 1 (which starts again from the graph's config each time, as WasmEdge's plugin
//! does). Keys are whisper.cpp's command-line names; unknown keys are ignored, a value of the
//! wrong type is InvalidArgument, JSON that does not parse is InvalidEncoding.

use crate::error::{NnError, NnResult};
use serde::Deserialize;
use wasmedge_nn_whisper_abi::Params;

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub enable_log: bool,
    pub enable_debug_log: bool,
    pub use_gpu: bool,
    pub params: Params,
}

impl Default for Options {
    fn default() -> Self {
        // WasmEdge's plugin: min(4, cores) threads; beyond the cores ggml's spinning threads
        // only get in each other's way.
        let params = Params { threads: crate::cores::available().min(4) as i32, ..Params::default() };
        Self { enable_log: false, enable_debug_log: false, use_gpu: true, params }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", default)]
struct Config {
    enable_log: Option<bool>,
    enable_debug_log: Option<bool>,
    use_gpu: Option<bool>,
    threads: Option<u32>,
    /// Accepted for compatibility; one processor is used.
    processors: Option<u32>,
    offset_t: Option<u32>,
    /// Accepted for compatibility (whisper-cli's segment index offset of its output files).
    offset_n: Option<u32>,
    duration: Option<u32>,
    max_context: Option<i32>,
    max_len: Option<u32>,
    split_on_word: Option<bool>,
    translate: Option<bool>,
    language: Option<String>,
    detect_language: Option<bool>,
    temperature: Option<f32>,
    prompt: Option<String>,
    best_of: Option<u32>,
    beam_size: Option<i32>,
    no_timestamps: Option<bool>,
    audio_ctx: Option<u32>,
    diarize: Option<bool>,
}

fn int(v: u32, key: &str) -> NnResult<i32> {
    i32::try_from(v).map_err(|_| NnError::invalid_argument(format!("{key} is too large")))
}

impl Options {
    /// Apply a JSON document on top of these options. Nothing changes when it fails.
    pub fn apply_json(&mut self, json: &[u8]) -> NnResult<()> {
        let c: Config = crate::backend::config::parse(json)?;
        let mut next = self.clone();
        let p = &mut next.params;
        if let Some(v) = c.enable_log {
            next.enable_log = v;
        }
        if let Some(v) = c.enable_debug_log {
            next.enable_debug_log = v;
        }
        if let Some(v) = c.use_gpu {
            next.use_gpu = v;
        }
        if let Some(v) = c.threads {
            if !(1..=512).contains(&v) {
                return Err(NnError::invalid_argument("threads must be between 1 and 512"));
            }
            p.threads = v as i32;
        }
        if let Some(v) = c.offset_t {
            p.offset_ms = int(v, "offset-t")?;
        }
        if let Some(v) = c.duration {
            p.duration_ms = int(v, "duration")?;
        }
        if let Some(v) = c.max_context {
            p.max_context = v;
        }
        if let Some(v) = c.max_len {
            p.max_len = int(v, "max-len")?;
        }
        if let Some(v) = c.split_on_word {
            p.split_on_word = v;
        }
        if let Some(v) = c.translate {
            p.translate = v;
        }
        if let Some(v) = c.language {
            p.language = v.trim().to_lowercase();
        }
        if let Some(v) = c.detect_language {
            p.detect_language = v;
        }
        if let Some(v) = c.temperature {
            if !(v.is_finite() && v >= 0.0) {
                return Err(NnError::invalid_argument("temperature must be a finite number, 0 or more"));
            }
            p.temperature = v;
        }
        if let Some(v) = c.prompt {
            p.prompt = v;
        }
        if let Some(v) = c.best_of {
            p.best_of = int(v, "best-of")?.max(1);
        }
        if let Some(v) = c.beam_size {
            p.beam_size = v;
        }
        if let Some(v) = c.no_timestamps {
            p.no_timestamps = v;
        }
        if let Some(v) = c.audio_ctx {
            p.audio_ctx = int(v, "audio-ctx")?;
        }
        if let Some(v) = c.diarize {
            p.diarize = v;
        }
        let _ = (c.processors, c.offset_n);
        *self = next;
        Ok(())
    }

    pub fn apply_logging(&self) {
        crate::backend::config::apply_logging(self.enable_log, self.enable_debug_log);
    }
}

impl crate::backend::config::Configurable for Options {
    fn apply_json(&mut self, json: &[u8]) -> NnResult<()> {
        Options::apply_json(self, json)
    }

    fn apply_logging(&self) {
        Options::apply_logging(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::Errno;

    #[test]
    fn keys_set_params_and_bad_ones_change_nothing() {
        let mut o = Options::default();
        o.apply_json(br#"{"language": "DE", "translate": true, "beam-size": 1, "no-timestamps": true, "offset-t": 500, "extra": 1}"#)
            .unwrap();
        assert_eq!((o.params.language.as_str(), o.params.translate, o.params.beam_size), ("de", true, 1));
        assert!(o.params.no_timestamps && o.params.offset_ms == 500);
        let before = o.clone();
        assert_eq!(o.apply_json(br#"{"threads": "four"}"#).unwrap_err().errno, Errno::InvalidArgument);
        assert_eq!(o.apply_json(b"{nope").unwrap_err().errno, Errno::InvalidEncoding);
        assert_eq!(o.apply_json(br#"{"temperature": -1}"#).unwrap_err().errno, Errno::InvalidArgument);
        assert_eq!(o, before);
    }

    #[test]
    fn defaults_are_wasmedges() {
        let p = Options::default().params;
        assert_eq!((p.language.as_str(), p.beam_size, p.best_of, p.max_context), ("en", 5, 5, 16384));
        assert!(p.threads >= 1 && p.threads <= 4);
    }
}
