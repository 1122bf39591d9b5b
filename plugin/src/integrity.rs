//! sha256 pinning of models: a preload written `NAME:ENCODING:TARGET:PATH#sha256=HEX`, or a
//! `model-sha256` key in `load`'s config, makes the plugin hash the model before handing it
//! to a backend and refuse it (InvalidArgument) when the hash differs. Model formats carry no
//! checksums: a file damaged in transit or swapped on disk otherwise loads and runs.

use crate::error::{NnError, NnResult};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The suffix of a pinned preload path.
pub const PIN: &str = "#sha256=";

/// A sha256 as 64 lowercase hex digits, or why `text` is not one.
pub fn parse_hex(text: &str) -> Result<String, String> {
    let hex = text.trim().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(format!("'{text}' is not a sha256 (64 hex digits)"))
    }
}

/// Split `PATH#sha256=HEX` into the path and the pin; other paths come back whole.
pub fn split_pin(path: &str) -> Result<(&str, Option<String>), String> {
    match path.rsplit_once(PIN) {
        Some((p, hex)) => Ok((p, Some(parse_hex(hex)?))),
        None => Ok((path, None)),
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn compare(what: &str, actual: String, expected: &str) -> NnResult<()> {
    if actual == expected {
        log::debug!("{what}: sha256 {actual} as pinned");
        return Ok(());
    }
    Err(NnError::invalid_argument(format!(
        "{what} has sha256 {actual}, not the pinned {expected}: the file is damaged or not the model meant; \
         it was not loaded"
    )))
}

/// Hash a file and compare it with `expected` (lowercase hex).
pub fn verify_file(path: &Path, expected: &str) -> NnResult<()> {
    let what = format!("'{}'", path.display());
    let mut file = std::fs::File::open(path)
        .map_err(|e| NnError::invalid_argument(format!("{what} cannot be opened to check its sha256: {e}")))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| NnError::runtime(format!("cannot read {what}: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    compare(&what, hex(&hasher.finalize()), expected)
}

/// Compare model bytes with `expected`.
pub fn verify_bytes(bytes: &[u8], expected: &str) -> NnResult<()> {
    compare(&format!("the model of {} bytes", bytes.len()), hex(&Sha256::digest(bytes)), expected)
}

/// The `model-sha256` key of a load config, if the config has one.
pub fn pin_in_config(config: Option<&[u8]>) -> NnResult<Option<String>> {
    let Some(json) = config.filter(|c| !c.is_empty()) else { return Ok(None) };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(json) else {
        // The backend reports a config that is not a JSON object.
        return Ok(None);
    };
    match map.get("model-sha256") {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => parse_hex(s).map(Some).map_err(NnError::invalid_argument),
        Some(_) => Err(NnError::invalid_argument("model-sha256 must be a string of 64 hex digits")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn pins_are_split_from_paths_and_checked() {
        assert_eq!(split_pin("m/a.gguf").unwrap(), ("m/a.gguf", None));
        let spec = format!("m/a#b.gguf{PIN}{}", EMPTY.to_uppercase());
        let (p, pin) = split_pin(&spec).unwrap();
        assert_eq!((p, pin.as_deref()), ("m/a#b.gguf", Some(EMPTY)));
        assert!(split_pin("a.gguf#sha256=abc").is_err());
    }

    #[test]
    fn bytes_and_files_match_or_are_refused() {
        assert!(verify_bytes(b"", EMPTY).is_ok());
        let e = verify_bytes(b"x", EMPTY).unwrap_err();
        assert!(e.message.contains("not the pinned"), "{}", e.message);
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(verify_file(f.path(), EMPTY).is_ok());
        std::fs::write(f.path(), b"x").unwrap();
        assert!(verify_file(f.path(), EMPTY).is_err());
    }

    #[test]
    fn the_config_key_is_read() {
        assert_eq!(pin_in_config(None).unwrap(), None);
        assert_eq!(pin_in_config(Some(br#"{"ctx-size": 8}"#)).unwrap(), None);
        assert_eq!(
            pin_in_config(Some(format!(r#"{{"model-sha256": "{EMPTY}"}}"#).as_bytes())).unwrap().as_deref(),
            Some(EMPTY)
        );
        assert!(pin_in_config(Some(br#"{"model-sha256": 5}"#)).is_err());
        assert!(pin_in_config(Some(br#"{"model-sha256": "abc"}"#)).is_err());
    }
}
