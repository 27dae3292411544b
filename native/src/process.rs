//! Replacing the running process with another program (`execv`), for the
//! `vvm start` launcher: some of Node's settings (`--v8-pool-size`, the number
//! of V8's helper threads) exist only as command-line flags read at start-up,
//! so the server restarts itself in place with them. In place, not as a child:
//! the process keeps its pid, its open standard streams and its parent, so a
//! supervisor's signals (SIGTERM, SIGKILL) reach the server itself. Node 20 has
//! no `process.execve` (it came in Node 23.11).

use napi::{Error, Result};
use napi_derive::napi;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Replaces this process with `program` run with `args` (not including the
/// program name), inheriting the environment and open standard streams. It does
/// not return when it works; on failure (no such file, not executable) the
/// process is unchanged and the error says why.
#[napi]
pub fn exec_replace(program: String, args: Vec<String>) -> Result<()> {
  // Node marks its standard streams close-on-exec: inherited as they are, the
  // new program would start without them. Each is handed over as a copy,
  // which `exec` moves onto 0, 1 and 2 without that mark. `exec` also resets
  // the signal mask and SIGPIPE's disposition, as a shell would start it.
  let err = Command::new(&program)
    .args(&args)
    .stdin(stream(std::io::stdin().as_fd()))
    .stdout(stream(std::io::stdout().as_fd()))
    .stderr(stream(std::io::stderr().as_fd()))
    .exec();
  Err(Error::from_reason(format!("exec {program}: {err}")))
}

/// A copy of an open stream for the new program; a stream that is not open
/// (nothing to copy) stays as it is.
fn stream(fd: BorrowedFd<'_>) -> Stdio {
  fd.try_clone_to_owned().map_or_else(|_| Stdio::inherit(), Stdio::from)
}
