//! `export --format shell` quoting: any value without NUL, quoted and parsed back by an
//! independent POSIX word parser, gives the same text.
#![no_main]

use kms_env::cli::ExportFormat;
use kms_env::export::render;
use kms_env::value::Value;
use kms_env::secret::Secret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains('\0') {
        return;
    }
    let vars = vec![("NAME".into(), Value::Secret(Secret::new(data.to_vec())))];
    let (out, _) = render(&vars, ExportFormat::Shell).expect("renders");
    let line = std::str::from_utf8(out.expose()).expect("UTF-8 in, UTF-8 out");
    let words = shell_words::split(line.strip_suffix('\n').expect("one line")).expect("parses");
    assert_eq!(words, vec!["export".to_owned(), format!("NAME={text}")]);
});
