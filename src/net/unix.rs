//! The Unix-domain socket local clients reach lakepool on: `<dir>/.s.PGSQL.<port>`, the name
//! libpq looks for (`psql -h <dir> -p <port>`). A file left by a crashed run is taken over;
//! `<dir>/.s.PGSQL.<port>.lock` keeps two lakepools from doing that at once; the socket file is
//! removed when lakepool stops.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::UnixListener;

/// Pending connections the socket queues (as on TCP listeners).
const BACKLOG: i32 = 1024;

/// A bound Unix-domain socket; its file is removed when this is dropped, if it is still ours.
#[derive(Debug)]
pub(crate) struct LocalSocket {
    /// Accepts the clients.
    pub(crate) listener: UnixListener,
    /// Where its file is.
    pub(crate) path: PathBuf,
    /// The file's device and inode once bound.
    id: (u64, u64),
    /// `<path>.lock`, locked while the socket lives: two lakepools never take the name over
    /// at the same time (PostgreSQL keeps `.s.PGSQL.<port>.lock` for the same reason). The
    /// lock file stays behind: removing it would let a third process lock a new one.
    _lock: File,
}

/// The socket file's path for `port` in `dir`, as libpq names it.
pub(crate) fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// Binds the socket for `port` in `dir` with permissions `mode`.
///
/// A socket file already there is taken over only when connecting to it is refused (left by a
/// run that did not stop cleanly). One that answers, one that cannot be probed (no permission,
/// say), or a file that is not a socket, is an error and stays. The mode is set before the
/// socket listens, so no client connects under wider permissions.
pub(crate) fn bind(dir: &Path, port: u16, mode: u32) -> io::Result<LocalSocket> {
    let path = socket_path(dir, port);
    let lock = lock(&path)?;
    take_over_stale(&path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(&path)?)?;
    let id = match set_mode(&path, mode) {
        Ok(id) => id,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    // From here on the file is ours: a failure below removes it (if it is still ours).
    let listen = || -> io::Result<UnixListener> {
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))
    };
    match listen() {
        Ok(listener) => Ok(LocalSocket {
            listener,
            path,
            id,
            _lock: lock,
        }),
        Err(e) => {
            remove_if_ours(&path, id);
            Err(e)
        }
    }
}

/// Opens and locks `<path>.lock`.
fn lock(path: &Path) -> io::Result<File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&name)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another lakepool holds its lock file",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Removes a socket file nobody accepts on; errors for anything else at `path`.
fn take_over_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    // Non-blocking: a live process with a full backlog answers EAGAIN instead of stalling
    // startup.
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Ok(()) => Err(in_use()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(in_use()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot tell whether the socket there is in use ({e}); not removing it"),
        )),
    }
}

fn in_use() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        "another process accepts connections on it",
    )
}

/// Gives the freshly bound file `mode`; its device and inode, checked to be a socket still.
fn set_mode(path: &Path, mode: u32) -> io::Result<(u64, u64)> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() || meta.permissions().mode() & 0o777 != mode {
        return Err(io::Error::other(
            "the socket file was replaced while it was being set up",
        ));
    }
    Ok((meta.dev(), meta.ino()))
}

/// Removes the file at `path` if it is still the one bound as `id`: another process may have
/// taken the name over since (after it vanished, say, to a temp-file cleaner).
fn remove_if_ours(path: &Path, id: (u64, u64)) {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && (meta.dev(), meta.ino()) == id
    {
        let _ = std::fs::remove_file(path);
    }
}

impl Drop for LocalSocket {
    fn drop(&mut self) {
        remove_if_ours(&self.path, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            let d =
                std::env::temp_dir().join(format!("lakepool-unix-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Self(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn binds_with_the_mode_and_removes_the_file_when_dropped() {
        let d = Dir::new("mode");
        let s = bind(&d.0, 6432, 0o770).unwrap();
        assert_eq!(s.path, d.0.join(".s.PGSQL.6432"));
        let meta = std::fs::metadata(&s.path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o770);
        std::os::unix::net::UnixStream::connect(&s.path).expect("it listens");
        drop(s);
        assert!(!d.0.join(".s.PGSQL.6432").exists());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let d = Dir::new("stale");
        // A socket file nobody accepts on, as a killed run leaves it.
        drop(std::os::unix::net::UnixListener::bind(socket_path(&d.0, 7000)).unwrap());
        let live = bind(&d.0, 7000, 0o777).expect("a stale socket file is taken over");
        // Another lakepool on the same name stops at the lock.
        let e = bind(&d.0, 7000, 0o777).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("lock"), "{e}");
        assert!(
            live.path.exists(),
            "the refused attempt left the live socket alone"
        );
        // Another program's live socket (no lock of ours) is found by connecting to it.
        let other = std::os::unix::net::UnixListener::bind(socket_path(&d.0, 7002)).unwrap();
        let e = bind(&d.0, 7002, 0o777).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("accepts connections"), "{e}");
        assert!(socket_path(&d.0, 7002).exists());
        drop(other);
        // A regular file is never removed.
        std::fs::write(socket_path(&d.0, 7001), b"not a socket").unwrap();
        let e = bind(&d.0, 7001, 0o777).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(socket_path(&d.0, 7001).exists());
    }

    #[tokio::test]
    async fn a_file_that_is_no_longer_ours_is_left_at_drop() {
        let d = Dir::new("ours");
        let s = bind(&d.0, 7100, 0o777).unwrap();
        // The file vanishes (a temp-file cleaner) and another process binds the name.
        std::fs::remove_file(&s.path).unwrap();
        let _other = std::os::unix::net::UnixListener::bind(&s.path).unwrap();
        let path = s.path.clone();
        drop(s);
        assert!(path.exists(), "the other process's socket stays");
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error() {
        let d = Dir::new("missing");
        assert!(bind(&d.0.join("not-there"), 6432, 0o777).is_err());
    }
}
