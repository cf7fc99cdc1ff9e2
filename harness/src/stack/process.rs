//! Child processes that cannot outlive the harness: each runs in its own process group, gets
//! SIGTERM when the harness dies (PR_SET_PDEATHSIG), logs stdout+stderr to a file, and is
//! terminated (SIGTERM to the group, then SIGKILL after a deadline) when its guard drops.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Sender, SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long a process gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Poll interval while waiting for an exit.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// A running child process and its log file. Dropping it stops the whole process group.
pub struct ChildProcess {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
    /// Length of the log file before this process started, so start-up errors of this run can be
    /// told apart from earlier runs appending to the same file.
    log_start: u64,
    stopped: bool,
}

impl std::fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildProcess")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("log", &self.log)
            .finish()
    }
}

type SpawnRequest = (Command, SyncSender<io::Result<Child>>);

/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. Test
/// threads and tokio's blocking threads come and go, so every child is forked from one thread
/// that lives as long as the process.
fn spawner() -> &'static Mutex<Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
        // If the thread cannot start, requests fail below with a clear error.
        let _ = std::thread::Builder::new()
            .name("mail-oidc-spawner".into())
            .spawn(move || {
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            });
        Mutex::new(tx)
    })
}

fn spawn_on_spawner_thread(cmd: Command) -> io::Result<Child> {
    let (reply_tx, reply_rx) = sync_channel(1);
    let sent = spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx));
    if sent.is_err() {
        return Err(io::Error::other("the process spawner thread is gone"));
    }
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the process spawner thread did not answer"))?
}

impl ChildProcess {
    /// Starts `cmd` with stdin from /dev/null and stdout+stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log file {}", log.display()))?;
        writeln!(file, "=== mail-oidc-harness: starting {name}: {cmd:?}")?;
        let log_start = file.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = file.try_clone().context("cloning log file handle")?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(stderr));
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls (setpgid, prctl, getppid); it allocates nothing.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                // Own process group: Drop signals the group (Starman's workers included), and a
                // terminal's Ctrl-C reaches only the harness, which then stops everything.
                if libc::setpgid(0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGTERM as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The harness died between fork and prctl: the signal will never come.
                if libc::getppid() != parent {
                    return Err(io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
        let child = spawn_on_spawner_thread(cmd).with_context(|| format!("starting {name}"))?;
        let pid = child.id();
        tracing::debug!(name, pid, log = %log.display(), "process started");
        Ok(Self {
            name: name.to_string(),
            child,
            pid,
            log: log.to_path_buf(),
            log_start,
            stopped: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has exited (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Fails with the exit status and the log of this run if the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} (pid {}) exited with {status} during start-up; its log ({}):\n{}",
                self.name,
                self.pid,
                self.log.display(),
                tail(&self.log_of_this_run(), 40)
            ),
        }
    }

    /// What this run wrote to the log so far.
    pub fn log_of_this_run(&self) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(self.log_start).unwrap_or(0).min(all.len());
        String::from_utf8_lossy(&all[start..]).into_owned()
    }

    /// SIGTERM to the process group, wait up to [`TERM_GRACE`], then SIGKILL. Idempotent.
    pub fn terminate(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let Ok(pgid) = libc::pid_t::try_from(self.pid) else {
            return;
        };
        // The group id is the child's pid (setpgid(0, 0)): a group this harness created.
        // SAFETY: plain syscall; a negative pid addresses the process group.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + TERM_GRACE;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    tracing::debug!(name = %self.name, pid = self.pid, %status, "process stopped");
                    // Leftover group members (e.g. orphaned workers) get the hard stop too.
                    // SAFETY: as above.
                    unsafe {
                        libc::kill(-pgid, libc::SIGKILL);
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(EXIT_POLL),
                _ => break,
            }
        }
        tracing::warn!(name = %self.name, pid = self.pid, "no exit after SIGTERM; sending SIGKILL");
        // SAFETY: as above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// The last `lines` lines of a file ("" when unreadable).
pub fn tail_file(path: &Path, lines: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    tail(&String::from_utf8_lossy(&bytes), lines)
}

/// Resolves a program from PATH, then the sbin directories (slapd lives in /usr/sbin, which a
/// non-root PATH often lacks).
pub fn find_program(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("`{name}` not found in PATH or /usr/sbin (see scripts/install-deps.sh)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exists and is not a zombie (an orphan's zombie lingers when PID 1 does not reap).
    fn alive(pid: u32) -> bool {
        // SAFETY: signal 0 only checks existence.
        let exists = unsafe { libc::kill(pid as libc::pid_t, 0) == 0 };
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
            .unwrap_or(false);
        exists && !zombie
    }

    #[test]
    fn drop_stops_the_whole_group_and_keeps_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("sh.log");
        let mut cmd = Command::new("sh");
        // A grandchild in the same group, and a parent that ignores nothing.
        cmd.args(["-c", "echo started; sleep 30 & echo $! > grandchild; wait"]);
        cmd.current_dir(dir.path());
        let mut p = ChildProcess::spawn("sh", cmd, &log).expect("spawn");
        let pid = p.pid();
        let grandchild_file = dir.path().join("grandchild");
        let deadline = Instant::now() + Duration::from_secs(5);
        let grandchild: u32 = loop {
            if let Some(n) = std::fs::read_to_string(&grandchild_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break n;
            }
            assert!(Instant::now() < deadline, "grandchild pid never written");
            std::thread::sleep(EXIT_POLL);
        };
        assert!(p.ensure_running().is_ok());
        drop(p);
        assert!(!alive(pid), "child {pid} still alive");
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) {
            // Reaped by init; allow it a moment to disappear.
            assert!(
                Instant::now() < deadline,
                "grandchild {grandchild} still alive"
            );
            std::thread::sleep(EXIT_POLL);
        }
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.contains("started"), "{text}");
        assert!(
            text.contains("=== mail-oidc-harness: starting sh"),
            "{text}"
        );
    }

    #[test]
    fn ensure_running_reports_early_exit_with_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("false.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom-reason >&2; exit 3"]);
        let mut p = ChildProcess::spawn("false", cmd, &log).expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = loop {
            if let Err(e) = p.ensure_running() {
                break e.to_string();
            }
            assert!(Instant::now() < deadline, "never exited");
            std::thread::sleep(EXIT_POLL);
        };
        assert!(err.contains("boom-reason"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
