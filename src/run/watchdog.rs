//! A watchdog for the process group of an `exec` child, so that everything the child started
//! dies with orchc, even when orchc is killed with SIGKILL and can clean up nothing itself.
//!
//! The kernel kills the child when orchc dies (`PR_SET_PDEATHSIG`, see `eval::own_group`), but
//! not the child's own children. So, for each `exec`, orchc starts itself again as
//! `orchc __watch-group PGID`, in a process group of its own (a Ctrl-C on the terminal does not
//! reach it), with a socket on its stdin. When the child is done, orchc writes one byte and the
//! watchdog leaves the group alone: what the child left running on purpose is its own. When the
//! socket closes without that byte, orchc died or gave up on the child (a timeout), and the watchdog
//! kills the group.

use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The orchc binary to start as a watchdog; unset in programs that only link the library (tests,
/// embedders), where an `exec` child's children are killed on timeouts but not on a crash.
static ORCHC: OnceLock<PathBuf> = OnceLock::new();

/// Called by the `orchc` binary: `exec` children get a watchdog from now on.
pub fn enable() {
    // /proc/self/exe still names this binary after it was replaced or deleted (an upgrade).
    let me = if cfg!(target_os = "linux") { Ok(PathBuf::from("/proc/self/exe")) } else { std::env::current_exe() };
    if let Ok(me) = me {
        let _ = ORCHC.set(me);
    }
}

/// `orchc __watch-group PGID`: waits for the release byte or the end of stdin.
pub fn main(pgid: i32) -> i32 {
    let mut byte = [0u8; 1];
    let released = loop {
        match std::io::stdin().read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => break matches!(read, Ok(1)),
        }
    };
    if !released && pgid > 0 {
        // SAFETY: a plain kill(2) of the group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    0
}

/// A started watchdog. Dropped without `release`, it kills the group.
pub struct Watch {
    /// orchc's end of the socket that is the watchdog's stdin.
    line: std::os::unix::net::UnixStream,
}

impl Watch {
    /// Starts a watchdog for the group `pgid`, or none when orchc is not the binary or it cannot be
    /// started (the step goes on: the child itself still dies with orchc).
    pub fn start(pgid: u32) -> Option<Watch> {
        use std::os::unix::process::CommandExt;
        let orchc = ORCHC.get()?;
        // A socket rather than a pipe: the release byte is sent with MSG_NOSIGNAL, so that a
        // watchdog that is already gone (killed by someone) cannot end orchc with SIGPIPE.
        let (line, theirs) = std::os::unix::net::UnixStream::pair().ok()?;
        let mut cmd = std::process::Command::new(orchc);
        cmd.arg("__watch-group").arg(pgid.to_string());
        cmd.stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // Named as orchc in `ps`, not /proc/self/exe.
        cmd.arg0("orchc").process_group(0);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!("cannot start the exec watchdog {}: {e}", orchc.display());
                return None;
            }
        };
        // Reaps the watchdog when it ends, so that it never lingers as a zombie (it is reaped
        // when orchc ends if no thread can be had).
        let _ = std::thread::Builder::new().name("orch-watch-reaper".into()).spawn(move || child.wait());
        Some(Watch { line })
    }

    /// The child is done: the watchdog ends and leaves the group alone.
    pub fn release(self) {
        use std::os::fd::AsRawFd;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let flags = libc::MSG_NOSIGNAL;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let flags = 0;
        // SAFETY: a send(2) of one byte from a live buffer on a socket this value owns.
        unsafe {
            libc::send(self.line.as_raw_fd(), [1u8].as_ptr().cast(), 1, flags);
        }
    }
}
