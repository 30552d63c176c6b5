//! Secret bytes: the only type that carries a plaintext.
//!
//! `Secret` zeroizes its buffer on drop and never shows its content: `Debug` prints a fixed
//! placeholder and there is deliberately no `Display`. Code that needs the bytes asks for them
//! with [`Secret::expose`], which makes every read of a plaintext easy to find.

use std::fmt;
use zeroize::Zeroizing;

/// Plaintext bytes, redacted in `Debug`, zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of plaintext bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// The plaintext. Callers must not log or print it, except `decrypt`'s stdout.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether the plaintext holds a NUL byte, which no environment variable can carry.
    pub fn contains_nul(&self) -> bool {
        self.0.contains(&0)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s.into_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::new(b"hunter2".to_vec());
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn nul_is_detected() {
        assert!(Secret::new(b"a\0b".to_vec()).contains_nul());
        assert!(!Secret::new(b"ab".to_vec()).contains_nul());
    }
}
