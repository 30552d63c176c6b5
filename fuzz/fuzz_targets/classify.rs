//! Reference classification: any bytes, with or without a data key in the environment, must
//! classify or fail cleanly, and a failure must never repeat the value.
#![no_main]

use kms_env::reference::classify;
use libfuzzer_sys::fuzz_target;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

fuzz_target!(|data: &[u8]| {
    let Some((&flag, value)) = data.split_first() else {
        return;
    };
    if let Err(reason) = classify(OsStr::from_bytes(value), flag & 1 == 1) {
        if value.len() > 16 {
            let tail = String::from_utf8_lossy(&value[8..]);
            assert!(!reason.detail.contains(tail.as_ref()));
        }
    }
});
