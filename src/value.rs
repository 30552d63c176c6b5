//! The vocabulary every layer shares: a variable of the final environment ([`Value`], [`Vars`]),
//! the kernel's size limit for one environment string, and the KMS encryption context. Nothing
//! here does I/O; see ARCHITECTURE.md for where each type flows.

use crate::secret::Secret;
use std::collections::BTreeMap;
use std::ffi::OsString;

/// Linux's limit for one argument or environment string (`NAME=VALUE` and its NUL):
/// MAX_ARG_STRLEN, 32 pages of 4 KiB.
pub const MAX_ENV_STRING: usize = 32 * 4096;

/// A KMS encryption context (sorted, so equal contexts compare and hash equal).
pub type Context = BTreeMap<String, String>;

/// A variable of the final environment.
#[derive(Debug)]
pub enum Value {
    /// An untouched value.
    Plain(OsString),
    /// A resolved plaintext.
    Secret(Secret),
    /// A resolved plaintext for a `*_FILE` variable: written to a file before exec, the
    /// variable then holds the file's path (any bytes, NUL included).
    File(Secret),
}

impl Value {
    /// The bytes the application gets.
    pub fn bytes(&self) -> &[u8] {
        use std::os::unix::ffi::OsStrExt;
        match self {
            Value::Plain(v) => v.as_bytes(),
            Value::Secret(s) | Value::File(s) => s.expose(),
        }
    }
}

/// The suffix of a variable whose plaintext goes to a file.
pub const FILE_SUFFIX: &str = "_FILE";

/// The final environment, in the original order.
pub type Vars = Vec<(OsString, Value)>;
