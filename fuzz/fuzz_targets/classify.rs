//! Reference classification: any bytes, with or without a data key in the environment, must
//! classify or fail cleanly, and a failure must never repeat the value (a marker appended to
//! every input must never show up in the message).
#![no_main]

use kms_env::reference::classify;
use libfuzzer_sys::fuzz_target;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

const MARKER: &[u8] = b"Zq9SECRETv4L";

fuzz_target!(|data: &[u8]| {
    let Some((&flag, value)) = data.split_first() else {
        return;
    };
    let mut value = value.to_vec();
    value.extend_from_slice(MARKER);
    if let Err(reason) = classify(OsStr::from_bytes(&value), flag & 1 == 1) {
        assert!(!reason.detail.as_bytes().windows(MARKER.len()).any(|w| w == MARKER));
    }
});
