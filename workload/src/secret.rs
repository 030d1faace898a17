//! [`Secret`]: a value that never prints. Passwords, tokens and DSNs live in it from the moment
//! they are read until the one place that needs the clear value calls [`Secret::expose`].

use std::fmt;

/// What every secret prints as, in `Debug` and `Display` alike (the redaction marker of the logs).
pub const REDACTED: &str = "***REDACTED***";

/// A value that must never be printed or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a clear value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The clear value, for the one call that needs it (a connection, a comparison).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_prints_redacted_in_debug_and_display() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(
            format!("{s:?} {s} {s:#?}"),
            "***REDACTED*** ***REDACTED*** ***REDACTED***"
        );
        assert_eq!(s.expose(), "hunter2");
    }
}
