//! The dotenv parser: never panics on any text, and any value written by `write_pair` reads
//! back exactly.
#![no_main]

use kms_env::dotenv::{parse, write_pair};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse(text);
    let mut out = String::new();
    write_pair(&mut out, "KEY", text);
    let pairs = parse(&out).expect("written pairs parse");
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].value, text);
});
