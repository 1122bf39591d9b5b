//! The prompt cache: KV states of evaluated prompts kept in a directory the host names, so a
//! later process whose prompt starts the same way (an agent's fixed instructions and tools)
//! restores them instead of evaluating them again. A serverless host starts a fresh process
//! per request; without this, every one of them evaluates the whole prefix before its first
//! token.
//!
//! The host chooses the directory (`--nn-prompt-cache DIR`, or `WASMEDGE_NN_PROMPT_CACHE`)
//! and its size (`--nn-prompt-cache-mib`, `WASMEDGE_NN_PROMPT_CACHE_MIB`, default 2048). A
//! guest cannot choose, name or read anything in it: file names are hashes, contents are
//! written and checked here.
//!
//! - Entries live in a [`Namespace`]: the model's identity (its file's sha256, see
//!   [`identity`]), the settings that shape its KV, and the llama.cpp build, all written into
//!   each file's header and checked on reading. A file's name starts with a hash of the
//!   namespace, and ends with a hash of the namespace and the tokens, so processes saving the
//!   same prompt write the same name.
//! - Files are written to a temporary name and renamed into place: a reader sees a whole file
//!   or none, however many processes share the directory. A file that is truncated, damaged,
//!   or not what its name says ([`entry`]: magic, lengths, checksum) is ignored with a log
//!   line, removed, and never given to llama.cpp.
//! - The directory is kept under its size by removing the least recently used entries (a
//!   file's mtime is its last use); temporary files left by a killed writer go after an hour.
//!
//! This module knows files and token lists; what the states mean is the GGML engine's.

mod entry;
mod identity;

pub use entry::Entry;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

pub const DIR_ENV: &str = "WASMEDGE_NN_PROMPT_CACHE";
pub const MIB_ENV: &str = "WASMEDGE_NN_PROMPT_CACHE_MIB";
pub const DEFAULT_MIB: u64 = 2048;
/// Temporary files older than this were left by a writer that died.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);
const EXTENSION: &str = ".kv";

static STORE: OnceLock<Option<Arc<Store>>> = OnceLock::new();

/// Set the cache from the host's options (`None`, 0: not given; then the environment is
/// read). The first call wins.
pub fn configure(dir: Option<String>, mib: u32) {
    STORE.get_or_init(|| open_configured(dir, mib));
}

/// The process's cache, if the host set one.
pub fn store() -> Option<Arc<Store>> {
    STORE.get_or_init(|| open_configured(None, 0)).clone()
}

fn open_configured(dir: Option<String>, mib: u32) -> Option<Arc<Store>> {
    let dir = dir.filter(|d| !d.is_empty()).or_else(|| std::env::var(DIR_ENV).ok().filter(|d| !d.is_empty()))?;
    let mib = match (mib, std::env::var(MIB_ENV).map(|v| v.trim().parse::<u64>())) {
        (m, _) if m > 0 => m as u64,
        (_, Ok(Ok(m))) if m > 0 => m,
        (_, Ok(_)) => {
            log::error!("{MIB_ENV} must be a positive number of MiB; using {DEFAULT_MIB}");
            DEFAULT_MIB
        }
        _ => DEFAULT_MIB,
    };
    match Store::open(Path::new(&dir), mib << 20) {
        Ok(store) => {
            log::info!("prompt cache: {} (at most {mib} MiB)", store.dir.display());
            Some(Arc::new(store))
        }
        Err(e) => {
            log::error!("prompt cache: cannot use '{dir}' ({e}); prompts are not cached: give a writable directory");
            None
        }
    }
}

/// A cache directory, and what this process has read of its files' headers.
pub struct Store {
    dir: PathBuf,
    cap: u64,
    /// Tokens of the files seen, by name, with the inode and size they were read from (a
    /// file renamed over another is a new inode).
    index: Mutex<HashMap<String, Indexed>>,
}

struct Indexed {
    ino: u64,
    len: u64,
    tokens: Vec<i32>,
}

/// The best file for a prompt: its name, how many tokens it holds, and how many leading
/// tokens it shares with the prompt.
#[derive(Debug)]
pub struct Hit {
    name: String,
    pub tokens: usize,
    pub shared: usize,
}

impl Store {
    pub fn open(dir: &Path, cap: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        if !dir.is_dir() {
            return Err(io::Error::other("not a directory"));
        }
        Ok(Self { dir, cap, index: Mutex::default() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The identity of the model in the file at `path` (see [`identity`]).
    pub fn model_identity(&self, path: &Path) -> io::Result<[u8; 32]> {
        identity::of_file(&self.dir, path)
    }

    /// The identity of a model given as bytes.
    pub fn bytes_identity(bytes: &[u8]) -> [u8; 32] {
        identity::of_bytes(bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Indexed>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remove a file that cannot be trusted, saying why.
    fn reject(&self, name: &str, why: &dyn std::fmt::Display) {
        log::warn!("prompt cache: ignoring and removing {name}: {why}");
        let _ = std::fs::remove_file(self.dir.join(name));
        self.lock().remove(name);
    }

    /// Keep the directory under its cap: least recently used entries go first; temporary
    /// files of writers that died go too.
    fn evict(&self) {
        let Ok(listing) = std::fs::read_dir(&self.dir) else { return };
        let now = SystemTime::now();
        let mut entries = Vec::new();
        let mut total = 0u64;
        for item in listing.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(now);
            if name.starts_with(".tmp-") {
                if now.duration_since(modified).unwrap_or_default() > STALE_TEMPORARY {
                    let _ = std::fs::remove_file(item.path());
                } else {
                    total += meta.len();
                }
            } else if name.ends_with(EXTENSION) {
                total += meta.len();
                entries.push((modified, meta.len(), name));
            }
        }
        entries.sort();
        for (_, len, name) in entries {
            if total <= self.cap {
                break;
            }
            log::debug!("prompt cache: evicting {name} ({len} bytes; the directory holds {total}, cap {})", self.cap);
            if std::fs::remove_file(self.dir.join(&name)).is_ok() {
                self.lock().remove(&name);
            }
            total = total.saturating_sub(len);
        }
    }
}

/// The part of a cache that holds one model's states for one KV shape and llama.cpp build.
pub struct Namespace {
    store: Arc<Store>,
    /// Everything that must match, as written into each file's header.
    text: String,
    /// The first part of its files' names.
    prefix: String,
}

impl Namespace {
    /// `what` describes everything a state depends on besides the tokens: the model's
    /// identity, the settings that shape the KV, the build of the code that made it.
    pub fn new(store: Arc<Store>, what: String) -> Self {
        let prefix = hex(&Sha256::digest(what.as_bytes()))[..16].to_owned();
        Self { store, text: what, prefix }
    }

    pub fn describe(&self) -> &str {
        &self.text
    }

    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    fn name_for(&self, tokens: &[i32]) -> String {
        let mut h = Sha256::new();
        h.update(self.text.as_bytes());
        h.update([0]);
        for t in tokens {
            h.update(t.to_le_bytes());
        }
        format!("{}-{}{EXTENSION}", self.prefix, &hex(&h.finalize())[..32])
    }

    /// The file sharing the most leading tokens with `tokens`, if one shares at least
    /// `at_least`.
    pub fn best(&self, tokens: &[i32], at_least: usize) -> Option<Hit> {
        let listing = std::fs::read_dir(&self.store.dir).ok()?;
        let mut best: Option<Hit> = None;
        let mut seen = Vec::new();
        for item in listing.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if !(name.starts_with(&self.prefix) && name.ends_with(EXTENSION)) {
                continue;
            }
            // (Not followed: a link is not a file this cache wrote.)
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            seen.push(name.clone());
            let shared = {
                let mut index = self.store.lock();
                let fresh = index.get(&name).is_some_and(|i| i.ino == meta.ino() && i.len == meta.len());
                if !fresh {
                    drop(index);
                    match self.read_summary(&name) {
                        Ok(tokens) => {
                            index = self.store.lock();
                            index.insert(name.clone(), Indexed { ino: meta.ino(), len: meta.len(), tokens });
                        }
                        Err(e) => {
                            self.store.reject(&name, &e);
                            continue;
                        }
                    }
                }
                let cached = &index[&name].tokens;
                (cached.iter().zip(tokens).take_while(|(a, b)| a == b).count(), cached.len())
            };
            let (shared, held) = shared;
            if shared >= at_least && best.as_ref().map_or(true, |b| shared > b.shared) {
                best = Some(Hit { name, tokens: held, shared });
            }
        }
        // Forget files that are gone.
        self.store.lock().retain(|name, _| !name.starts_with(&self.prefix) || seen.contains(name));
        best
    }

    fn read_summary(&self, name: &str) -> io::Result<Vec<i32>> {
        let file = open_regular(&self.store.dir.join(name))?;
        let len = file.metadata()?.len();
        let summary = entry::summary(&mut io::BufReader::new(file), len)?;
        if summary.header.namespace != self.text {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("made for '{}', not '{}'", summary.header.namespace, self.text),
            ));
        }
        Ok(summary.tokens)
    }

    /// The whole entry `hit` names, checked; `None` (with a log line) when it cannot be
    /// trusted or is gone. Reading it counts as a use.
    pub fn load(&self, hit: &Hit) -> Option<Entry> {
        let path = self.store.dir.join(&hit.name);
        let read = || -> io::Result<Entry> {
            let mut file = open_regular(&path)?;
            let len = file.metadata()?.len();
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes)?;
            let (header, entry) = entry::read(&bytes)?;
            if header.namespace != self.text {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("made for '{}'", header.namespace)));
            }
            if entry.tokens.len() < hit.shared {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "its tokens changed since it was chosen"));
            }
            let _ = file.set_modified(SystemTime::now());
            Ok(entry)
        };
        match read() {
            Ok(entry) => Some(entry),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                self.store.reject(&hit.name, &e);
                None
            }
        }
    }

    /// Save `state` as the KV of `tokens` (unless the same tokens are saved already: then
    /// that file counts as used), then keep the directory under its cap. The bytes written.
    pub fn save(&self, tokens: &[i32], state: &[u8]) -> io::Result<u64> {
        let name = self.name_for(tokens);
        let path = self.store.dir.join(&name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            if let Ok(file) = File::options().write(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
                let _ = file.set_modified(SystemTime::now());
            }
            return Ok(0);
        }
        let size = 16 + 256 + 4 * tokens.len() as u64 + state.len() as u64 + 16;
        if size > self.store.cap {
            log::info!(
                "prompt cache: a state of {} tokens ({size} bytes) is larger than the cache ({} bytes); not saved",
                tokens.len(),
                self.store.cap
            );
            return Ok(0);
        }
        let mut written = 0;
        write_atomically(&self.store.dir, &path, |out| {
            written = entry::write(out, &self.text, tokens, state)?;
            Ok(())
        })?;
        self.store.evict();
        Ok(written)
    }
}

/// Open a regular file for reading, never through a symbolic link.
fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file"));
    }
    Ok(file)
}

/// Write a file under a temporary name in `dir`, then rename it to `path`: whoever opens
/// `path` finds the old file or the whole new one.
fn write_atomically(dir: &Path, path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let temporary = dir.join(format!(".tmp-{}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temporary)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        fill(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(dir: &Path, cap: u64, what: &str) -> Namespace {
        Namespace::new(Arc::new(Store::open(dir, cap).unwrap()), what.to_owned())
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_longest_shared_prefix_wins() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path(), 1 << 20, "model a");
        ns.save(&[1, 2, 3, 4], b"four").unwrap();
        ns.save(&[1, 2, 9], b"three").unwrap();
        let hit = ns.best(&[1, 2, 3, 4, 5], 1).unwrap();
        assert_eq!(hit.shared, 4);
        assert_eq!(ns.load(&hit).unwrap().state, b"four");
        assert_eq!(ns.best(&[1, 2, 9, 9], 1).unwrap().shared, 3);
        assert!(ns.best(&[7], 1).is_none());
        assert!(ns.best(&[1, 2, 3, 4, 5], 5).is_none());
        // Another namespace sees none of it.
        let other = namespace(dir.path(), 1 << 20, "model b");
        assert!(other.best(&[1, 2, 3, 4, 5], 1).is_none());
    }

    #[test]
    fn damaged_and_foreign_files_are_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path(), 1 << 20, "model a");
        ns.save(&[1, 2, 3], b"state").unwrap();
        let name = files(dir.path()).into_iter().find(|n| n.ends_with(".kv")).unwrap();
        let path = dir.path().join(&name);
        // Damaged after it was indexed: the load checks the checksum.
        let hit = ns.best(&[1, 2, 3], 1).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 20;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(ns.load(&hit).is_none());
        assert!(!path.exists());
        // Another namespace's file under this namespace's name.
        let other = namespace(dir.path(), 1 << 20, "model b");
        other.save(&[1, 2, 3], b"state").unwrap();
        let foreign = files(dir.path()).into_iter().find(|n| n.ends_with(".kv")).unwrap();
        std::fs::rename(dir.path().join(&foreign), &path).unwrap();
        assert!(ns.best(&[1, 2, 3], 1).is_none());
        assert!(!path.exists());
    }

    #[test]
    fn a_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let ns = namespace(dir.path(), 1 << 20, "model a");
        ns.save(&[1, 2, 3], b"state").unwrap();
        let name = files(dir.path()).into_iter().find(|n| n.ends_with(".kv")).unwrap();
        let real = outside.path().join("real");
        std::fs::rename(dir.path().join(&name), &real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join(&name)).unwrap();
        assert!(ns.best(&[1, 2, 3], 1).is_none());
        // Saving the same tokens replaces the link, never writes through it.
        let before = std::fs::read(&real).unwrap();
        ns.save(&[1, 2, 3], b"state").unwrap();
        assert_eq!(std::fs::read(&real).unwrap(), before);
        assert!(std::fs::symlink_metadata(dir.path().join(&name)).unwrap().is_file());
    }

    #[test]
    fn the_cap_holds_and_the_least_recently_used_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let state = vec![7u8; 1000];
        let ns = namespace(dir.path(), 3500, "model a");
        ns.save(&[1], &state).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        ns.save(&[2], &state).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        ns.save(&[3], &state).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // [1] used: [2] is now the least recently used.
        let hit = ns.best(&[1], 1).unwrap();
        assert!(ns.load(&hit).is_some());
        std::thread::sleep(Duration::from_millis(20));
        ns.save(&[4], &state).unwrap();
        let total: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(total <= 3500, "{total}");
        assert!(ns.best(&[2], 1).is_none());
        for kept in [1, 3, 4] {
            assert!(ns.best(&[kept], 1).is_some(), "{kept}");
        }
        // Larger than the whole cache: not written.
        assert_eq!(ns.save(&[5], &[0u8; 4000]).unwrap(), 0);
    }
}
