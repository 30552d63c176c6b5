//! The original kms-env's env-file parser: never panics, and what it renders parses back to
//! the same file.
#![no_main]

use kms_env::envfile::EnvFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = EnvFile::parse(text) {
        let again = EnvFile::parse(&file.render()).expect("rendered files parse");
        assert_eq!(again, file);
    }
});
