//! Secrets given inline, as `<key>_file` or as `<key>_env`.
//!
//! An empty secret is refused wherever it comes from (an empty Kubernetes Secret key, an
//! environment variable set to "", a file holding only a newline): it would let anyone who
//! knows a user name log in, and PostgreSQL refuses empty passwords too.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::ConfigError;
use super::load::{invalid, resolve_path};

/// Resolves a secret given inline, as `<key>_file` or as `<key>_env`: at most one of them.
/// Errors name the form used and never the value.
pub(crate) fn secret(
    key: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    env: Option<String>,
    base: &Path,
) -> Result<Option<SecretString>, ConfigError> {
    let (value, form) = match (inline, file, env) {
        (None, None, None) => return Ok(None),
        (Some(v), None, None) => (Zeroizing::new(v), (key.to_owned(), "is empty".to_owned())),
        (None, Some(f), None) => {
            let path = resolve_path(base, f);
            let text = std::fs::read_to_string(&path)
                .map(Zeroizing::new)
                .map_err(|e| {
                    invalid(
                        format!("{key}_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
            // Mounted secrets usually end with a newline that is not part of the secret.
            let trimmed = text.trim_end_matches(['\n', '\r']).to_owned();
            let problem = format!("{} is empty", path.display());
            (Zeroizing::new(trimmed), (format!("{key}_file"), problem))
        }
        (None, None, Some(var)) => match std::env::var(&var) {
            Ok(v) => {
                let problem = format!("environment variable {var} is empty");
                (Zeroizing::new(v), (format!("{key}_env"), problem))
            }
            Err(_) => {
                return Err(invalid(
                    format!("{key}_env"),
                    format!("environment variable {var} is not set"),
                ));
            }
        },
        _ => {
            return Err(invalid(
                key,
                format!("give only one of {key}, {key}_file and {key}_env"),
            ));
        }
    };
    if value.trim().is_empty() {
        let (form, problem) = form;
        return Err(invalid(
            form,
            format!("{problem} (or only whitespace): an empty secret is never accepted"),
        ));
    }
    Ok(Some(SecretString::from(value.as_str())))
}
