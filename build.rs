//! Build script: the git commit lakepool is built from, as `LAKEPOOL_COMMIT` for `--version`,
//! the startup line, `SHOW VERSION` and `/metrics`. `LAKEPOOL_COMMIT` set in the build
//! environment wins (a Docker build: `--build-arg LAKEPOOL_COMMIT=$(git rev-parse --short=12
//! HEAD)`); without it and without git or a `.git` (the Docker build context has none) the
//! commit is `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LAKEPOOL_COMMIT");
    let from_env = std::env::var("LAKEPOOL_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let commit = from_env
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=LAKEPOOL_COMMIT={commit}");
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into()))
}

/// Runs git in the package directory; its trimmed output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The short commit of HEAD; asks cargo to rerun this script when HEAD moves (HEAD itself, the
/// branch it points to, packed refs), so a new commit shows in the next build.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = manifest_dir().join(Path::new(&path));
            // A path that does not exist would make cargo rerun this script on every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    Some(commit)
}
