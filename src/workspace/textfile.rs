//! Reading the small text files unified auth looks at (`~/.databrickscfg`, `.netrc`), with
//! errors that never quote the file's contents (they hold secrets).

use std::path::{Path, PathBuf};

/// Reading or parsing a credentials file failed. Never contains a value from the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    /// The file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not UTF-8.
    #[error("{} is not valid UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A line does not follow the file's grammar.
    #[error("{}:{line}: {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the line's text, which may hold a secret).
        reason: &'static str,
    },
}

/// The file's text, or None when it does not exist (an absent optional file is not an error).
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FileError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| FileError::NotUtf8 {
            path: path.to_path_buf(),
        })
}
