//! GGML metadata: the JSON config of `load`/`load_by_name_with_config`, and the per-context
//! JSON at input index 1. Keys carry llama.cpp's meanings. Unknown keys are ignored (guests
//! send extra ones); a key of the wrong JSON type is InvalidArgument; JSON that does not
//! parse is InvalidEncoding.

use crate::abi::Errno;
use crate::error::{NnError, NnResult};
use serde::Deserialize;

/// Everything that shapes a model load, a llama.cpp context and a generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    // Logging and output.
    pub enable_log: bool,
    pub enable_debug_log: bool,
    pub stream_stdout: bool,
    // Model (read at load time only).
    pub n_gpu_layers: i64,
    pub main_gpu: i64,
    pub use_mmap: bool,
    pub use_mlock: bool,
    // Context.
    pub ctx_size: u32,
    pub batch_size: u32,
    pub ubatch_size: u32,
    pub threads: u32,
    pub threads_batch: u32,
    pub flash_attn: Option<bool>,
    // Generation.
    /// Tokens to generate; negative: until end of generation or a full context.
    pub n_predict: i64,
    pub reverse_prompt: Option<String>,
    pub ignore_eos: bool,
    pub temp: f64,
    pub top_k: i32,
    pub top_p: f64,
    pub min_p: f64,
    pub repeat_penalty: f64,
    pub presence_penalty: f64,
    pub frequency_penalty: f64,
    /// Sampling seed; u32::MAX (llama.cpp's LLAMA_DEFAULT_SEED) picks a random one.
    pub seed: u32,
    /// Tokens the repetition penalties look back on (llama.cpp's penalty_last_n).
    pub repeat_last_n: i32,
    /// Streaming: how many tokens a stream's worker may compute ahead of the guest; 0: each
    /// token only when the guest asks for it.
    pub run_ahead: u32,
    // Vision.
    /// The projector for images (a path the guest names, confined to its directories).
    pub mmproj: Option<String>,
    /// The projector file's pinned sha256 (lowercase hex): checked before it is loaded.
    pub mmproj_sha256: Option<String>,
    /// An image file to go with the next prompt (same rule).
    pub image: Option<String>,
    // Embeddings.
    /// Compute the prompt's embedding instead of generating (output 0 is then
    /// `{"n_embedding": N, "embedding": [...]}`).
    pub embedding: bool,
    /// How embeddings are normalised, as llama.cpp's `--embd-normalize`: -1 none, 0 max
    /// absolute (int16 range), 1 taxicab, 2 euclidean (the default), p > 2 p-norm.
    pub embd_normalize: i32,
    // Constrained output (at most one of the two).
    /// A GBNF grammar generation must follow.
    pub grammar: Option<String>,
    /// A JSON Schema (its JSON text) the output must validate against: turned into a grammar
    /// by llama.cpp's converter.
    pub json_schema: Option<String>,
}

/// The largest run-ahead window a guest may ask for.
pub const MAX_RUN_AHEAD: u32 = 64;

/// The cores this process may run on (affinity and cgroup quotas included). WasmEdge's own
/// plugin defaults to 4 threads, which on a 2-core machine oversubscribes ggml's spinning
/// workers and makes generation about a thousand times slower.
pub fn available_cores() -> u32 {
    crate::cores::available()
}

impl Default for Options {
    fn default() -> Self {
        let cores = available_cores();
        Self {
            enable_log: false,
            enable_debug_log: false,
            stream_stdout: false,
            // With RPC servers named by the host, every layer goes to them (and this
            // machine's GPUs), as llama.cpp's --rpc does with its default -ngl; n-gpu-layers
            // keeps some on this machine's CPU.
            n_gpu_layers: if crate::rpc_servers::list().is_empty() { 0 } else { 999 },
            main_gpu: 0,
            use_mmap: true,
            use_mlock: false,
            ctx_size: 4096,
            batch_size: 2048,
            ubatch_size: 512,
            threads: cores,
            threads_batch: cores,
            flash_attn: None,
            n_predict: -1,
            reverse_prompt: None,
            ignore_eos: false,
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: u32::MAX,
            repeat_last_n: 64,
            run_ahead: 4,
            mmproj: None,
            mmproj_sha256: None,
            image: None,
            embedding: false,
            embd_normalize: 2,
            grammar: None,
            json_schema: None,
        }
    }
}

/// The keys a guest may send, each optional. Types are strict: `"ctx-size": "512"` or a
/// negative size is InvalidArgument.
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Metadata {
    enable_log: Option<bool>,
    enable_debug_log: Option<bool>,
    stream_stdout: Option<bool>,
    n_gpu_layers: Option<i64>,
    main_gpu: Option<i64>,
    use_mmap: Option<bool>,
    use_mlock: Option<bool>,
    ctx_size: Option<u32>,
    batch_size: Option<u32>,
    ubatch_size: Option<u32>,
    threads: Option<u32>,
    threads_batch: Option<u32>,
    flash_attn: Option<bool>,
    n_predict: Option<i64>,
    reverse_prompt: Option<String>,
    ignore_eos: Option<bool>,
    temp: Option<f64>,
    top_k: Option<i32>,
    top_p: Option<f64>,
    min_p: Option<f64>,
    repeat_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    seed: Option<u64>,
    repeat_last_n: Option<i32>,
    run_ahead: Option<u32>,
    mmproj: Option<String>,
    mmproj_sha256: Option<String>,
    image: Option<String>,
    embedding: Option<bool>,
    embd_normalize: Option<i32>,
    grammar: Option<String>,
    /// A JSON Schema: an object, or a string holding one (clients send either; LlamaEdge's
    /// llama-core names it `json_schema`).
    #[serde(alias = "json_schema")]
    json_schema: Option<serde_json::Value>,
    /// WasmEdge's plugin reads (and then ignores) a prompt-cache path from the guest; here
    /// the host alone chooses where prompt states go (`--nn-prompt-cache`).
    path_prompt_cache: Option<serde_json::Value>,
    /// Text-to-speech (WasmEdge's plugin, built with it, makes a WAV file with a vocoder):
    /// not done here, so refused rather than answered with text.
    tts: Option<bool>,
    model_vocoder: Option<String>,
    tts_output_file: Option<String>,
    tts_speaker_file: Option<String>,
}

/// The text-to-speech keys; any of them set asks for audio this plugin does not make.
const TTS_KEYS: &str = "tts, model-vocoder, tts-output-file, tts-speaker-file";

macro_rules! apply {
    ($opts:ident, $meta:ident, $($field:ident),*) => {
        $( if let Some(v) = $meta.$field { $opts.$field = v; } )*
    };
}

impl Options {
    /// Apply a JSON document on top of these options. Nothing changes when it fails.
    pub fn apply_json(&mut self, json: &[u8]) -> NnResult<()> {
        let m: Metadata = crate::backend::config::parse(json)?;
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        if m.tts == Some(true) || set(&m.model_vocoder) || set(&m.tts_output_file) || set(&m.tts_speaker_file) {
            return Err(NnError::new(
                Errno::UnsupportedOperation,
                format!(
                    "text-to-speech (TTS: {TTS_KEYS}) is not supported by this plugin: it would generate text, \
                     not audio; leave these keys out, or use a WASI-NN plugin built with TTS for speech"
                ),
            ));
        }
        if m.path_prompt_cache.is_some() {
            log::warn!(
                "path-prompt-cache is ignored: the host chooses where prompts are cached (--nn-prompt-cache DIR \
                 on the wasmedge command line, or {}); a guest cannot",
                crate::prompt_cache::DIR_ENV
            );
        }
        let mut next = self.clone();
        apply!(
            next,
            m,
            enable_log,
            enable_debug_log,
            stream_stdout,
            n_gpu_layers,
            main_gpu,
            use_mmap,
            use_mlock,
            ctx_size,
            batch_size,
            ubatch_size,
            threads,
            threads_batch,
            n_predict,
            ignore_eos,
            temp,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            presence_penalty,
            frequency_penalty,
            repeat_last_n,
            run_ahead,
            embedding,
            embd_normalize
        );
        if let Some(fa) = m.flash_attn {
            next.flash_attn = Some(fa);
        }
        if let Some(rp) = m.reverse_prompt {
            next.reverse_prompt = (!rp.is_empty()).then_some(rp);
        }
        if let Some(p) = m.mmproj {
            next.mmproj = (!p.is_empty()).then_some(p);
        }
        if let Some(pin) = m.mmproj_sha256 {
            next.mmproj_sha256 = match pin.is_empty() {
                true => None,
                false => Some(
                    crate::integrity::parse_hex(&pin)
                        .map_err(|e| NnError::invalid_argument(format!("mmproj-sha256: {e}")))?,
                ),
            };
        }
        if let Some(p) = m.image {
            next.image = (!p.is_empty()).then_some(p);
        }
        // An empty value clears (LlamaEdge sends `"grammar": ""` with every request).
        let given = m.grammar.is_some() || m.json_schema.is_some();
        let grammar = m.grammar.filter(|g| !g.trim().is_empty());
        let schema = m.json_schema.map(|s| schema_text(&s)).transpose()?.flatten();
        match (grammar, schema) {
            (Some(_), Some(_)) => {
                return Err(NnError::invalid_argument("give either grammar or json-schema, not both"));
            }
            (Some(g), None) => {
                next.grammar = Some(g);
                next.json_schema = None;
            }
            (None, Some(schema)) => {
                next.json_schema = Some(schema);
                next.grammar = None;
            }
            (None, None) if given => {
                next.grammar = None;
                next.json_schema = None;
            }
            (None, None) => {}
        }
        if let Some(seed) = m.seed {
            // llama.cpp seeds are 32-bit; larger values (WasmEdge's u64 default) mean random.
            next.seed = u32::try_from(seed).unwrap_or(u32::MAX);
        }
        if m.threads.is_some() && m.threads_batch.is_none() {
            next.threads_batch = next.threads;
        }
        next.validate()?;
        *self = next;
        Ok(())
    }

    fn validate(&self) -> NnResult<()> {
        let bad = |what: &str| Err(NnError::invalid_argument(what.to_string()));
        if self.ctx_size < 8 {
            return bad("ctx-size must be at least 8");
        }
        crate::limits::check_ctx_size(self.ctx_size as u64)?;
        if self.batch_size == 0 || self.ubatch_size == 0 {
            return bad("batch-size and ubatch-size must be positive");
        }
        // ggml refuses (aborts on) more than GGML_MAX_N_THREADS = 512 threads.
        if !(1..=512).contains(&self.threads) || !(1..=512).contains(&self.threads_batch) {
            return bad("threads and threads-batch must be between 1 and 512");
        }
        if !(-1..=64).contains(&self.embd_normalize) {
            return bad(
                "embd-normalize must be -1 (none), 0 (max absolute), 1 (taxicab), 2 (euclidean) or a p-norm up to 64",
            );
        }
        if self.run_ahead > MAX_RUN_AHEAD {
            return Err(NnError::invalid_argument(format!("run-ahead must be between 0 and {MAX_RUN_AHEAD}")));
        }
        if !(self.temp.is_finite() && self.top_p.is_finite() && self.min_p.is_finite()) {
            return bad("temp, top-p and min-p must be finite numbers");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad("repeat-penalty must be a positive number (1.0 disables it)");
        }
        if !(self.presence_penalty.is_finite() && self.frequency_penalty.is_finite()) {
            return bad("presence-penalty and frequency-penalty must be finite numbers");
        }
        Ok(())
    }

    /// Apply the logging switches to the process-wide log level (they only ever raise it).
    pub fn apply_logging(&self) {
        crate::backend::config::apply_logging(self.enable_log, self.enable_debug_log);
    }

    /// Whether two option sets need different llama.cpp contexts.
    pub fn same_context(&self, other: &Options) -> bool {
        let shape = |o: &Options| {
            (o.ctx_size, o.batch_size, o.ubatch_size, o.threads, o.threads_batch, o.flash_attn, o.embedding)
        };
        shape(self) == shape(other)
    }

    /// Whether two option sets need different model loads (the rest applies to contexts).
    pub fn same_model(&self, other: &Options) -> bool {
        let load = |o: &Options| (o.n_gpu_layers, o.main_gpu, o.use_mmap, o.use_mlock);
        load(self) == load(other)
    }
}

/// A JSON Schema's text: given as an object, or as a string holding one (clients send
/// either); an empty string or `null` clears it. Whether llama.cpp can turn it into a grammar
/// is checked where the model is at hand (grammar.rs).
fn schema_text(schema: &serde_json::Value) -> NnResult<Option<String>> {
    match schema {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) if s.trim().is_empty() => Ok(None),
        serde_json::Value::String(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(_)) => Ok(Some(s.clone())),
            Ok(_) => Err(NnError::invalid_argument("json-schema must be a JSON Schema object")),
            Err(e) => Err(NnError::invalid_argument(format!("json-schema is not JSON: {e}"))),
        },
        serde_json::Value::Object(_) => Ok(Some(schema.to_string())),
        _ => Err(NnError::invalid_argument("json-schema must be a JSON Schema object")),
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

    #[test]
    fn text_to_speech_is_refused_not_answered_with_text() {
        let mut o = Options::default();
        for json in [
            r#"{"tts": true}"#,
            r#"{"model-vocoder": "WavTokenizer.gguf"}"#,
            r#"{"tts-output-file": "out.wav"}"#,
            r#"{"tts": true, "model-vocoder": "v.gguf", "tts-output-file": "o.wav", "tts-speaker-file": "s.json"}"#,
        ] {
            let e = o.apply_json(json.as_bytes()).unwrap_err();
            assert_eq!(e.errno, Errno::UnsupportedOperation, "{json}");
            assert!(e.message.contains("TTS"), "{}", e.message);
        }
        assert_eq!(o, Options::default());
        // Said off, or left empty (as clients send defaults), they ask for nothing.
        o.apply_json(br#"{"tts": false, "model-vocoder": "", "tts-output-file": ""}"#).unwrap();
    }

    #[test]
    fn applies_known_keys_and_ignores_unknown_ones() {
        let mut o = Options::default();
        o.apply_json(br#"{"ctx-size": 1024, "temp": 0, "n-predict": 32, "threads": 3, "some-client-key": [1]}"#)
            .unwrap();
        assert_eq!((o.ctx_size, o.temp, o.n_predict, o.threads, o.threads_batch), (1024, 0.0, 32, 3, 3));
    }

    #[test]
    fn wrong_type_is_invalid_argument_and_changes_nothing() {
        let mut o = Options::default();
        let e = o.apply_json(br#"{"n-predict": 5, "ctx-size": "512"}"#).unwrap_err();
        assert_eq!(e.errno, Errno::InvalidArgument);
        assert!(e.message.contains("ctx-size") || e.message.contains("string"), "{}", e.message);
        assert_eq!(o, Options::default());
        assert_eq!(o.apply_json(br#"{"ctx-size": -1}"#).unwrap_err().errno, Errno::InvalidArgument);
        assert_eq!(o.apply_json(br#"[1, 2]"#).unwrap_err().errno, Errno::InvalidArgument);
        assert_eq!(o.apply_json(br#"{"threads": 100000}"#).unwrap_err().errno, Errno::InvalidArgument);
        assert_eq!(o.apply_json(br#"{"mmproj-sha256": "abc"}"#).unwrap_err().errno, Errno::InvalidArgument);
        assert_eq!(o, Options::default());
    }

    #[test]
    fn a_projector_pin_is_lowercase_hex_and_empty_clears_it() {
        let mut o = Options::default();
        let pin = "AB".repeat(32);
        o.apply_json(format!(r#"{{"mmproj-sha256": "{pin}"}}"#).as_bytes()).unwrap();
        assert_eq!(o.mmproj_sha256.as_deref(), Some("ab".repeat(32).as_str()));
        o.apply_json(br#"{"mmproj-sha256": ""}"#).unwrap();
        assert_eq!(o.mmproj_sha256, None);
    }

    #[test]
    fn unparsable_json_is_invalid_encoding() {
        let mut o = Options::default();
        assert_eq!(o.apply_json(b"{\"temp\": ").unwrap_err().errno, Errno::InvalidEncoding);
    }

    #[test]
    fn defaults_follow_the_cores_available() {
        let o = Options::default();
        assert_eq!(o.threads, available_cores());
        assert!(o.threads >= 1);
    }

    #[test]
    fn grammar_or_json_schema_one_at_a_time_and_empty_clears() {
        let mut o = Options::default();
        o.apply_json(br#"{"grammar": "root ::= \"yes\""}"#).unwrap();
        assert_eq!(o.grammar.as_deref(), Some(r#"root ::= "yes""#));
        // A schema (object or string, also as LlamaEdge's `json_schema`) replaces the grammar.
        o.apply_json(br#"{"json-schema": {"type": "integer"}}"#).unwrap();
        assert_eq!((o.grammar.as_deref(), o.json_schema.as_deref()), (None, Some(r#"{"type":"integer"}"#)));
        o.apply_json(br#"{"json_schema": "{\"type\": \"string\"}", "grammar": ""}"#).unwrap();
        assert_eq!(o.json_schema.as_deref(), Some(r#"{"type": "string"}"#));
        // Other keys leave it; an empty grammar clears it.
        o.apply_json(br#"{"temp": 0}"#).unwrap();
        assert!(o.json_schema.is_some());
        o.apply_json(br#"{"grammar": ""}"#).unwrap();
        assert_eq!((o.grammar.as_deref(), o.json_schema.as_deref()), (None, None));
        for bad in [
            &br#"{"grammar": "root ::= \"a\"", "json-schema": {"type": "string"}}"#[..],
            br#"{"json-schema": "{oops"}"#,
            br#"{"json-schema": 5}"#,
            br#"{"embd-normalize": 99}"#,
        ] {
            let e = o.clone().apply_json(bad).unwrap_err();
            assert_eq!(e.errno, Errno::InvalidArgument, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn embedding_needs_another_context_and_gpu_layers_another_model() {
        let base = Options::default();
        let mut o = base.clone();
        o.apply_json(br#"{"embedding": true, "embd-normalize": -1}"#).unwrap();
        assert!(o.embedding && o.embd_normalize == -1);
        assert!(!o.same_context(&base) && o.same_model(&base));
        let mut g = base.clone();
        g.apply_json(br#"{"n-gpu-layers": 100, "temp": 0.2}"#).unwrap();
        assert!(g.same_context(&base) && !g.same_model(&base));
    }

    /// What LlamaEdge's llama-core sends (its GgmlMetadata, serialised with its defaults and
    /// optional keys as null), and what llama-simple sends.
    #[test]
    fn llamaedge_metadata_is_accepted() {
        let core = br#"{"enable-log": false, "enable-debug-log": false, "embedding": false, "n-predict": -1,
            "reverse-prompt": null, "mmproj": null, "image": null, "n-gpu-layers": 100, "main-gpu": null,
            "tensor-split": null, "use-mmap": null, "split-mode": "layer", "ctx-size": 4096, "batch-size": 2048,
            "ubatch-size": 512, "threads": 2, "temp": 0.8, "top-p": 0.9, "repeat-penalty": 1.0,
            "presence-penalty": 0.0, "frequency-penalty": 0.0, "grammar": "", "json_schema": null,
            "warmup": false, "llama3": false}"#;
        let mut o = Options::default();
        o.apply_json(core).unwrap();
        assert_eq!((o.n_gpu_layers, o.top_p, o.threads, o.grammar.as_deref()), (100, 0.9, 2, None));
        let simple = br#"{"enable-log": false, "ctx-size": 4096, "n-predict": 1024, "n-gpu-layers": 100,
            "use-mmap": false, "batch-size": 4096, "reverse-prompt": "</s>"}"#;
        o.apply_json(simple).unwrap();
        assert_eq!((o.batch_size, o.use_mmap, o.reverse_prompt.as_deref()), (4096, false, Some("</s>")));
    }

    #[test]
    fn large_seed_means_random() {
        let mut o = Options::default();
        o.apply_json(br#"{"seed": 18446744073709551615}"#).unwrap();
        assert_eq!(o.seed, u32::MAX);
        o.apply_json(br#"{"seed": 42}"#).unwrap();
        assert_eq!(o.seed, 42);
    }
}
