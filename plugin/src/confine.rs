//! Which host files a guest may make the host open. A path that comes from a guest (`mmproj`,
//! `image` in metadata) must name a file inside a directory the host gave the guest
//! (`--dir GUEST:HOST` or `--dir HOST` on the `wasmedge` command line, or `WASMEDGE_NN_DIRS`
//! for embedders, entries separated by `;`), or be a preloaded model. Anything else is
//! refused before the file is opened. (WasmEdge's own plugin opens any host path a guest names.)
//!
//! A guest path is looked up as the guest sees it: a path under a directory's guest name maps
//! to its host directory; any other path is taken relative to the host's working directory,
//! as WasmEdge's plugin does (the two agree for the usual `--dir .:.`). The result is then
//! canonicalised, so `..` and symbolic links cannot lead outside.

use crate::error::{NnError, NnResult};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

pub const DIRS_ENV_VAR: &str = "WASMEDGE_NN_DIRS";

#[derive(Debug, Default, Clone)]
pub struct Confinement {
    /// (guest path, canonical host directory)
    dirs: Vec<(PathBuf, PathBuf)>,
    /// Canonical paths of preloaded files.
    files: Vec<PathBuf>,
}

/// A `--dir` value: `GUEST:HOST`, or `HOST` (seen by the guest under the same path).
fn parse_dir(spec: &str) -> (PathBuf, PathBuf) {
    match spec.split_once(':') {
        Some((guest, host)) => (PathBuf::from(guest), PathBuf::from(host)),
        None => (PathBuf::from(spec), PathBuf::from(spec)),
    }
}

/// `a/./b/../c` → `a/c`, lexically (for the guest-side prefix match only).
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    out
}

impl Confinement {
    /// From `--dir` values and preloaded model paths. Directories that do not exist are left out.
    pub fn new<'a>(dirs: impl IntoIterator<Item = &'a str>, files: impl IntoIterator<Item = &'a Path>) -> Self {
        let dirs = dirs
            .into_iter()
            .filter_map(|spec| {
                let (guest, host) = parse_dir(spec);
                host.canonicalize().ok().map(|host| (normalise(&guest), host))
            })
            .collect();
        let files = files.into_iter().filter_map(|f| f.canonicalize().ok()).collect();
        Self { dirs, files }
    }

    /// The host file for a path a guest gave as `what`, or InvalidArgument naming the rule.
    pub fn host_path(&self, guest_path: &str, what: &str) -> NnResult<PathBuf> {
        let given = Path::new(guest_path);
        let normal = normalise(given);
        // The longest guest directory that contains the path decides.
        // (A guest directory `.` normalises to the empty path: it holds the relative paths.)
        let mapped = self
            .dirs
            .iter()
            .filter(
                |(guest, _)| {
                    if guest.as_os_str().is_empty() {
                        normal.is_relative()
                    } else {
                        normal.starts_with(guest)
                    }
                },
            )
            .max_by_key(|(guest, _)| guest.components().count())
            .map(|(guest, host)| host.join(normal.strip_prefix(guest).expect("checked by starts_with")))
            .unwrap_or_else(|| given.to_path_buf());
        let real = mapped.canonicalize().map_err(|e| {
            NnError::invalid_argument(format!("{what} '{guest_path}' cannot be opened ({e}): no such file?"))
        })?;
        let allowed = self.dirs.iter().any(|(_, host)| real.starts_with(host)) || self.files.contains(&real);
        if !allowed {
            return Err(NnError::invalid_argument(format!(
                "{what} '{guest_path}' is outside the directories given to the guest: a file the guest names \
                 must be inside a directory given with --dir (or {DIRS_ENV_VAR}) or be a preloaded model; \
                 it was not opened"
            )));
        }
        if !real.is_file() {
            return Err(NnError::invalid_argument(format!("{what} '{guest_path}' is not a file")));
        }
        Ok(real)
    }
}

static CONFINEMENT: OnceLock<Confinement> = OnceLock::new();

/// Fix the rules; the first call wins.
pub fn set(c: Confinement) {
    let _ = CONFINEMENT.set(c);
}

/// The host file for a path a guest gave (see the module's notes).
pub fn host_path(guest_path: &str, what: &str) -> NnResult<PathBuf> {
    CONFINEMENT.get_or_init(Confinement::default).host_path(guest_path, what)
}

/// Every `--dir` value on a `wasmedge` command line, up to the `.wasm` file, and those of
/// `WASMEDGE_NN_DIRS`.
pub fn dirs_from(args: &[String]) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--dir=") {
            dirs.push(v.to_owned());
        } else if a == "--dir" {
            dirs.extend(it.next().cloned());
        } else if !a.starts_with('-') && a.ends_with(".wasm") {
            break;
        }
    }
    let env = std::env::var(DIRS_ENV_VAR).unwrap_or_default();
    dirs.extend(env.split(';').map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Confinement) {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("inside");
        std::fs::create_dir_all(inside.join("sub")).unwrap();
        std::fs::write(inside.join("sub/a.png"), b"x").unwrap();
        std::fs::write(root.path().join("secret"), b"x").unwrap();
        std::fs::write(root.path().join("model.gguf"), b"x").unwrap();
        let spec = format!("/data:{}", inside.display());
        let model = root.path().join("model.gguf");
        let c = Confinement::new([spec.as_str()], [model.as_path()]);
        (root, c)
    }

    #[test]
    fn guest_paths_map_to_their_host_directory() {
        let (root, c) = setup();
        let expected = root.path().join("inside/sub/a.png").canonicalize().unwrap();
        assert_eq!(c.host_path("/data/sub/a.png", "image").unwrap(), expected);
        assert_eq!(c.host_path("/data/./sub/../sub/a.png", "image").unwrap(), expected);
    }

    #[test]
    fn relative_paths_go_through_the_dot_directory() {
        let (root, _) = setup();
        let spec = format!(".:{}", root.path().join("inside").display());
        let c = Confinement::new([spec.as_str()], []);
        let expected = root.path().join("inside/sub/a.png").canonicalize().unwrap();
        assert_eq!(c.host_path("sub/a.png", "image").unwrap(), expected);
        assert!(c.host_path("../secret", "image").unwrap_err().message.contains("outside"));
    }

    #[test]
    fn paths_outside_are_refused_with_the_rule() {
        let (root, c) = setup();
        // Lexically outside /data: taken as the host path, which does not exist.
        assert!(c.host_path("/data/../secret", "image").is_err());
        let secret = root.path().join("secret");
        assert!(c.host_path(secret.to_str().unwrap(), "mmproj").is_err());
        assert!(c.host_path("/etc/passwd", "image").unwrap_err().message.contains("outside"));
        // Preloaded files are allowed where they are.
        assert!(c.host_path(root.path().join("model.gguf").to_str().unwrap(), "mmproj").is_ok());
    }

    #[test]
    fn symbolic_links_cannot_lead_outside() {
        let (root, c) = setup();
        std::os::unix::fs::symlink(root.path().join("secret"), root.path().join("inside/link")).unwrap();
        assert!(c.host_path("/data/link", "image").unwrap_err().message.contains("outside"));
    }

    #[test]
    fn dir_flags_are_read_up_to_the_wasm_file() {
        let args: Vec<String> = ["wasmedge", "--dir", ".:.", "--dir=/m:/srv/m", "app.wasm", "--dir", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let dirs = dirs_from(&args);
        assert_eq!(&dirs[..2], &[".:.", "/m:/srv/m"]);
    }
}
