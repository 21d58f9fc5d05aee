//! The Unix-domain socket local clients reach lakepool on: `<dir>/.s.PGSQL.<port>`, the name
//! libpq looks for (`psql -h <dir> -p <port>`), left by a crashed run replaced, the file
//! removed when lakepool stops.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// A bound Unix-domain socket; its file is removed when this is dropped.
#[derive(Debug)]
pub(crate) struct LocalSocket {
    /// Accepts the clients.
    pub(crate) listener: UnixListener,
    /// Where its file is.
    pub(crate) path: PathBuf,
}

/// The socket file's path for `port` in `dir`, as libpq names it.
pub(crate) fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// Binds the socket for `port` in `dir` with permissions `mode`. A socket file already there
/// is taken over when nothing answers on it (left by a run that did not stop cleanly); one a
/// live process accepts on, or a file that is not a socket, is an error.
pub(crate) fn bind(dir: &Path, port: u16, mode: u32) -> io::Result<LocalSocket> {
    let path = socket_path(dir, port);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process accepts connections on it",
                ));
            }
            std::fs::remove_file(&path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    let socket = LocalSocket { listener, path };
    std::fs::set_permissions(&socket.path, std::fs::Permissions::from_mode(mode))?;
    Ok(socket)
}

impl Drop for LocalSocket {
    fn drop(&mut self) {
        // Only our own file: another lakepool may have taken the name over since (after
        // finding this one's socket not answering).
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lakepool-unix-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn binds_with_the_mode_and_removes_the_file_when_dropped() {
        let d = dir("mode");
        let s = bind(&d, 6432, 0o770).unwrap();
        assert_eq!(s.path, d.join(".s.PGSQL.6432"));
        let meta = std::fs::metadata(&s.path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o770);
        drop(s);
        assert!(!d.join(".s.PGSQL.6432").exists());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let d = dir("stale");
        // A socket file nobody accepts on, as a killed run leaves it.
        let stale = std::os::unix::net::UnixListener::bind(socket_path(&d, 7000)).unwrap();
        drop(stale);
        let live = bind(&d, 7000, 0o777).expect("a stale socket file is taken over");
        let e = bind(&d, 7000, 0o777).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // The refused attempt left the live socket's file alone.
        assert!(live.path.exists());
        std::fs::write(socket_path(&d, 7001), b"not a socket").unwrap();
        let e = bind(&d, 7001, 0o777).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(
            socket_path(&d, 7001).exists(),
            "a regular file is never removed"
        );
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error() {
        let d = dir("missing").join("not-there");
        assert!(bind(&d, 6432, 0o777).is_err());
    }
}
