//! One cache file: a prompt's tokens and the KV state llama.cpp saved for them, behind a
//! header that says what produced it, and a checksum over everything.
//!
//! ```text
//! magic        8 bytes   b"WNNKV\r\n\x1a" (a line-ending or text-mode mangling shows here)
//! version      u32 LE    FORMAT_VERSION
//! header_len   u32 LE    at most MAX_HEADER
//! header       JSON      {"namespace": ..., "tokens": N, "state_bytes": S}
//! tokens       N × i32 LE
//! state        S bytes   llama_state_seq_get_data_ext's output
//! checksum     16 bytes  xxh3-128 (LE) of every byte before it
//! ```
//!
//! Nothing here trusts the file: every length is checked against the file's size before it
//! is used, and the checksum before any byte goes to llama.cpp.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use xxhash_rust::xxh3::Xxh3;

pub const MAGIC: &[u8; 8] = b"WNNKV\r\n\x1a";
pub const FORMAT_VERSION: u32 = 1;
const MAX_HEADER: u32 = 64 << 10;
/// More tokens than any context holds (ctx-size is capped far below).
const MAX_TOKENS: u64 = 1 << 24;
const CHECKSUM_LEN: u64 = 16;
/// magic, version, header length.
const PREAMBLE: u64 = 16;

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub struct Header {
    /// What must match for the state to be usable (see [`super::Namespace`]): the model's
    /// identity, the settings that shape its KV, and the llama.cpp build.
    pub namespace: String,
    pub tokens: u64,
    pub state_bytes: u64,
}

/// What a file's first bytes say, read without its state (for choosing among files).
pub struct Summary {
    pub header: Header,
    pub tokens: Vec<i32>,
}

/// A file's whole content, checked.
pub struct Entry {
    pub tokens: Vec<i32>,
    pub state: Vec<u8>,
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Write an entry to `out`; the bytes written.
pub fn write(out: &mut (impl Write + ?Sized), namespace: &str, tokens: &[i32], state: &[u8]) -> io::Result<u64> {
    let header = serde_json::to_vec(&Header {
        namespace: namespace.to_owned(),
        tokens: tokens.len() as u64,
        state_bytes: state.len() as u64,
    })?;
    let mut token_bytes = Vec::with_capacity(tokens.len() * 4);
    for t in tokens {
        token_bytes.extend_from_slice(&t.to_le_bytes());
    }
    let mut hasher = Xxh3::new();
    let mut put = |bytes: &[u8]| -> io::Result<()> {
        hasher.update(bytes);
        out.write_all(bytes)
    };
    put(MAGIC)?;
    put(&FORMAT_VERSION.to_le_bytes())?;
    put(&(header.len() as u32).to_le_bytes())?;
    put(&header)?;
    put(&token_bytes)?;
    put(state)?;
    out.write_all(&hasher.digest128().to_le_bytes())?;
    Ok(PREAMBLE + header.len() as u64 + token_bytes.len() as u64 + state.len() as u64 + CHECKSUM_LEN)
}

/// The header and tokens at the start of a file of `file_len` bytes, checked for shape (the
/// checksum is only checked by [`read`]).
pub fn summary(input: &mut impl Read, file_len: u64) -> io::Result<Summary> {
    let mut preamble = [0u8; PREAMBLE as usize];
    input.read_exact(&mut preamble)?;
    let header = parse_preamble_and_header(&preamble, input, file_len)?;
    let mut bytes = vec![0u8; header.tokens as usize * 4];
    input.read_exact(&mut bytes)?;
    Ok(Summary { tokens: tokens_of(&bytes), header })
}

fn parse_preamble_and_header(preamble: &[u8; 16], input: &mut impl Read, file_len: u64) -> io::Result<Header> {
    if &preamble[..8] != MAGIC {
        return Err(bad("not a prompt-cache file (wrong magic)"));
    }
    let version = u32::from_le_bytes(preamble[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(bad(format!("format version {version}, not {FORMAT_VERSION}")));
    }
    let header_len = u32::from_le_bytes(preamble[12..16].try_into().expect("4 bytes"));
    if header_len > MAX_HEADER || PREAMBLE + header_len as u64 > file_len {
        return Err(bad(format!("a header of {header_len} bytes does not fit a file of {file_len}")));
    }
    let mut json = vec![0u8; header_len as usize];
    input.read_exact(&mut json)?;
    let header: Header = serde_json::from_slice(&json).map_err(|e| bad(format!("unreadable header: {e}")))?;
    if header.tokens > MAX_TOKENS {
        return Err(bad(format!("{} tokens is more than any context holds", header.tokens)));
    }
    let expected = PREAMBLE
        .checked_add(header_len as u64)
        .and_then(|n| n.checked_add(header.tokens * 4))
        .and_then(|n| n.checked_add(header.state_bytes))
        .and_then(|n| n.checked_add(CHECKSUM_LEN));
    if expected != Some(file_len) {
        return Err(bad(format!(
            "the header says {} tokens and {} state bytes, which a file of {file_len} bytes does not hold (truncated?)",
            header.tokens, header.state_bytes
        )));
    }
    Ok(header)
}

fn tokens_of(bytes: &[u8]) -> Vec<i32> {
    bytes.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes"))).collect()
}

/// A whole file's content, `bytes`, checked: shape, then checksum. The namespace is the
/// caller's to compare.
pub fn read(bytes: &[u8]) -> io::Result<(Header, Entry)> {
    let len = bytes.len() as u64;
    if len < PREAMBLE + CHECKSUM_LEN {
        return Err(bad(format!("{len} bytes is too short for a prompt-cache file")));
    }
    let preamble: &[u8; 16] = bytes[..16].try_into().expect("checked length");
    let mut rest = &bytes[16..];
    let header = parse_preamble_and_header(preamble, &mut rest, len)?;
    let body = (len - CHECKSUM_LEN) as usize;
    let stored = u128::from_le_bytes(bytes[body..].try_into().expect("16 bytes"));
    if xxhash_rust::xxh3::xxh3_128(&bytes[..body]) != stored {
        return Err(bad("checksum mismatch (the file is damaged)"));
    }
    let tokens_at = body - header.state_bytes as usize - header.tokens as usize * 4;
    let state_at = body - header.state_bytes as usize;
    let tokens = tokens_of(&bytes[tokens_at..state_at]);
    Ok((header, Entry { tokens, state: bytes[state_at..body].to_vec() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let n = write(&mut out, "ns", &[1, 2, -3], &[9u8; 100]).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let (header, entry) = read(&bytes).unwrap();
        assert_eq!(header.namespace, "ns");
        assert_eq!(entry.tokens, vec![1, 2, -3]);
        assert_eq!(entry.state, vec![9u8; 100]);
        let s = summary(&mut &bytes[..], bytes.len() as u64).unwrap();
        assert_eq!(s.tokens, vec![1, 2, -3]);
        assert_eq!(s.header, header);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(read(&bytes[..len]).is_err(), "truncated to {len}");
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(read(&damaged).is_err(), "byte {i} flipped");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read(&longer).is_err());
    }
}
