//! One sequence's generation: its sampler, its stop conditions and its costs. The engine
//! (engine/) decides when a sequence's logits are computed and in which batch; this module
//! decides, from those logits, what the next token is and whether the generation is over.
//! `compute` and `compute_single` drive the same generation, so a stream yields exactly the
//! text a whole compute produces.

use super::options::Options;
use super::vision::{MediaPrompt, Vision};
use crate::error::NnResult;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::MtmdInputChunks;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use std::sync::Arc;
use std::time::Instant;

/// What a generation starts from: prompt tokens, or a prompt with images (mtmd chunks, and
/// the prompt they came from, for evaluating a part of it again).
pub enum Prompt {
    Tokens(Vec<LlamaToken>),
    Media { chunks: MtmdInputChunks, vision: Arc<Vision>, media: MediaPrompt },
}

impl Prompt {
    /// KV-cache positions the prompt fills.
    pub fn positions(&self) -> usize {
        match self {
            Prompt::Tokens(t) => t.len(),
            Prompt::Media { chunks, .. } => chunks.total_positions().max(0) as usize,
        }
    }
}

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

/// What a generation cost, for output 1 and the log.
#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics {
    /// Prompt tokens evaluated, those reused from the context's KV instead, and those
    /// restored from the prompt cache on disk (the three add up to the prompt).
    pub prompt_evaluated: usize,
    pub prompt_reused: usize,
    pub prompt_restored: usize,
    pub prompt_ms: f64,
    pub generation_ms: f64,
    pub tokens_per_second: f64,
    /// How many tokens the `llama_decode` that produced the last token's logits held (the
    /// sequences decoded together, and any prompt tokens fed alongside).
    pub batch_tokens: usize,
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

/// One generation in progress: tokens are drawn one at a time from the logits the engine
/// computed for this sequence.
pub struct Generation {
    sampler: LlamaSampler,
    /// Sampled and handed out, but not yet evaluated (that happens in the next batch, so a
    /// token goes out as soon as it is known).
    pending: Option<LlamaToken>,
    generated: i64,
    ended: Option<End>,
    /// `end` has run: the metrics are final.
    finished: bool,
    n_predict: i64,
    ignore_eos: bool,
    reverse_prompt: Option<Vec<u8>>,
    /// The output's last bytes, where a reverse prompt can newly appear.
    tail: Vec<u8>,
    metrics: Metrics,
    prompt_started: Instant,
    generation_started: Instant,
}

impl Generation {
    /// A generation whose prompt evaluation starts now.
    pub fn new(model: &LlamaModel, options: &Options) -> NnResult<Self> {
        let now = Instant::now();
        Ok(Self {
            sampler: sampler(model, options)?,
            pending: None,
            generated: 0,
            ended: None,
            finished: false,
            n_predict: options.n_predict,
            ignore_eos: options.ignore_eos,
            reverse_prompt: options.reverse_prompt.as_ref().map(|r| r.as_bytes().to_vec()),
            tail: Vec::new(),
            metrics: Metrics::default(),
            prompt_started: now,
            generation_started: now,
        })
    }

    /// The prompt is in the KV cache: `evaluated` tokens were computed, `reused` kept,
    /// `restored` read from the prompt cache.
    pub fn prompt_done(&mut self, evaluated: usize, reused: usize, restored: usize) {
        let ms = self.prompt_started.elapsed().as_secs_f64() * 1e3;
        self.prompt_done_in(evaluated, reused, restored, ms);
    }

    /// [`Self::prompt_done`] for a prompt evaluated ahead, in `ms`.
    pub fn prompt_done_in(&mut self, evaluated: usize, reused: usize, restored: usize, ms: f64) {
        self.metrics.prompt_evaluated = evaluated;
        self.metrics.prompt_reused = reused;
        self.metrics.prompt_restored = restored;
        self.metrics.prompt_ms = ms;
        self.generation_started = Instant::now();
    }

    /// The prompt's evaluation began at `at` (before the generation was asked for).
    pub fn prompt_began(&mut self, at: Instant) {
        self.prompt_started = at;
    }

    /// Whether the next step can only end the generation (`n-predict` tokens are out).
    pub fn at_limit(&self) -> bool {
        self.n_predict >= 0 && self.generated >= self.n_predict
    }

    /// How the generation ended, once it has.
    pub fn ended(&self) -> Option<End> {
        self.ended
    }

    /// The token handed out last, to be evaluated in the next batch.
    pub fn take_pending(&mut self) -> Option<LlamaToken> {
        self.pending.take()
    }

    /// Draw the next token from the logits at batch index `idx` and put its bytes in `piece`;
    /// `Ok(None)` when a token was produced, `Ok(Some(end))` when the generation is over.
    pub fn sample(
        &mut self,
        model: &LlamaModel,
        ctx: &LlamaContext<'_>,
        idx: i32,
        piece: &mut Vec<u8>,
    ) -> NnResult<Option<End>> {
        if let Some(end) = self.ended {
            return Ok(Some(end));
        }
        if self.at_limit() {
            return Ok(Some(self.end(End::Limit)));
        }
        let token = self.sampler.sample(ctx, idx);
        self.drawn(model, token, piece)
    }

    /// [`Self::sample`] from logits kept apart from the context (a prompt evaluated ahead of
    /// its generation): the same sampler over the same numbers, so the same token.
    pub fn sample_logits(&mut self, model: &LlamaModel, logits: &[f32], piece: &mut Vec<u8>) -> NnResult<Option<End>> {
        if let Some(end) = self.ended {
            return Ok(Some(end));
        }
        if self.at_limit() {
            return Ok(Some(self.end(End::Limit)));
        }
        // As llama.cpp's `llama_sampler_sample` does with a context's logits.
        let mut candidates = LlamaTokenDataArray::from_iter(
            logits.iter().enumerate().map(|(id, &logit)| LlamaTokenData::new(LlamaToken(id as i32), logit, 0.0)),
            false,
        );
        candidates.apply_sampler(&mut self.sampler);
        let token = candidates
            .selected_token()
            .ok_or_else(|| crate::error::NnError::runtime("the sampler selected no token"))?;
        self.sampler.accept(token);
        self.drawn(model, token, piece)
    }

    /// `token` was drawn: it ends the generation, or its bytes go to `piece`.
    fn drawn(&mut self, model: &LlamaModel, token: LlamaToken, piece: &mut Vec<u8>) -> NnResult<Option<End>> {
        if model.vocab().is_eog(token) && !self.ignore_eos {
            return Ok(Some(self.end(End::EndOfGeneration)));
        }
        piece.clear();
        model.vocab().token_to_piece_into(token, piece, true, None);
        self.pending = Some(token);
        self.generated += 1;
        if let Some(rp) = &self.reverse_prompt {
            // Only the tail can newly contain it.
            self.tail.extend_from_slice(piece);
            if self.tail.windows(rp.len()).any(|w| w == rp.as_slice()) {
                self.ended = Some(End::ReversePrompt);
            }
            let keep = rp.len().saturating_sub(1);
            if self.tail.len() > keep {
                self.tail.drain(..self.tail.len() - keep);
            }
        }
        Ok(None)
    }

    /// End the generation now (a reverse prompt found earlier keeps its word) and log what
    /// it cost; the metrics are final from here on.
    pub fn end(&mut self, end: End) -> End {
        let end = *self.ended.get_or_insert(end);
        if self.finished {
            return end;
        }
        self.metrics = self.metrics();
        self.finished = true;
        let m = &self.metrics;
        log::info!(
            "prompt: {} tokens evaluated, {} reused, {} restored from the prompt cache, {:.1} ms; generated {} tokens in {:.1} ms ({:.1} tokens/s); stopped: {end:?}",
            m.prompt_evaluated,
            m.prompt_reused,
            m.prompt_restored,
            m.prompt_ms,
            self.generated,
            m.generation_ms,
            m.tokens_per_second,
        );
        end
    }

    pub fn set_batch_tokens(&mut self, n: usize) {
        self.metrics.batch_tokens = n;
    }

    /// The costs so far (final once the generation has ended).
    pub fn metrics(&self) -> Metrics {
        if self.finished {
            return self.metrics;
        }
        let secs = self.generation_started.elapsed().as_secs_f64();
        Metrics {
            generation_ms: secs * 1e3,
            tokens_per_second: if secs > 0.0 { self.generated as f64 / secs } else { 0.0 },
            ..self.metrics
        }
    }
}
