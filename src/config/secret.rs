//! Secrets given inline, as `<key>_file` or as `<key>_env`.
//!
//! An empty secret is refused wherever it comes from (an empty Kubernetes Secret key, an
//! environment variable set to "", a file holding only a newline): it would let anyone who
//! knows a user name log in, and PostgreSQL refuses empty passwords too.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use toml::de::{DeTable, DeValue};
use zeroize::Zeroizing;

use super::load::{invalid, resolve_path};
use super::{ConfigError, KeyLines};

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

/// Keys naming a file that holds a secret or a private key.
const SECRET_FILE_KEYS: &[&str] = &[
    "password_file",
    "token_file",
    "client_secret_file",
    "admin_token_file",
    "tls_key_file",
];

/// Warnings for secret and key files others may read, following PostgreSQL's rule for its
/// server key: a file owned by lakepool's user must give no access to group or others (0600);
/// a root-owned file may also be readable by its group (0640), as Kubernetes Secret volumes
/// with an `fsGroup` are.
pub(super) fn permission_warnings(doc: &DeTable<'_>, base: &Path, lines: &KeyLines) -> Vec<String> {
    let mut out = Vec::new();
    walk(doc, "", &mut |key, leaf, file| {
        if !SECRET_FILE_KEYS.contains(&leaf) {
            return;
        }
        let path = resolve_path(base, PathBuf::from(file));
        let Ok(meta) = std::fs::metadata(&path) else {
            return; // Reported by the load itself.
        };
        if let Some(mode) = too_open(&meta) {
            let line = lines
                .line_of(key)
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            out.push(format!(
                "{line}{key}: {} is readable by group or others (mode {mode:03o}); make it \
                 readable by lakepool's user only (chmod 600), or root-owned and at most \
                 group-readable (0640)",
                path.display()
            ));
        }
    });
    out
}

/// The permission bits when they are too open for a secret.
fn too_open(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o777;
    let allowed_beyond_owner = if meta.uid() == 0 { 0o040 } else { 0 };
    (mode & 0o077 & !allowed_beyond_owner != 0).then_some(mode)
}

/// Calls `f(dotted key, leaf key, value)` for every string value in the document.
fn walk(table: &DeTable<'_>, prefix: &str, f: &mut impl FnMut(&str, &str, &str)) {
    for (k, v) in table.iter() {
        let leaf = k.get_ref().as_ref();
        let key = if prefix.is_empty() {
            leaf.to_owned()
        } else {
            format!("{prefix}.{leaf}")
        };
        match v.get_ref() {
            DeValue::String(s) => f(&key, leaf, s),
            DeValue::Table(t) => walk(t, &key, f),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        walk(t, &format!("{key}[{i}]"), f);
                    }
                }
            }
            _ => {}
        }
    }
}
