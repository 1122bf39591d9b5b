//! The engine's side of the prompt cache ([`crate::prompt_cache`]): a slot's KV saved after a
//! long prompt is evaluated, and restored into a slot when a later prompt (in this process or
//! another) starts with a saved one.
//!
//! When a prompt is worth saving: when its evaluation computed at least [`SAVE_AFTER`] tokens.
//! The whole prompt is saved, as llama.cpp's `--prompt-cache` does, and a later prompt uses
//! the longest prefix it shares with any saved one; so an agent's fixed instructions are
//! saved with its first question and restored for every later one, and a conversation's
//! later turns, which share the earlier turns, are saved again only once they add
//! [`SAVE_AFTER`] new tokens. Shorter evaluations are not saved: they cost little to repeat,
//! and each save writes the whole prompt's KV (about 23 KB a token for SmolLM2-135M). Nor is
//! a prompt evaluated in batches with other streams' work (the scheduler's `exact`): its KV
//! holds, in the last bits, what that batch made of it, and a later process restoring it
//! would not answer exactly as without the cache.
//!
//! A restore reads the file in the engine's thread (measured: 18 ms for 1,472 tokens of
//! Gemma-3 270M, 12.6 MB; 46 ms for SmolLM2-135M's 35.6 MB; README, "Prompt cache: cold
//! starts"): it happens only where it spares at least [`RESTORE_GAIN`] tokens of evaluation
//! over what the slot already holds, and stops where the answer stays exact
//! ([`exact_point`]).

use crate::prompt_cache::Namespace;
use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::token::LlamaToken;
use std::time::Instant;

/// A prompt whose evaluation computed at least this many tokens is saved.
pub const SAVE_AFTER: usize = 256;
/// A saved prefix is restored when it spares at least this many tokens of evaluation.
pub const RESTORE_GAIN: usize = 32;

fn ids(tokens: &[LlamaToken]) -> Vec<i32> {
    tokens.iter().map(|t| t.0).collect()
}

/// What a restore did to the slot.
pub enum Restored {
    /// Nothing saved was worth it: the slot is as it was.
    Nothing,
    /// The slot holds the first `n` tokens of the prompt, from the cache (0: the restore
    /// failed and the slot is empty).
    Prefix(usize),
}

/// ggml's CPU flash attention computes a batch's rows one of three ways, by the batch's
/// size: in tiles when it has at least 64 rows (`GGML_FA_TILE_Q`), row by row when it has
/// fewer, and for a lone row with its KV split across threads (ggml-cpu/ops.cpp,
/// `ggml_compute_forward_flash_attn_ext_f16`). Each way sums in its own order.
fn attention_way(rows: usize) -> u8 {
    match rows {
        0 | 1 => 0,
        2..=63 => 1,
        _ => 2,
    }
}

/// Restore points are multiples of this: ggml's repacked and AMX matrix kernels multiply a
/// batch's rows in groups (of 4; AMX's of up to 32) and the rest one by one, so a row is
/// computed the same way in two batches that end together when both start on a multiple.
const ROW_GROUP: usize = 32;

/// How many leading tokens of `prompt` to take from a saved state of `saved` tokens that
/// shares `shared` with it, so that the answer is exactly that of a process without the
/// cache: the same numbers, to the last bit.
///
/// A state is saved only from an evaluation done the way a fresh context evaluates a prompt
/// alone: from position 0 in micro-batches of `ubatch` tokens that start on multiples of
/// `ubatch` (or from such a restore, which computes the same). The prompt after the restore
/// point is evaluated in micro-batches that start on those multiples too. So every row of
/// both is computed as a fresh evaluation of its prompt computes it, except near the two
/// places where a micro-batch can be shorter: the saved prompt's last one, and the batch the
/// restored prompt resumes in. There each row must be computed the same way (attention and
/// row grouping) in both; the point is moved down until it is, or to 0.
pub fn exact_point(saved: usize, prompt: usize, shared: usize, ubatch: usize) -> usize {
    let ubatch = ubatch.max(1);
    let mut point = shared.min(saved).min(prompt.saturating_sub(1));
    point -= point % ROW_GROUP;
    while point > 0 {
        // The last micro-batch that starts below the point, in both prompts' evaluations
        // (earlier ones are whole in both).
        let start = (point - 1) / ubatch * ubatch;
        let (a, b) = (ubatch.min(saved - start), ubatch.min(prompt - start));
        let prefix_same = a == b || (attention_way(a) == attention_way(b) && point - start <= a.min(b) / 4 * 4);
        // The micro-batch the prompt resumes in, against the one a fresh evaluation has there.
        let from = point / ubatch * ubatch;
        let end = prompt.min(from + ubatch);
        let resume_same = attention_way(end - point) == attention_way(end - from);
        if prefix_same && resume_same {
            return point;
        }
        point -= ROW_GROUP;
    }
    0
}

/// Put in `slot` the longest saved prefix of `prompt` that gives the answer a fresh
/// evaluation gives ([`exact_point`]), if it spares [`RESTORE_GAIN`] tokens over the `keep`
/// the slot holds.
pub fn restore(
    cache: &Namespace,
    ctx: &mut LlamaContext,
    slot: usize,
    prompt: &[LlamaToken],
    keep: usize,
    ubatch: usize,
) -> Restored {
    if prompt.len() < keep + RESTORE_GAIN + 1 {
        return Restored::Nothing;
    }
    let started = Instant::now();
    let prompt_ids = ids(prompt);
    let Some(hit) = cache.best(&prompt_ids, keep + RESTORE_GAIN) else { return Restored::Nothing };
    let point = exact_point(hit.tokens, prompt.len(), hit.shared, ubatch);
    if point < keep + RESTORE_GAIN {
        return Restored::Nothing;
    }
    let Some(entry) = cache.load(&hit) else { return Restored::Nothing };
    if entry.tokens.get(..point) != Some(&prompt_ids[..point]) {
        return Restored::Nothing;
    }
    let seq = slot as i32;
    let _ = ctx.kv_cache_seq_rm(seq, None, None);
    // SAFETY: llama.cpp reads at most `entry.state.len()` bytes and checks what it reads
    // against the context's shape (layers, types, sizes), failing instead of reading past
    // the buffer. The bytes themselves are what llama_state_seq_get_data_ext wrote in a
    // build that the file's header names as this one (the namespace), checked against the
    // file's checksum before they got here.
    let set = unsafe { ctx.state_seq_set_data_ext(&entry.state, seq, LlamaStateSeqFlags::empty()) };
    let kept = set && ctx.kv_cache_seq_rm(seq, Some(point as u32), None).is_ok();
    if !kept {
        log::warn!(
            "prompt cache: llama.cpp did not take the saved state of {} tokens; the prompt is evaluated",
            entry.tokens.len()
        );
        let _ = ctx.kv_cache_seq_rm(seq, None, None);
        return Restored::Prefix(0);
    }
    log::info!(
        "prompt cache: {point} of the prompt's {} tokens restored ({} KV bytes) in {:.1} ms",
        prompt.len(),
        entry.state.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Restored::Prefix(point)
}

/// Save `slot`'s KV, which holds exactly `tokens`.
pub fn save(cache: &Namespace, ctx: &LlamaContext, slot: usize, tokens: &[LlamaToken]) {
    let started = Instant::now();
    let flags = LlamaStateSeqFlags::empty();
    let size = ctx.state_seq_get_size_ext(slot as i32, flags);
    let mut state = vec![0u8; size];
    // SAFETY: `state` has the `size` bytes llama.cpp just said the sequence's state takes;
    // nothing changes the context between the two calls (this thread owns it).
    let written = unsafe { ctx.state_seq_get_data_ext(state.as_mut_ptr(), slot as i32, flags) };
    if written != size {
        log::warn!("prompt cache: llama.cpp wrote {written} of {size} state bytes; not saved");
        return;
    }
    match cache.save(&ids(tokens), &state) {
        Ok(0) => {}
        Ok(bytes) => log::info!(
            "prompt cache: the KV of a prompt of {} tokens saved ({bytes} bytes) in {:.1} ms",
            tokens.len(),
            started.elapsed().as_secs_f64() * 1e3
        ),
        Err(e) => log::warn!("prompt cache: cannot save in {} ({e})", cache_dir(cache)),
    }
}

fn cache_dir(cache: &Namespace) -> String {
    cache.dir().display().to_string()
}

#[cfg(test)]
mod tests {
    use super::exact_point;

    #[test]
    fn the_tail_is_evaluated_in_the_same_kind_of_micro_batch_as_from_the_start() {
        // A long last micro-batch ([1536, 1675): 139 rows, tiled): 64 rows or more are
        // evaluated again, from a multiple of 32.
        assert_eq!(exact_point(1674, 1675, 1650, 512), 1600);
        assert_eq!(exact_point(330, 330, 329, 512), 256);
        // A short one ([1536, 1540): 4 rows, row by row) can be resumed at its start...
        assert_eq!(exact_point(1600, 1540, 1538, 512), 1536);
        // ... but not in the batch before it, which a fresh evaluation computes whole.
        assert_eq!(exact_point(1600, 1540, 1530, 512), 1472);
        // A lone last token is computed alone either way.
        assert_eq!(exact_point(1600, 1537, 1536, 512), 1536);
    }

    #[test]
    fn the_saved_prompts_own_last_micro_batch_counts_too() {
        // Saved: [512, 600) was 88 rows (tiled); the new prompt has a whole 512 there (tiled),
        // and the first 64 rows fall in groups of four in both.
        assert_eq!(exact_point(600, 2000, 600, 512), 576);
        // Saved: [512, 540) was 28 rows (row by row): nothing of it can be used.
        assert_eq!(exact_point(540, 2000, 540, 512), 512);
        // Nothing shared, or less than a group: nothing.
        assert_eq!(exact_point(600, 2000, 20, 512), 0);
    }
}
