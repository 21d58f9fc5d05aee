//! Runs an external program (the Databricks CLI) to its end within a time limit, and collects
//! what it printed.
//!
//! Not `tokio::process`: with that feature every runtime's driver reaps orphans at each park,
//! taking two process-wide mutexes, so every worker would touch shared cache lines on every
//! turn of its loop, for a program lakepool runs about once an hour. Here the child's pipes
//! are read on the runtime (a dropped run closes them), and a blocking thread waits for the
//! child and kills it when the run ends early.
//!
//! The program runs in a process group of its own. When the run times out or is dropped, the
//! whole group is killed: a wrapper script's children go with it, not only the process
//! lakepool started. When the program exits but its group keeps the output pipes open for
//! more than a second, the group is killed too. Processes that leave the group (`setsid`) are
//! out of reach, and nothing is killed when lakepool itself is killed.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group, waitid};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;

/// Most bytes kept of each output stream; the rest is read and dropped, so the program never
/// blocks on a full pipe.
const MAX_OUTPUT: usize = 1 << 20;
/// Longest pause between two checks for the program's exit.
const MAX_POLL: Duration = Duration::from_millis(20);

/// What a program that ran to its end left.
#[derive(Debug)]
pub(super) struct Output {
    pub(super) status: ExitStatus,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
}

/// Why a program gave no [`Output`].
#[derive(Debug, thiserror::Error)]
pub(super) enum RunError {
    #[error("cannot run {path}: {source}")]
    Spawn { path: String, source: io::Error },
    #[error("{path} did not finish within {} s", limit.as_secs())]
    TimedOut { path: String, limit: Duration },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Runs `path` with `args` (standard input empty) until it exits, or kills it once `limit`
/// has passed. Dropping the future also kills it.
pub(super) async fn run(path: &Path, args: &[String], limit: Duration) -> Result<Output, RunError> {
    let mut child = Command::new(path)
        .args(args)
        // Its own process group, so that it can be killed with everything it started.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn {
            path: path.display().to_string(),
            source,
        })?;
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    // From here on the waiter owns the child: it is reaped or killed whatever happens below.
    let (waiter, stop) = Waiter::start(child);
    let finished = async {
        let (out, err) = tokio::try_join!(read_all(stdout), read_all(stderr))?;
        stop.output_read();
        let status = waiter.status().await?;
        Ok::<_, io::Error>(Output {
            status,
            stdout: out,
            stderr: err,
        })
    };
    let result = tokio::time::timeout(limit, finished).await;
    drop(stop);
    match result {
        Ok(r) => Ok(r?),
        Err(_) => Err(RunError::TimedOut {
            path: path.display().to_string(),
            limit,
        }),
    }
}

/// Reads a pipe to its end, keeping at most [`MAX_OUTPUT`] bytes.
async fn read_all(fd: Option<OwnedFd>) -> io::Result<Vec<u8>> {
    let Some(fd) = fd else {
        return Ok(Vec::new());
    };
    let mut pipe = pipe::Receiver::from_owned_fd(fd)?;
    let mut kept = Vec::new();
    (&mut pipe)
        .take(MAX_OUTPUT as u64)
        .read_to_end(&mut kept)
        .await?;
    drain(&mut pipe).await?;
    Ok(kept)
}

/// Reads and drops the rest of a stream.
async fn drain(mut r: impl AsyncRead + Unpin) -> io::Result<()> {
    let mut scratch = [0u8; 4096];
    while r.read(&mut scratch).await? > 0 {}
    Ok(())
}

/// Waits for a child on a blocking thread.
struct Waiter(tokio::task::JoinHandle<io::Result<ExitStatus>>);

/// How long an exited program's group may keep its output pipes open before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// What the run tells the waiter.
#[derive(Default)]
struct Signals {
    /// Both output pipes reached their end.
    output_read: AtomicBool,
    /// The run is over (done, timed out or dropped).
    stopped: AtomicBool,
}

/// Tells the waiter the run is over when dropped: the child's process group is killed unless
/// the child exited and its output was read.
struct Stop(Arc<Signals>);

impl Stop {
    /// Both output pipes reached their end: an exited child is reaped without a kill.
    fn output_read(&self) {
        self.0.output_read.store(true, Ordering::Relaxed);
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Relaxed);
    }
}

impl Waiter {
    fn start(mut child: Child) -> (Self, Stop) {
        let signals = Arc::new(Signals::default());
        let told = Arc::clone(&signals);
        // Polls rather than blocking in wait(): the thread must see `stopped` to kill the
        // child, and only the thread that owns it may (a pid signalled after its reaping could
        // be another process's). The child's exit is seen without reaping it (WNOWAIT): until
        // this thread reaps it, its pid still names its process group, so the group can be
        // killed safely after the child exited too.
        let handle = tokio::task::spawn_blocking(move || {
            let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else {
                // Not reached (a child's pid is positive); waiting is still correct.
                return child.wait();
            };
            let kill_group_and_reap = |child: &mut Child| {
                // A group already empty is fine.
                let _ = kill_process_group(pid, Signal::KILL);
                child.wait()
            };
            let mut exited_at = None;
            let mut pause = Duration::from_millis(1);
            loop {
                // An error (ECHILD: the child is not ours to wait for any more) ends the
                // thread without a kill, as `try_wait` did: the group may not be the child's.
                if exited_at.is_none()
                    && waitid(
                        WaitId::Pid(pid),
                        WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
                    )?
                    .is_some()
                {
                    exited_at = Some(std::time::Instant::now());
                }
                if exited_at.is_some() && told.output_read.load(Ordering::Relaxed) {
                    // Done, even if the run stopped meanwhile: what it started and left
                    // running without its pipes (a detached helper) is not lakepool's to kill.
                    return child.wait();
                }
                if told.stopped.load(Ordering::Relaxed) {
                    // Timed out or dropped: the program and everything in its group.
                    return kill_group_and_reap(&mut child);
                }
                if let Some(at) = exited_at
                    && at.elapsed() >= EXIT_GRACE
                {
                    // Exited, but its group still holds the output pipes open (a wrapper's
                    // leftover): the run would wait for its limit.
                    return kill_group_and_reap(&mut child);
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_POLL);
            }
        });
        (Self(handle), Stop(signals))
    }

    async fn status(self) -> io::Result<ExitStatus> {
        self.0.await.map_err(io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(script: &str) -> (std::path::PathBuf, Vec<String>) {
        ("/bin/sh".into(), vec!["-c".to_owned(), script.to_owned()])
    }

    #[tokio::test]
    async fn output_and_status_are_collected() {
        let (p, a) = sh("printf out; printf err >&2; exit 3");
        let out = run(&p, &a, Duration::from_secs(10)).await.unwrap();
        assert_eq!(out.stdout, b"out");
        assert_eq!(out.stderr, b"err");
        assert_eq!(out.status.code(), Some(3));
    }

    #[tokio::test]
    async fn output_past_the_cap_is_dropped_without_blocking_the_program() {
        // 3 MiB on stdout: more than a pipe holds and more than is kept.
        let (p, a) = sh("head -c 3145728 /dev/zero; echo done >&2");
        let out = run(&p, &a, Duration::from_secs(20)).await.unwrap();
        assert_eq!(out.stdout.len(), MAX_OUTPUT);
        assert_eq!(out.stderr, b"done\n");
        assert!(out.status.success());
    }

    /// A shell that writes its pid (to a temporary name, moved into place, so a reader never
    /// sees half of it) and then becomes a 30 s sleep.
    fn sleeper(dir: &Path) -> (std::path::PathBuf, Vec<String>, std::path::PathBuf) {
        let mark = dir.join("pid");
        let (p, a) = sh(&format!(
            "echo $$ > {m}.tmp && mv {m}.tmp {m} && exec sleep 30",
            m = mark.display()
        ));
        (p, a, mark)
    }

    /// A shell that starts `background` in the background, writes its pid (as [`sleeper`]
    /// does), then runs `then`.
    fn with_background(
        dir: &Path,
        background: &str,
        then: &str,
    ) -> (std::path::PathBuf, Vec<String>, std::path::PathBuf) {
        let mark = dir.join("pid");
        let (p, a) = sh(&format!(
            "{background} & echo $! > {m}.tmp && mv {m}.tmp {m}; {then}",
            m = mark.display()
        ));
        (p, a, mark)
    }

    /// Drops `run` once the program `mark` names is up (however slow the machine is to start
    /// it), long before the run's own limit.
    async fn drop_once_up(run: impl Future<Output = Result<Output, RunError>>, mark: &Path) {
        tokio::select! {
            r = run => panic!("the run ended by itself: {r:?}"),
            _ = pid_in(mark) => {}
        }
    }

    /// The pid the program wrote to `mark`, once it has.
    async fn pid_in(mark: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(pid) = std::fs::read_to_string(mark) {
                let pid = pid.trim().to_owned();
                assert!(!pid.is_empty());
                return pid;
            }
            if Instant::now() > deadline {
                panic!("the program never wrote its pid");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether process `pid` runs (a zombie does not: an orphan whose reaper is slow, or a
    /// container's PID 1 that reaps nothing, keeps the /proc entry of a killed process).
    fn running(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            // The state follows the command name's closing parenthesis.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X']))
        })
    }

    /// Waits until the program `mark` names has written its pid, then until it no longer
    /// runs: it was killed.
    async fn gone(mark: &Path) -> bool {
        let pid = pid_in(mark).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while running(&pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        !running(&pid)
    }

    #[tokio::test]
    async fn a_program_over_its_limit_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let (p, a, mark) = sleeper(dir.path());
        let started = Instant::now();
        // Long enough for the shell to start and write its pid on a loaded machine (killed
        // before that, it never writes it and the test fails in `gone`).
        let err = run(&p, &a, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, RunError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(gone(&mark).await, "the program still runs");
    }

    #[tokio::test]
    async fn a_dropped_run_kills_its_program() {
        let dir = tempfile::tempdir().unwrap();
        let (p, a, mark) = sleeper(dir.path());
        drop_once_up(run(&p, &a, Duration::from_secs(60)), &mark).await;
        assert!(gone(&mark).await, "the program still runs");
    }

    /// A wrapper script whose program runs as its child: when the run ends early, both are
    /// killed, not only the wrapper lakepool started.
    #[tokio::test]
    async fn a_wrappers_children_are_killed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (p, a, mark) = with_background(dir.path(), "sleep 30", "wait");
        drop_once_up(run(&p, &a, Duration::from_secs(60)), &mark).await;
        assert!(gone(&mark).await, "the wrapper's child still runs");
    }

    /// A program that exits and leaves a process behind holding its output: the run ends
    /// about a second after the program does (the leftover is killed, closing the pipes),
    /// not at the limit.
    #[tokio::test]
    async fn what_a_program_leaves_holding_its_output_is_killed_when_it_exits() {
        let dir = tempfile::tempdir().unwrap();
        let (p, a, mark) = with_background(dir.path(), "sleep 30", "printf token");
        let started = Instant::now();
        let out = run(&p, &a, Duration::from_secs(30)).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the run waited for the leftover"
        );
        assert_eq!(out.stdout, b"token");
        assert!(out.status.success());
        assert!(gone(&mark).await, "the leftover still runs");
    }

    /// A helper the program starts detached from its output (a telemetry uploader, say) is
    /// not killed when the program exits normally.
    #[tokio::test]
    async fn a_detached_helper_outlives_a_normal_exit() {
        let dir = tempfile::tempdir().unwrap();
        let background = "sleep 30 </dev/null >/dev/null 2>&1";
        let (p, a, mark) = with_background(dir.path(), background, "printf token");
        let out = run(&p, &a, Duration::from_secs(30)).await.unwrap();
        assert_eq!(out.stdout, b"token");
        let pid = pid_in(&mark).await;
        // Past the grace an exited program's group gets to close its pipes.
        tokio::time::sleep(EXIT_GRACE + Duration::from_millis(500)).await;
        let alive = running(&pid);
        let _ = std::process::Command::new("kill").arg(&pid).status();
        assert!(alive, "the detached helper was killed");
    }

    #[tokio::test]
    async fn a_missing_program_is_reported() {
        let err = run(
            Path::new("/nonexistent/databricks"),
            &[],
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RunError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/databricks"));
    }
}
