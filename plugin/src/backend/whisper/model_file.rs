//! Checks a whisper.cpp model file's structure before whisper.cpp sees it.
//!
//! whisper.cpp reads tensors until the file ends and accepts a file that ends before its first
//! tensor as "an empty model for testing": a truncated model loads, and the first transcription
//! then aborts the process (a C++ exception through C). So the file is walked here first:
//! magic, hyper-parameters, mel filters, vocabulary, then every tensor's header and data, each
//! of which must lie inside the file. A file cut short anywhere, or with sizes that cannot be,
//! is refused with the place it breaks. (Whether every tensor the model needs is there,
//! whisper.cpp checks itself once there is at least one.)

use std::io::{self, Read, Seek, SeekFrom};

const MAGIC: u32 = 0x6767_6d6c;

/// Bytes per block and elements per block of the tensor types whisper.cpp files carry.
fn type_size(ttype: i32) -> Option<(u64, u64)> {
    Some(match ttype {
        0 => (4, 1),     // F32
        1 => (2, 1),     // F16
        2 => (18, 32),   // Q4_0
        3 => (20, 32),   // Q4_1
        6 => (22, 32),   // Q5_0
        7 => (24, 32),   // Q5_1
        8 => (34, 32),   // Q8_0
        10 => (84, 256), // Q2_K
        11 => (110, 256),
        12 => (144, 256),
        13 => (176, 256),
        14 => (210, 256), // Q6_K
        _ => return None,
    })
}

struct Walker<R> {
    r: R,
    len: u64,
}

impl<R: Read + Seek> Walker<R> {
    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let mut b = [0u8; 4];
        self.r.read_exact(&mut b).map_err(|e| self.cut(what, e))?;
        Ok(i32::from_le_bytes(b))
    }

    fn count(&mut self, what: &str, max: i32) -> Result<u64, String> {
        let n = self.i32(what)?;
        if !(0..=max).contains(&n) {
            return Err(format!("{what} is {n}, which no whisper model has"));
        }
        Ok(n as u64)
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        let at = self.r.stream_position().map_err(|e| e.to_string())?;
        if at.checked_add(n).map_or(true, |end| end > self.len) {
            return Err(format!(
                "the file ends inside {what} (it needs {n} bytes from offset {at}; the file has {})",
                self.len
            ));
        }
        self.r.seek(SeekFrom::Current(n as i64)).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn cut(&self, what: &str, e: io::Error) -> String {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            format!("the file ends inside {what}")
        } else {
            format!("cannot read {what}: {e}")
        }
    }
}

/// Walk a whisper.cpp model file; `Err` says where and why it is broken.
pub fn check(mut r: impl Read + Seek) -> Result<(), String> {
    let len = r.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    r.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut w = Walker { r, len };
    if w.i32("the magic").map(|m| m as u32) != Ok(MAGIC) {
        return Err("it does not start with the ggml magic".into());
    }
    let mut hparams = [0i32; 11];
    for h in &mut hparams {
        *h = w.i32("the hyper-parameters")?;
    }
    let n_vocab = hparams[0];
    if hparams[..10].iter().any(|&h| h <= 0) || n_vocab > 1 << 20 {
        return Err(format!("its hyper-parameters {hparams:?} cannot be a whisper model's"));
    }
    let n_mel = w.count("the mel filter count", 1024)?;
    let n_fft = w.count("the FFT size", 1 << 16)?;
    w.skip(n_mel * n_fft * 4, "the mel filters")?;
    let words = w.count("the vocabulary size", 1 << 20)?;
    for _ in 0..words {
        let n = w.count("a vocabulary entry's length", 1 << 16)?;
        w.skip(n, "the vocabulary")?;
    }
    let mut tensors = 0;
    loop {
        let at = w.r.stream_position().map_err(|e| e.to_string())?;
        if at == w.len {
            break;
        }
        let n_dims = w.count("a tensor's dimension count", 4)?;
        let name_len = w.count("a tensor's name length", 1024)?;
        let ttype = w.i32("a tensor's type")?;
        let mut elements: Option<u64> = Some(1);
        for _ in 0..n_dims {
            let d = w.count("a tensor's dimension", i32::MAX)?;
            elements = elements.and_then(|e| e.checked_mul(d));
        }
        let too_big = || format!("tensor {tensors}'s dimensions give more bytes than any file has");
        let elements = elements.ok_or_else(too_big)?;
        let (block_bytes, block) = type_size(ttype)
            .ok_or_else(|| format!("tensor {tensors} has type {ttype}, unknown to whisper.cpp files"))?;
        if elements % block != 0 {
            return Err(format!("tensor {tensors} has {elements} elements, not whole blocks of its type"));
        }
        w.skip(name_len, "a tensor's name")?;
        let bytes = (elements / block).checked_mul(block_bytes).ok_or_else(too_big)?;
        w.skip(bytes, &format!("tensor {tensors}'s data"))?;
        tensors += 1;
    }
    if tensors == 0 {
        return Err("the file ends before its first tensor (a truncated model)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A tiny well-formed file: hyper-parameters, a 2×3 mel filter bank, two words, one F32
    /// tensor of 4 elements and one F16 tensor of 2.
    fn tiny() -> Vec<u8> {
        let mut f = Vec::new();
        let i = |v: i32, f: &mut Vec<u8>| f.extend_from_slice(&v.to_le_bytes());
        i(MAGIC as i32, &mut f);
        for h in [51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1] {
            i(h, &mut f);
        }
        i(2, &mut f);
        i(3, &mut f);
        f.extend_from_slice(&[0u8; 24]);
        i(2, &mut f);
        for word in [&b"a"[..], b"bc"] {
            i(word.len() as i32, &mut f);
            f.extend_from_slice(word);
        }
        for (dims, ttype, name, bytes) in [(&[4][..], 0, &b"t.w"[..], 16), (&[2][..], 1, b"t.b", 4)] {
            i(dims.len() as i32, &mut f);
            i(name.len() as i32, &mut f);
            i(ttype, &mut f);
            for &d in dims {
                i(d, &mut f);
            }
            f.extend_from_slice(name);
            f.extend(std::iter::repeat(0u8).take(bytes));
        }
        f
    }

    #[test]
    fn a_whole_file_passes_and_every_cut_is_refused() {
        let whole = tiny();
        assert_eq!(check(Cursor::new(&whole)), Ok(()));
        // Cutting anywhere but after a whole tensor breaks it; cutting between the two tensors
        // leaves one (whisper.cpp then finds the missing ones itself).
        let between = whole.len() - (4 * 4 + 3 + 4);
        for cut in 0..whole.len() {
            let r = check(Cursor::new(&whole[..cut]));
            assert_eq!(r.is_ok(), cut == between, "cut at {cut}: {r:?}");
        }
    }

    #[test]
    fn impossible_sizes_are_refused_without_reading_them() {
        let mut f = tiny();
        // The vocabulary size (after magic, 11 hyper-parameters, 2 counts and 24 filter bytes).
        f[4 + 44 + 8 + 24..][..4].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(check(Cursor::new(&f)).unwrap_err().contains("vocabulary size"));
        let mut g = tiny();
        g[..4].copy_from_slice(b"GGUF");
        assert!(check(Cursor::new(&g)).unwrap_err().contains("magic"));
    }

    /// Found by the fuzz target `whisper_model_file`: dimensions whose product overflows u64
    /// used to panic (or, without overflow checks, wrap and pass a broken file on).
    #[test]
    fn dimensions_that_overflow_are_refused() {
        let mut f = tiny();
        let first_tensor = f.len() - (4 * 4 + 3 + 16) - (4 * 4 + 3 + 4);
        f.truncate(first_tensor);
        for v in [4, 1, 0, i32::MAX, i32::MAX, i32::MAX, i32::MAX] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.push(b'x');
        assert!(check(Cursor::new(&f)).unwrap_err().contains("more bytes than any file has"));
    }
}
