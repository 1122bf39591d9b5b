//! What a native library prints to stderr during one call, captured: some of llama.cpp's
//! messages (its grammar parser's, for one) go straight to `fprintf(stderr, ...)` rather than
//! through its log callback, and they are the only place that says what was wrong.
//!
//! For the duration of the call, file descriptor 2 points at an in-memory file; then it is
//! restored and whatever was written is returned. Other threads' stderr output in that window
//! is captured too, so it is written back to the real stderr afterwards: delayed, never lost.
//! Captures are serialised. Only for short calls that are known to print.

use std::sync::Mutex;

static CAPTURE: Mutex<()> = Mutex::new(());

/// Run `f`, returning its result and what was written to stderr meanwhile (lossy UTF-8).
/// When stderr cannot be redirected, `f` still runs and nothing is captured.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, String) {
    let _one_at_a_time = CAPTURE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(redirect) = Redirect::start() else {
        return (f(), String::new());
    };
    let result = f();
    (result, redirect.finish())
}

struct Redirect {
    saved: libc::c_int,
    file: libc::c_int,
}

impl Redirect {
    fn start() -> Option<Self> {
        // SAFETY: plain descriptor calls; every descriptor made here is closed again (finish).
        unsafe {
            libc::fflush(std::ptr::null_mut());
            let file = libc::memfd_create(c"wasmedge-nn-stderr".as_ptr(), libc::MFD_CLOEXEC);
            if file < 0 {
                return None;
            }
            let saved = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3);
            if saved < 0 || libc::dup2(file, 2) < 0 {
                if saved >= 0 {
                    libc::close(saved);
                }
                libc::close(file);
                return None;
            }
            Some(Self { saved, file })
        }
    }

    /// Point stderr back at where it was (also when the call panicked: see Drop).
    fn restore(&mut self) {
        if self.saved < 0 {
            return;
        }
        // SAFETY: `saved` is an open descriptor owned by this value, closed once.
        unsafe {
            libc::fflush(std::ptr::null_mut());
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
        self.saved = -1;
    }

    fn finish(mut self) -> String {
        self.restore();
        let mut bytes = Vec::new();
        // SAFETY: `file` is an open descriptor owned by this value; reads go into a buffer of
        // the length given.
        unsafe {
            libc::lseek(self.file, 0, libc::SEEK_SET);
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::read(self.file, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                bytes.extend_from_slice(&buf[..n as usize]);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        self.restore();
        // SAFETY: `file` is owned by this value and closed only here.
        unsafe { libc::close(self.file) };
    }
}

/// Write captured text back to the real stderr (what other threads printed meanwhile).
pub fn pass_on(text: &str) {
    if !text.is_empty() {
        use std::io::Write;
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_what_native_code_prints_and_restores_stderr() {
        let (value, text) = capture(|| {
            // SAFETY: writes 7 bytes of a 7-byte literal to descriptor 2.
            unsafe { libc::write(2, b"from C\n".as_ptr().cast(), 7) };
            42
        });
        assert_eq!(value, 42);
        assert_eq!(text, "from C\n");
        let (_, again) = capture(|| ());
        assert_eq!(again, "");
    }
}
