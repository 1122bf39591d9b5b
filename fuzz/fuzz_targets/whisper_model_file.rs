//! The walk over a whisper.cpp model file that runs before whisper.cpp sees it (whisper.cpp
//! aborts on truncated files): any bytes give Ok or a reason, never a panic, a huge
//! allocation or a long loop. A file it accepts has the magic and at least one tensor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmedge_nn_plugin::backend::whisper::{model_file, MAGIC};

fuzz_target!(|data: &[u8]| {
    if model_file::check(std::io::Cursor::new(data)).is_ok() {
        assert!(data.starts_with(MAGIC));
        // magic + 11 hyper-parameters + mel counts + vocabulary count + one tensor header
        assert!(data.len() >= 4 * 15 + 12);
    }
});
