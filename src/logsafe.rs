//! Client-supplied text in log lines and error messages.
//!
//! A user name, database name or `application_name` comes from the client's startup packet and
//! may hold any character but NUL. Written into a text-format log line as it is, a newline
//! would start a line of the client's making (a forged `client logged in user=admin`). Wrap it
//! in [`LogSafe`] wherever it is formatted: control characters (and the Unicode line and
//! paragraph separators) come out escaped, everything else unchanged.

use std::fmt::{self, Write};

/// Displays a string with control characters escaped (`\n`, `\r`, `\t`, `\u{1b}`…).
#[derive(Debug, Clone, Copy)]
pub struct LogSafe<'a>(pub &'a str);

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.contains(needs_escape) {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if needs_escape(c) => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(LogSafe("app_user").to_string(), "app_user");
        assert_eq!(LogSafe("zoë").to_string(), "zoë");
        assert_eq!(
            LogSafe("x\nINFO client logged in user=admin").to_string(),
            "x\\nINFO client logged in user=admin"
        );
        assert_eq!(LogSafe("a\r\tb").to_string(), "a\\r\\tb");
        assert_eq!(LogSafe("\u{1b}[31m").to_string(), "\\u{1b}[31m");
        assert_eq!(LogSafe("\u{85}\u{2028}").to_string(), "\\u{85}\\u{2028}");
    }
}
