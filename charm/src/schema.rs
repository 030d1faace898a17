//! Running `livepatch-schema-tool` in the workload container through Pebble
//! exec (livepatch-server.md §14.3). The DSN travels in the exec's
//! environment (`LP_DATABASE_CONNECTION_STRING`), never on the command line,
//! so it appears in no process list and no Pebble change. Whatever the tool
//! prints is redacted before the charm shows or logs it.

use std::time::Duration;

use ops::pebble::{self, Client, ExecOptions};

use crate::config::Sensitive;
use crate::redact;

/// The tool inside the rock.
pub const TOOL: &str = "/usr/local/bin/livepatch-schema-tool";
/// The target the server's schema lives in.
pub const TARGET: &str = "livepatchdb";
/// How long one run may take: migrations of a large database can be slow.
pub const TIMEOUT: Duration = Duration::from_secs(600);

/// What one invocation said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0; the tool's output line.
    Ok(String),
    /// `check` exited 2: migrations pending.
    Pending(String),
    /// Any other exit; the tool's message, redacted.
    Failed(String),
    /// Pebble could not be reached.
    Unreachable,
}

/// Runs `livepatch-schema-tool <command> --target livepatchdb`.
pub fn run(container: &Client, command: &str, dsn: &Sensitive) -> Outcome {
    let options = ExecOptions::new([TOOL, command, "--target", TARGET])
        .env("LP_DATABASE_CONNECTION_STRING", dsn.expose())
        .timeout(TIMEOUT);
    let clean =
        |bytes: &[u8]| redact::redact(String::from_utf8_lossy(bytes).trim(), &[dsn.expose()]);
    match container.exec(&options) {
        Ok(out) => Outcome::Ok(clean(&out.stdout)),
        Err(pebble::Error::Exec {
            code: 2, stdout, ..
        }) if command == "check" => Outcome::Pending(clean(&stdout)),
        Err(pebble::Error::Exec {
            code,
            stdout,
            stderr,
            ..
        }) => {
            let message = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
                clean(&stderr)
            } else {
                clean(&stdout)
            };
            let message = message
                .strip_prefix("Error: ")
                .unwrap_or(&message)
                .to_string();
            Outcome::Failed(if message.is_empty() {
                format!("{command} exited with code {code}")
            } else {
                message
            })
        }
        Err(e) if e.is_connection() => Outcome::Unreachable,
        Err(e) => Outcome::Failed(redact::redact(&e.to_string(), &[dsn.expose()])),
    }
}

/// The schema version named in the tool's output (`… (version 7)` or
/// `… (3 -> 7)`), if any.
pub fn version_in(output: &str) -> Option<String> {
    if let Some(rest) = output.split("version ").nth(1) {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            return Some(digits);
        }
    }
    let after = output.split("-> ").nth(1)?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_tools_messages() {
        let check = |text: &str, expected: Option<&str>| {
            assert_eq!(version_in(text).as_deref(), expected, "{text}")
        };
        check("schema is up to date (version 7)", Some("7"));
        check("migrations pending (3 -> 7)", Some("7"));
        check(
            "database not initialized: migrations pending (0 -> 12)",
            Some("12"),
        );
        check("done", None);
    }
}
