//! One llama.cpp context (KV cache included) over a shared model, and the token-by-token
//! generation that `compute` and `compute_single` both drive, so a stream yields exactly the
//! text a whole compute produces.

use super::options::Options;
use super::vision::Vision;
use crate::abi::Errno;
use crate::error::{NnError, NnResult};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::MtmdInputChunks;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

type Ctx<'model> = LlamaContext<'model>;

self_cell::self_cell!(
    /// A llama.cpp context together with the model it borrows.
    struct ModelContext {
        owner: Arc<LlamaModel>,
        #[covariant]
        dependent: Ctx,
    }
);

/// llama.cpp's context creation writes to the model (see llama-cpp-2's `new_context`): never
/// create two at once.
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

pub struct Session {
    cell: ModelContext,
    batch: LlamaBatch<'static>,
    /// The options the context was made with.
    options: Options,
    /// Positions filled in the KV cache.
    n_past: i32,
    /// The tokens at positions `0..n_past` of the KV cache, for prompt-prefix reuse.
    cached: Vec<LlamaToken>,
}

/// What a generation starts from: prompt tokens, or a prompt with images (mtmd chunks).
pub enum Prompt {
    Tokens(Vec<LlamaToken>),
    Media { chunks: MtmdInputChunks, vision: Arc<Vision> },
}

impl Prompt {
    /// KV-cache positions the prompt fills.
    fn positions(&self) -> usize {
        match self {
            Prompt::Tokens(t) => t.len(),
            Prompt::Media { chunks, .. } => chunks.total_positions().max(0) as usize,
        }
    }
}

/// Stands in the cache's token list for positions filled by images, so a later text prompt
/// never matches them.
const NOT_A_TOKEN: LlamaToken = LlamaToken(-1);

/// Why a generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // `End::EndOfGeneration`: llama.cpp's term
pub enum End {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `n-predict` tokens were generated.
    Limit,
    /// The output ends with the reverse prompt.
    ReversePrompt,
    /// No room left in the context for the next token.
    ContextFull,
}

impl Session {
    pub fn new(backend: &LlamaBackend, model: Arc<LlamaModel>, options: &Options) -> NnResult<Self> {
        let flash = match options.flash_attn {
            None => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
            Some(true) => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            Some(false) => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        let batch = options.batch_size.min(options.ctx_size);
        // Embeddings pool over the whole prompt, which must then be one micro-batch (as
        // llama.cpp's embedding example sets it).
        let ubatch = if options.embedding { batch } else { options.ubatch_size.min(batch) };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(options.ctx_size))
            .with_n_batch(batch)
            .with_n_ubatch(ubatch)
            .with_embeddings(options.embedding)
            .with_n_threads(options.threads as i32)
            .with_n_threads_batch(options.threads_batch as i32)
            .with_flash_attention_policy(flash);
        let cell = {
            let _guard = CONTEXT_CREATION.lock().unwrap_or_else(|p| p.into_inner());
            ModelContext::try_new(model, |m| m.new_context(backend, params))
        }
        .map_err(|e| {
            NnError::runtime(format!(
                "cannot create a llama.cpp context with ctx-size {} (out of memory?): {e}",
                options.ctx_size
            ))
        })?;
        let n_batch = cell.borrow_dependent().n_batch() as usize;
        Ok(Self { cell, batch: LlamaBatch::new(n_batch, 1), options: options.clone(), n_past: 0, cached: Vec::new() })
    }

    /// Take new generation options (sampling, limits); the context-shaping ones must match.
    pub fn set_options(&mut self, options: &Options) {
        debug_assert!(self.options.same_context(options));
        if self.options != *options {
            self.options = options.clone();
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn model(&self) -> &LlamaModel {
        self.cell.borrow_owner()
    }

    /// The usable context length: the ctx-size asked for (llama.cpp may allocate more).
    pub fn n_ctx(&self) -> u32 {
        self.cell.borrow_dependent().n_ctx().min(self.options.ctx_size)
    }

    /// Evaluate a prompt; logits are kept for its last token only. Tokens already in the KV
    /// cache from an earlier prompt or answer on this context (the conversation so far, in a
    /// multi-turn chat) are kept, and only the rest is evaluated. Returns how many prompt
    /// tokens were reused.
    pub fn eval_prompt(&mut self, prompt: &[LlamaToken]) -> NnResult<usize> {
        let Self { cell, batch, n_past, cached, options } = self;
        let threads = options.threads_batch as usize;
        // At least the last prompt token is evaluated: its logits start the generation.
        let mut reused =
            cached.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len().saturating_sub(1));
        cell.with_dependent_mut(|_, ctx| {
            // Drop what follows the shared prefix; a cache that cannot drop part of a sequence
            // (recurrent or sliding-window models) starts over.
            if !forget_from(ctx, reused) {
                reused = 0;
            }
            cached.truncate(reused);
            *n_past = reused as i32;
            let rest = &prompt[reused..];
            let n_batch = ctx.n_batch() as usize;
            for (c, chunk) in rest.chunks(n_batch).enumerate() {
                batch.clear();
                let last_chunk = (c + 1) * n_batch >= rest.len();
                for (i, &tok) in chunk.iter().enumerate() {
                    let is_last = last_chunk && i + 1 == chunk.len();
                    batch.add(tok, *n_past + i as i32, &[0], is_last).map_err(|e| NnError::runtime(e.to_string()))?;
                }
                let _cores = crate::cores::cpu().acquire(threads);
                ctx.decode(batch).map_err(decode_error)?;
                cached.extend_from_slice(chunk);
                *n_past += chunk.len() as i32;
            }
            Ok(reused)
        })
    }

    /// Evaluate a prompt with images from the start of the KV cache (no reuse: images are not
    /// tokens to compare).
    pub fn eval_media(&mut self, chunks: &MtmdInputChunks, vision: &Vision) -> NnResult<()> {
        let Self { cell, n_past, cached, options, .. } = self;
        let threads = options.threads_batch as usize;
        let evaluated = cell.with_dependent_mut(|_, ctx| {
            forget_from(ctx, 0);
            let n_batch = ctx.n_batch() as i32;
            let _cores = crate::cores::cpu().acquire(threads);
            chunks.eval_chunks(&mut vision.lock(), ctx, 0, 0, n_batch, true)
        });
        cached.clear();
        *n_past = 0;
        let end = evaluated
            .map_err(|e| NnError::runtime(format!("llama.cpp failed to evaluate the images and prompt: {e}")))?;
        *n_past = end;
        cached.resize(end.max(0) as usize, NOT_A_TOKEN);
        Ok(())
    }

    /// The prompt's embedding, as llama.cpp's embedding example computes it: the prompt in
    /// one batch from an empty cache, then the pooled embedding of the sequence, or the last
    /// token's where the model does no pooling (causal language models). Not normalised.
    pub fn embed(&mut self, prompt: &[LlamaToken]) -> NnResult<Vec<f32>> {
        let Self { cell, batch, n_past, cached, options } = self;
        let threads = options.threads_batch as usize;
        cell.with_dependent_mut(|_, ctx| {
            let n_batch = ctx.n_batch() as usize;
            if prompt.len() > n_batch {
                return Err(NnError::new(
                    Errno::PromptTooLong,
                    format!(
                        "the text has {} tokens but an embedding takes at most batch-size ({n_batch}): \
                         raise batch-size (and ctx-size) or embed shorter pieces",
                        prompt.len()
                    ),
                ));
            }
            forget_from(ctx, 0);
            cached.clear();
            *n_past = 0;
            batch.clear();
            // Every token an output, as the example does (pooling needs them all).
            for (i, &tok) in prompt.iter().enumerate() {
                batch.add(tok, i as i32, &[0], true).map_err(|e| NnError::runtime(e.to_string()))?;
            }
            {
                let _cores = crate::cores::cpu().acquire(threads);
                ctx.decode(batch).map_err(decode_error)?;
            }
            let embedding = match ctx.embeddings_seq_ith(0) {
                Ok(pooled) => pooled,
                Err(_) => ctx
                    .embeddings_ith(prompt.len() as i32 - 1)
                    .map_err(|e| NnError::runtime(format!("llama.cpp gave no embedding: {e}")))?,
            };
            let embedding = embedding.to_vec();
            // Nothing of this is a conversation to continue.
            forget_from(ctx, 0);
            Ok(embedding)
        })
    }

    /// Append one token at the next position.
    fn eval_token(&mut self, token: LlamaToken) -> NnResult<()> {
        let Self { cell, batch, n_past, cached, options } = self;
        batch.clear();
        batch.add(token, *n_past, &[0], true).map_err(|e| NnError::runtime(e.to_string()))?;
        let _cores = crate::cores::cpu().acquire(options.threads as usize);
        cell.with_dependent_mut(|_, ctx| ctx.decode(batch)).map_err(decode_error)?;
        cached.push(token);
        *n_past += 1;
        Ok(())
    }
}

/// Drop the KV cache's cells from position `from` on; false when the cache cannot drop part
/// of a sequence (recurrent or sliding-window models) and was emptied instead.
///
/// Only the cells' bookkeeping goes: emptied cells are masked out of attention, so nothing
/// needs their data zeroed as `clear_kv_cache` does (a memset of the whole cache: 90 MB for
/// SmolLM2 at ctx-size 4096, ~5 ms, 2% of a 95-token prompt's evaluation on 2 cores).
fn forget_from(ctx: &mut LlamaContext, from: usize) -> bool {
    if u32::try_from(from).is_ok_and(|from| ctx.kv_cache_seq_rm(0, Some(from), None).is_ok()) {
        return true;
    }
    if ctx.kv_cache_seq_rm(0, Some(0), None).is_err() {
        ctx.clear_kv_cache();
    }
    false
}

fn decode_error(e: DecodeError) -> NnError {
    match e {
        DecodeError::NoKvCacheSlot => NnError::new(Errno::ContextFull, "no room left in the KV cache"),
        e => NnError::runtime(format!("llama.cpp failed to evaluate tokens: {e}")),
    }
}

/// The sampler chain for these options: llama.cpp's usual order (the grammar's mask, then
/// penalties, top-k, top-p, min-p, temperature, and a seeded draw); temperature 0 or less
/// means greedy.
pub fn sampler(model: &LlamaModel, o: &Options) -> NnResult<LlamaSampler> {
    let mut chain = Vec::with_capacity(7);
    if let Some(gbnf) = super::grammar::of(o)? {
        chain.push(super::grammar::sampler(model, &gbnf)?);
    }
    if o.repeat_penalty != 1.0 || o.frequency_penalty != 0.0 || o.presence_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            o.repeat_last_n,
            o.repeat_penalty as f32,
            o.frequency_penalty as f32,
            o.presence_penalty as f32,
        ));
    }
    if o.temp <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if o.top_k > 0 {
            chain.push(LlamaSampler::top_k(o.top_k));
        }
        chain.push(LlamaSampler::top_p(o.top_p as f32, 1));
        chain.push(LlamaSampler::min_p(o.min_p as f32, 1));
        chain.push(LlamaSampler::temp(o.temp as f32));
        chain.push(LlamaSampler::dist(o.seed));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

/// One generation in progress: a prompt has been evaluated; tokens are drawn one at a time.
pub struct Generation {
    sampler: LlamaSampler,
    /// Sampled and handed out, but not yet evaluated (that happens on the next step, so a
    /// step returns as soon as its token is known).
    pending: Option<LlamaToken>,
    generated: i64,
    ended: Option<End>,
    /// Where the last token's bytes start in the output.
    last_piece: usize,
    metrics: Metrics,
    generation_started: std::time::Instant,
}

/// What a generation cost, for output 1 and the log.
#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics {
    /// Prompt tokens evaluated, and those reused from the KV cache instead.
    pub prompt_evaluated: usize,
    pub prompt_reused: usize,
    pub prompt_ms: f64,
    pub generation_ms: f64,
    pub tokens_per_second: f64,
}

impl Generation {
    pub fn start(session: &mut Session, prompt: &Prompt) -> NnResult<Self> {
        let n_ctx = session.n_ctx() as usize;
        if prompt.positions() + 4 > n_ctx {
            return Err(NnError::new(
                Errno::PromptTooLong,
                format!(
                    "the prompt has {} tokens but ctx-size is {n_ctx} (at most ctx-size - 4 fit); \
                     raise ctx-size or shorten the prompt",
                    prompt.positions()
                ),
            ));
        }
        let started = std::time::Instant::now();
        let reused = match prompt {
            Prompt::Tokens(tokens) => session.eval_prompt(tokens)?,
            Prompt::Media { chunks, vision } => {
                session.eval_media(chunks, vision)?;
                0
            }
        };
        let metrics = Metrics {
            prompt_evaluated: prompt.positions() - reused,
            prompt_reused: reused,
            prompt_ms: started.elapsed().as_secs_f64() * 1e3,
            ..Metrics::default()
        };
        let sampler = sampler(session.model(), session.options())?;
        Ok(Self {
            sampler,
            pending: None,
            generated: 0,
            ended: None,
            last_piece: 0,
            metrics,
            generation_started: std::time::Instant::now(),
        })
    }

    pub fn generated(&self) -> i64 {
        self.generated
    }

    /// Whether the next step can only end the generation (`n-predict` tokens are out).
    pub fn at_limit(&self, session: &Session) -> bool {
        session.options.n_predict >= 0 && self.generated >= session.options.n_predict
    }

    /// The bytes of the last token handed out.
    pub fn last_piece<'o>(&self, output: &'o [u8]) -> &'o [u8] {
        &output[self.last_piece.min(output.len())..]
    }

    /// Produce the next token and append its bytes to `output`; `Ok(None)` when a token was
    /// produced, `Ok(Some(end))` once the generation is over (and on every call after that).
    pub fn step(&mut self, session: &mut Session, output: &mut Vec<u8>) -> NnResult<Option<End>> {
        if let Some(end) = self.ended {
            return Ok(Some(end));
        }
        if let Some(token) = self.pending.take() {
            if session.n_past as u32 >= session.n_ctx() {
                return Ok(Some(self.end(End::ContextFull)));
            }
            match session.eval_token(token) {
                Err(e) if e.errno == Errno::ContextFull => return Ok(Some(self.end(End::ContextFull))),
                r => r?,
            }
        }
        let o = &session.options;
        if o.n_predict >= 0 && self.generated >= o.n_predict {
            return Ok(Some(self.end(End::Limit)));
        }
        let token = self.sampler.sample(session.cell.borrow_dependent(), -1);
        let model = session.cell.borrow_owner();
        if model.vocab().is_eog(token) && !o.ignore_eos {
            return Ok(Some(self.end(End::EndOfGeneration)));
        }
        self.last_piece = output.len();
        model.vocab().token_to_piece_into(token, output, true, None);
        self.pending = Some(token);
        self.generated += 1;
        if let Some(rp) = &o.reverse_prompt {
            // Only the tail can newly contain it.
            let from = self.last_piece.saturating_sub(rp.len());
            if output[from..].windows(rp.len()).any(|w| w == rp.as_bytes()) {
                self.ended = Some(End::ReversePrompt);
            }
        }
        Ok(None)
    }

    /// The costs so far (final once the generation has ended).
    pub fn metrics(&self) -> Metrics {
        if self.ended.is_some() {
            return self.metrics;
        }
        let secs = self.generation_started.elapsed().as_secs_f64();
        Metrics {
            generation_ms: secs * 1e3,
            tokens_per_second: if secs > 0.0 { self.generated as f64 / secs } else { 0.0 },
            ..self.metrics
        }
    }

    fn end(&mut self, end: End) -> End {
        self.metrics = self.metrics();
        self.ended = Some(end);
        let m = &self.metrics;
        log::info!(
            "prompt: {} tokens evaluated, {} reused, {:.1} ms; generated {} tokens in {:.1} ms ({:.1} tokens/s); stopped: {end:?}",
            m.prompt_evaluated,
            m.prompt_reused,
            m.prompt_ms,
            self.generated,
            m.generation_ms,
            m.tokens_per_second,
        );
        end
    }
}
