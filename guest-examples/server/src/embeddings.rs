//! `POST /v1/embeddings`: each input of a checked request (server_api::embeddings) pooled into
//! an embedding by a graph in embedding mode, as floats or as base64 little-endian f32 (what
//! OpenAI's Python client asks for by default).

use crate::chat::explain;
use crate::error;
use base64::Engine as _;
use server_api::embeddings::{self, EmbeddingsRequest};
use server_api::ApiError;
use serde_json::{json, Map, Value};
use wasmedge_wasi_nn::{GraphExecutionContext, TensorType};

pub fn answer(ctx: &mut GraphExecutionContext, body: &Map<String, Value>, model: &str) -> Result<Value, ApiError> {
    let EmbeddingsRequest { inputs, base64 } = embeddings::parse(body)?;
    let mut data = Vec::with_capacity(inputs.len());
    let mut tokens = 0u64;
    let mut out = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        embeddings::check_input(index, input)?;
        ctx.set_input(0, TensorType::U8, &[1], input.as_bytes()).map_err(|e| explain(ctx, "an input", e))?;
        ctx.compute().map_err(|e| explain(ctx, "an embedding", e))?;
        let answer = read(ctx, 0, &mut out)?;
        let meta = read(ctx, 1, &mut out)?;
        tokens += meta["input_tokens"].as_u64().unwrap_or(0);
        let Some(Value::Array(vector)) = answer.get("embedding") else {
            return Err(ApiError::server("the plugin gave no embedding"));
        };
        let embedding = if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|v| (v.as_f64().unwrap_or(0.0) as f32).to_le_bytes()).collect();
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            Value::Array(vector.clone())
        };
        data.push(json!({"object": "embedding", "index": index, "embedding": embedding}));
    }
    Ok(json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
}

/// Output `index` of `ctx` as JSON (the buffer grows to what the plugin says it needs).
fn read(ctx: &GraphExecutionContext, index: usize, buf: &mut Vec<u8>) -> Result<Value, ApiError> {
    if buf.len() < 1 << 16 {
        buf.resize(1 << 16, 0);
    }
    loop {
        match ctx.get_output(index, buf) {
            Ok(n) => return serde_json::from_slice(&buf[..n]).map_err(|e| ApiError::server(format!("the plugin's output {index} is not JSON: {e}"))),
            Err(wasmedge_wasi_nn::Error::BackendError(wasmedge_wasi_nn::BackendError::TooLarge)) if buf.len() < 1 << 28 => {
                let n = buf.len() * 4;
                buf.resize(n, 0);
            }
            Err(e) => return Err(error::nn("reading the embedding", e)),
        }
    }
}
