//! The preloaded models this server serves, loaded by name from the host's `--nn-preload`
//! list: a chat model (with its projector for pictures), an embedding graph and a Whisper
//! model, each optional.

use server_api::ApiError;
use crate::pool::Pool;
use crate::template::ChatTemplate;
use serde_json::{json, Value};
use wasmedge_wasi_nn::{ExecutionTarget, Graph, GraphBuilder, GraphEncoding, GraphExecutionContext};

pub struct Settings {
    pub chat: Option<String>,
    /// A Jinja template file that replaces the model's own.
    pub chat_template: Option<String>,
    pub mmproj: Option<String>,
    pub embed: Option<String>,
    pub asr: Option<String>,
    pub ctx_size: u32,
    pub contexts: usize,
    pub threads: Option<u32>,
}

pub struct ChatModel {
    pub name: String,
    pub pool: Pool,
    pub template: ChatTemplate,
    pub vision: bool,
    /// Output 2 of the plugin: the model's name, template, sizes.
    pub info: Value,
}

pub struct EmbedModel {
    pub name: String,
    pub ctx: GraphExecutionContext,
    _graph: Graph,
}

pub struct AsrModel {
    pub name: String,
    pub idle: Vec<GraphExecutionContext>,
    _graph: Graph,
}

pub struct Models {
    pub chat: Option<ChatModel>,
    pub embed: Option<EmbedModel>,
    pub asr: Option<AsrModel>,
}

/// Transcriptions that may run at once (each has its own Whisper state in the plugin).
const ASR_CONTEXTS: usize = 2;

fn load(encoding: GraphEncoding, name: &str, config: &Value) -> Result<Graph, String> {
    GraphBuilder::new(encoding, ExecutionTarget::AUTO)
        .config(config.to_string())
        .build_from_cache(name)
        .map_err(|e| format!("cannot load the preloaded model {name:?} ({e}): is it in the host's --nn-preload list?"))
}

impl Models {
    pub fn load(s: &Settings) -> Result<Self, String> {
        let mut ggml = json!({"ctx-size": s.ctx_size});
        if let Some(t) = s.threads {
            ggml["threads"] = json!(t);
        }
        let chat = match &s.chat {
            None => None,
            Some(name) => {
                let mut config = ggml.clone();
                if let Some(mmproj) = &s.mmproj {
                    config["mmproj"] = json!(mmproj);
                }
                let graph = load(GraphEncoding::Ggml, name, &config)?;
                let mut pool = Pool::new(graph, s.contexts);
                let ctx = pool.take(b"").map_err(|e: ApiError| e.message)?;
                let mut buf = vec![0u8; 1 << 20];
                let n = ctx.get_output(2, &mut buf).map_err(|e| format!("the plugin gave no model description (output 2): {e}"))?;
                let info: Value = serde_json::from_slice(&buf[..n]).map_err(|e| format!("output 2 is not JSON: {e}"))?;
                pool.give(ctx, Vec::new());
                let text = |k: &str| info[k].as_str().unwrap_or("").to_owned();
                let given = match &s.chat_template {
                    None => None,
                    Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                        format!("cannot read the chat template {path} ({e}): is it in a directory given with --dir?")
                    })?),
                };
                let template = ChatTemplate::new(
                    given.as_deref().or(info["chat_template"].as_str()),
                    &text("bos_token"),
                    &text("eos_token"),
                    info["add_bos_token"].as_bool().unwrap_or(false),
                )?;
                Some(ChatModel { name: name.clone(), pool, template, vision: s.mmproj.is_some(), info })
            }
        };
        let embed = match &s.embed {
            None => None,
            Some(name) => {
                let mut config = ggml.clone();
                config["embedding"] = json!(true);
                let graph = load(GraphEncoding::Ggml, name, &config)?;
                let ctx = graph.init_execution_context().map_err(|e| format!("cannot make a context of {name:?}: {e}"))?;
                Some(EmbedModel { name: name.clone(), ctx, _graph: graph })
            }
        };
        let asr = match &s.asr {
            None => None,
            Some(name) => {
                let graph = load(GraphEncoding::Whisper, name, &json!({}))?;
                let idle = (0..ASR_CONTEXTS)
                    .map(|_| graph.init_execution_context().map_err(|e| format!("cannot make a context of {name:?}: {e}")))
                    .collect::<Result<_, _>>()?;
                Some(AsrModel { name: name.clone(), idle, _graph: graph })
            }
        };
        if chat.is_none() && embed.is_none() && asr.is_none() {
            return Err("nothing to serve: name a preloaded model with --chat, --embed or --asr".into());
        }
        Ok(Self { chat, embed, asr })
    }

    pub fn give_chat(&mut self, ctx: GraphExecutionContext, history: Vec<u8>) {
        if let Some(chat) = &mut self.chat {
            chat.pool.give(ctx, history);
        }
    }

    pub fn give_asr(&mut self, ctx: GraphExecutionContext) {
        if let Some(asr) = &mut self.asr {
            asr.idle.push(ctx);
        }
    }
}
