//! Output 2 of a GGML context: what a guest needs to know about the model to talk to it the
//! model's way — its chat template (GGUF `tokenizer.chat_template`), its special tokens, its
//! sizes — as one JSON object. A server guest renders conversations with this template,
//! rather than with one hand-written per model.

use super::options::Options;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use serde_json::{json, Value};

/// The JSON of output 2 for a context of `model` with `options`.
pub fn json(model: &LlamaModel, options: &Options) -> String {
    let vocab = model.vocab();
    let text = |token: LlamaToken| -> Value {
        if token.0 < 0 {
            return Value::Null;
        }
        let mut bytes = Vec::new();
        vocab.token_to_piece_into(token, &mut bytes, true, None);
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    };
    let meta = |key: &str| model.meta_val_str(key).ok();
    let template = model.chat_template(None).ok().and_then(|t| t.to_string().ok());
    json!({
        "name": meta("general.name"),
        "architecture": meta("general.architecture"),
        "chat_template": template,
        "bos_token": text(vocab.bos()),
        "eos_token": text(vocab.eos()),
        "add_bos_token": vocab.should_add_bos(),
        "n_ctx_train": model.n_ctx_train(),
        "n_embd": model.n_embd(),
        "n_vocab": model.n_vocab(),
        "n_params": model.n_params(),
        "size_bytes": model.size(),
        "ctx_size": options.ctx_size,
        "embedding": options.embedding,
        "vision": options.mmproj.is_some(),
    })
    .to_string()
}
