//! The JSON a guest sends as metadata or config (GGML and Whisper), the sha256 pin read from
//! a config, and `--nn-preload` entries: never a panic, a refused document changes nothing,
//! and an accepted one leaves options that llama.cpp / whisper.cpp can take.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmedge_nn_plugin::abi::Errno;
use wasmedge_nn_plugin::backend::{ggml, whisper};
use wasmedge_nn_plugin::{integrity, preload};

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            let before = ggml::options::Options::default();
            let mut o = before.clone();
            match o.apply_json(json) {
                Ok(()) => {
                    assert!(serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(json).is_ok());
                    assert!(o.ctx_size >= 8 && o.batch_size > 0 && o.ubatch_size > 0);
                    assert!((1..=512).contains(&o.threads) && (1..=512).contains(&o.threads_batch));
                    assert!(o.temp.is_finite() && o.top_p.is_finite() && o.repeat_penalty > 0.0);
                    assert!(o.run_ahead <= ggml::options::MAX_RUN_AHEAD);
                }
                Err(e) => {
                    // (UnsupportedOperation: a capability this plugin lacks, text-to-speech.)
                    assert!(matches!(
                        e.errno,
                        Errno::InvalidArgument | Errno::InvalidEncoding | Errno::TooLarge | Errno::UnsupportedOperation
                    ));
                    assert_eq!(o, before, "a refused document changed the options");
                }
            }
        }
        1 => {
            let before = whisper::options::Options::default();
            let mut o = before.clone();
            match o.apply_json(json) {
                Ok(()) => assert!(o.params.threads >= 1),
                Err(e) => {
                    assert!(matches!(e.errno, Errno::InvalidArgument | Errno::InvalidEncoding));
                    assert_eq!(o, before, "a refused document changed the options");
                }
            }
        }
        2 => {
            if let Ok(Some(pin)) = integrity::pin_in_config(Some(json)) {
                assert!(pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
        }
        _ => {
            if let Ok(spec) = std::str::from_utf8(json) {
                if let Ok(p) = preload::parse(spec) {
                    assert!(!p.name.is_empty() && !p.name.contains(':'));
                    assert!(!p.path.as_os_str().is_empty());
                }
            }
        }
    }
});
