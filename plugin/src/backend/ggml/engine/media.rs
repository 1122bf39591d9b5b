//! Prefix reuse for prompts with pictures, as text prompts have it: when a new prompt starts
//! with the same text and the same pictures as what a sequence's KV holds (a chat about a
//! picture, turn after turn), only the rest is evaluated, and the pictures it shares are not
//! encoded again. (llama.cpp's server keeps media in its prompt cache the same way.)
//!
//! A sequence's KV is described position by position ([`position_keys`]): text positions by
//! their tokens, a picture's by keys made from a hash of its bytes, which no text token and
//! no other picture has. The evaluation resumes at the first position that differs
//! ([`resume`]): the rest of a text chunk is decoded as tokens, and what follows from the next
//! picture on is tokenized again by mtmd and evaluated from there.

use llama_cpp_2::mtmd::{MtmdInputChunkType, MtmdInputChunks};
use llama_cpp_2::token::LlamaToken;

/// What a prompt with pictures puts at each KV position: its text tokens, and for a
/// picture's positions keys made from the picture's id (negative, below -1, so no token and
/// no picture-less position ever equals one). `None` when a chunk's positions are not its
/// tokens one by one (M-RoPE), or a chunk is neither text nor a picture with an id.
pub fn position_keys(chunks: &MtmdInputChunks) -> Option<Vec<LlamaToken>> {
    let mut keys = Vec::with_capacity(chunks.total_positions().max(0) as usize);
    for i in 0..chunks.len() {
        let chunk = chunks.get(i)?;
        match chunk.chunk_type() {
            MtmdInputChunkType::Text => keys.extend_from_slice(chunk.text_tokens()?),
            MtmdInputChunkType::Image => {
                let id = chunk.id()?;
                if chunk.n_positions() < 0 || chunk.n_positions() as usize != chunk.n_tokens() {
                    return None;
                }
                keys.extend((0..chunk.n_tokens()).map(|j| picture_key(&id, j)));
            }
            MtmdInputChunkType::Audio => return None,
        }
    }
    Some(keys)
}

fn picture_key(id: &str, position: usize) -> LlamaToken {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(id.as_bytes());
    h.update(&(position as u64).to_le_bytes());
    let span = (i32::MAX - 2) as u64;
    LlamaToken(-2 - (h.digest() % span) as i32)
}

/// Where a prompt's evaluation resumes once its first `keep` positions are taken from the KV:
/// the text tokens to decode from `keep`, then (`rest`) the prompt's part from picture
/// number `rest` on, and the index of that picture's chunk.
#[derive(Debug, PartialEq)]
pub struct Resume {
    pub keep: usize,
    pub tail: Vec<LlamaToken>,
    pub rest: Option<(usize, usize)>,
}

/// The resume point for a prompt of which the KV holds the first `shared` positions: inside
/// a text chunk where they part, or at the start of the picture they part in (a picture is
/// evaluated whole). At least the prompt's last position is evaluated.
pub fn resume(chunks: &MtmdInputChunks, shared: usize) -> Option<Resume> {
    let total = chunks.total_positions().max(0) as usize;
    let shared = shared.min(total.saturating_sub(1));
    let (mut start, mut pictures) = (0usize, 0usize);
    for i in 0..chunks.len() {
        let chunk = chunks.get(i)?;
        let n = chunk.n_positions().max(0) as usize;
        let is_text = chunk.chunk_type() == MtmdInputChunkType::Text;
        if shared < start + n {
            // The next picture after this chunk (or this one), and its chunk.
            let next = |from: usize, pictures: usize| -> Option<(usize, usize)> {
                (from..chunks.len())
                    .find(|&j| chunks.get(j).is_some_and(|c| c.chunk_type() != MtmdInputChunkType::Text))
                    .map(|j| (pictures, j))
            };
            return Some(if is_text {
                let tokens = chunk.text_tokens()?;
                Resume { keep: shared, tail: tokens[shared - start..].to_vec(), rest: next(i + 1, pictures) }
            } else {
                Resume { keep: start, tail: Vec::new(), rest: next(i, pictures) }
            });
        }
        start += n;
        pictures += usize::from(!is_text);
    }
    None
}

/// Whether `part` (the prompt tokenized again from a picture on) is the prompt's chunks from
/// index `from`: the same kinds, text tokens, picture ids and sizes.
pub fn same_chunks(part: &MtmdInputChunks, chunks: &MtmdInputChunks, from: usize) -> bool {
    if part.len() != chunks.len().saturating_sub(from) {
        return false;
    }
    (0..part.len()).all(|i| match (part.get(i), chunks.get(from + i)) {
        (Some(a), Some(b)) => {
            a.chunk_type() == b.chunk_type()
                && a.text_tokens() == b.text_tokens()
                && a.id() == b.id()
                && a.n_tokens() == b.n_tokens()
                && a.n_positions() == b.n_positions()
        }
        _ => false,
    })
}
