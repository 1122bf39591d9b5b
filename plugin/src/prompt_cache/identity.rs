//! A model's identity for the prompt cache: the sha256 of its file's bytes.
//!
//! Why the content hash: a KV state is valid only for the weights that computed it, and only
//! the bytes say which weights those are. A path names different files over time (a model
//! replaced by a newer quantization keeps its name), and a GGUF's metadata (name, sizes,
//! tensor shapes) is the same for a base model and its fine-tunes.
//!
//! Hashing a model costs about a second per GiB, too much for every cold start, so the hash
//! is remembered in the cache directory under the file's (canonical path, device, inode,
//! size, mtime, ctime). Any write to the file, or a replacement (rename, copy), changes its
//! ctime or its inode, and ctime cannot be set back by anyone but the clock; so a remembered
//! hash is the file's hash until the file changes, and then it is computed again.

use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The sha256 of the file at `path`, remembered in `dir` (see the module's notes).
pub fn of_file(dir: &Path, path: &Path) -> io::Result<[u8; 32]> {
    let real = path.canonicalize()?;
    let meta = std::fs::metadata(&real)?;
    let stat = format!(
        "{}\0{}\0{}\0{}\0{}.{}\0{}.{}",
        real.display(),
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    let memo = dir.join(format!("model-{}.sha256", &super::hex(&Sha256::digest(stat.as_bytes()))[..32]));
    if let Some(hash) = std::fs::read_to_string(&memo).ok().and_then(|text| parse_hex32(text.trim())) {
        return Ok(hash);
    }
    let started = std::time::Instant::now();
    let hash = hash_file(&real)?;
    log::info!(
        "prompt cache: {} has sha256 {} (hashed in {} ms; remembered until the file changes)",
        real.display(),
        super::hex(&hash),
        started.elapsed().as_millis()
    );
    if let Err(e) = super::write_atomically(dir, &memo, |out| writeln!(out, "{}", super::hex(&hash))) {
        log::warn!("prompt cache: cannot remember the model's hash in {}: {e}", dir.display());
    }
    Ok(hash)
}

/// The sha256 of bytes given (a model a guest sent instead of naming a file).
pub fn of_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"GGUF one").unwrap();
        let first = of_file(dir.path(), &model).unwrap();
        assert_eq!(first, of_bytes(b"GGUF one"));
        // Remembered: a wrong memo would be believed, which shows it is read.
        let memo = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".sha256"))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&memo).unwrap().trim(), super::super::hex(&first));
        // Changed content changes ctime (and so the memo's name): hashed again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&model, b"GGUF two").unwrap();
        assert_eq!(of_file(dir.path(), &model).unwrap(), of_bytes(b"GGUF two"));
    }
}
