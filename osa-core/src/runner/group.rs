//! Killing everything a hook process started, and making sure it is gone.
//!
//! The hook runs as the leader of its own process group. Killing the group alone is
//! not enough: a process may leave the group (`setsid`, which `bwrap --new-session`
//! itself does for the sandboxed command), and `kill` only *sends* SIGKILL; the
//! targets die a moment later. So a kill signals the group and every descendant of
//! the leader still linked to it (found through `/proc`), and the caller then waits
//! until none of them is alive any more.
//!
//! Dead-but-unreaped processes (zombies) count as gone: they run no code, and their
//! new parent (init or a subreaper) reaps them on its own schedule.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::time::{Duration, Instant};

/// How often the wait for dead processes looks again.
const POLL_ASYNC: Duration = Duration::from_millis(5);
/// The same, for the blocking wait in `Drop` (kept short: it blocks a thread).
const POLL_BLOCKING: Duration = Duration::from_millis(1);
/// The longest `Drop` blocks waiting for killed processes to die.
const DROP_WAIT: Duration = Duration::from_millis(200);

/// The process group of one hook execution; kills the whole tree when dropped while
/// armed, so a cancelled `run` future leaves nothing behind.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    /// The leader's pid, which is also the group id (`process_group(0)`).
    leader: i32,
    armed: bool,
    /// Every pid signalled individually so far (to wait for them).
    signalled: BTreeSet<i32>,
}

impl ProcessGroup {
    /// Takes charge of the group led by `leader`.
    pub(crate) fn new(leader: u32) -> Self {
        ProcessGroup {
            // Pids fit in i32 on every unix; a wrapped value would only target a
            // non-existent group.
            leader: leader as i32,
            armed: true,
            signalled: BTreeSet::new(),
        }
    }

    /// Sends SIGKILL to the group and to every descendant of the leader.
    pub(crate) fn kill(&mut self) {
        // Descendants first: once the leader dies its children are reparented and the
        // tree can no longer be followed.
        let descendants = descendants_of(self.leader);
        // SAFETY: kill(2) has no memory-safety preconditions. The negative pid names
        // our child's process group, which exists at least as long as the leader is
        // unreaped and, after that, only while some member lives (pids are allocated
        // cyclically, so the group id is not handed out again in the meantime).
        unsafe {
            libc::kill(-self.leader, libc::SIGKILL);
        }
        for pid in &descendants {
            // SAFETY: as above; each pid was a live descendant an instant ago.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        self.signalled.extend(descendants);
    }

    /// Kills the group and its descendants and waits, at most `bound`, until none of
    /// them is alive. Returns how many were still alive when the bound ran out.
    pub(crate) async fn kill_and_wait(&mut self, bound: Duration) -> usize {
        // The usual end: the hook exited, was reaped and left nothing in its group, and
        // nothing was signalled individually: no process table to read. (The leader's
        // descendants cannot be found once it is gone; they were reparented.)
        if self.signalled.is_empty() && self.group_is_empty() {
            return 0;
        }
        self.kill();
        let deadline = Instant::now() + bound;
        loop {
            let alive = self.alive();
            if alive == 0 || Instant::now() >= deadline {
                return alive;
            }
            tokio::time::sleep(POLL_ASYNC).await;
        }
    }

    /// Whether no process, not even a zombie, is left in the group.
    fn group_is_empty(&self) -> bool {
        // SAFETY: kill(2) with signal 0 only checks that the group exists.
        let result = unsafe { libc::kill(-self.leader, 0) };
        result != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }

    /// No more killing on drop (everything is known to be gone).
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// Live members of the group plus live processes among those signalled.
    fn alive(&self) -> usize {
        process_table()
            .iter()
            .filter(|(pid, info)| {
                info.live && (info.pgrp == self.leader || self.signalled.contains(pid))
            })
            .count()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.kill();
        // Drop cannot await; a short blocking wait keeps the promise that nothing runs
        // after the future is gone. SIGKILLed processes normally die within
        // microseconds, so this rarely sleeps at all.
        let deadline = Instant::now() + DROP_WAIT;
        super::wait_in_drop(|| {
            while self.alive() > 0 && Instant::now() < deadline {
                std::thread::sleep(POLL_BLOCKING);
            }
        });
    }
}

/// What `/proc/<pid>/stat` tells about one process.
#[derive(Debug, Clone, Copy)]
struct ProcInfo {
    ppid: i32,
    pgrp: i32,
    /// Neither a zombie nor dead.
    live: bool,
}

/// Every process visible in `/proc`. Empty where there is no `/proc` (then kills rely
/// on the process group alone and nothing is waited for).
fn process_table() -> HashMap<i32, ProcInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            // Processes vanish between listing and reading; skip those.
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((pid, parse_stat(&stat)?))
        })
        .collect()
}

/// Parses `pid (comm) state ppid pgrp ...`; `comm` may hold spaces and parentheses,
/// so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<ProcInfo> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcInfo {
        ppid,
        pgrp,
        live: !matches!(state, "Z" | "X" | "x"),
    })
}

/// All live descendants of `root` (children, grandchildren, ...).
fn descendants_of(root: i32) -> BTreeSet<i32> {
    let table = process_table();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, info) in &table {
        children.entry(info.ppid).or_default().push(*pid);
    }
    let mut found = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if table[child].live && found.insert(*child) {
                stack.push(*child);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let info = parse_stat("4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 ...").unwrap();
        assert_eq!((info.ppid, info.pgrp, info.live), (17, 4242, true));
        let zombie = parse_stat("7 (sleep) Z 1 7 7 0").unwrap();
        assert!(!zombie.live);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn an_emptied_group_is_seen_as_empty() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep");
        let mut group = ProcessGroup::new(child.id());
        assert!(!group.group_is_empty(), "the leader is in its group");
        group.kill();
        child.wait().expect("reap");
        assert!(
            group.group_is_empty(),
            "nothing left once the leader is reaped"
        );
        group.disarm();
    }

    #[test]
    fn finds_own_process() {
        let table = process_table();
        let me = std::process::id() as i32;
        assert!(
            table.get(&me).is_some_and(|i| i.live),
            "own pid {me} in /proc"
        );
    }
}
