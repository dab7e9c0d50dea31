//! Starts hook processes from one thread that lives as long as the process.
//!
//! A hook is started with a parent-death signal (`PR_SET_PDEATHSIG` in plain mode,
//! bwrap's `--die-with-parent`), so that it dies with the engine. The kernel sends that
//! signal when the *thread* that forked the child exits, not only the process, and the
//! threads of an async runtime come and go while the process lives (a Tokio worker
//! whose core `block_in_place` handed away ends in the blocking pool and exits once
//! idle), which would kill a hook in the middle of its run. Forking from a thread that
//! never exits makes the signal mean what it is for: the engine process has died.
//!
//! Starts are serialised on that thread (a fork and an exec each, typically well under
//! a millisecond). A process that forks itself without exec keeps no spawner thread in
//! the child: hooks can only be started by the process that started the spawner.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::group::ProcessGroup;

/// A started hook: the child and the guard of its process group, created together on
/// the spawner thread. Dropping it anywhere, also unreceived in the reply channel,
/// kills the group.
pub(crate) type Started = (Child, ProcessGroup);

/// A command to start, the runtime its child belongs to, and where to send it.
type Request = (
    Command,
    tokio::runtime::Handle,
    oneshot::Sender<io::Result<Started>>,
);

/// The spawner thread's queue (the thread is started on first use).
fn queue() -> io::Result<&'static mpsc::Sender<Request>> {
    static QUEUE: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    if let Some(queue) = QUEUE.get() {
        return Ok(queue);
    }
    let (sender, receiver) = mpsc::channel::<Request>();
    // Two callers may race here: the loser's thread finds its queue dropped and ends.
    std::thread::Builder::new()
        .name("osa-hook-spawner".into())
        .spawn(move || {
            for (command, runtime, reply) in receiver {
                // Whoever asked is gone (its run was cancelled or its runtime shut
                // down): start nothing.
                if reply.is_closed() {
                    continue;
                }
                let started = start(command, &runtime);
                // Unreceived, the guard kills the group as it is dropped.
                let _ = reply.send(started);
            }
        })?;
    Ok(QUEUE.get_or_init(|| sender))
}

/// Starts one command; a panic (a runtime without IO, say) becomes an error instead of
/// ending the spawner thread for every later hook.
fn start(mut command: Command, runtime: &tokio::runtime::Handle) -> io::Result<Started> {
    // The child is registered with the caller's runtime (its reaping and `wait` go
    // through that runtime's driver).
    let _entered = runtime.enter();
    let child = catch_unwind(AssertUnwindSafe(|| command.spawn()))
        .map_err(|_| io::Error::other("starting the hook process panicked"))??;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("the hook process vanished before its pid was known"))?;
    Ok((child, ProcessGroup::new(pid)))
}

/// Starts `command`, which must make its child the leader of a new process group,
/// from the spawner thread; the child belongs to the current runtime.
pub(crate) async fn spawn_leader(command: Command) -> io::Result<Started> {
    let (reply, started) = oneshot::channel();
    let stopped = || io::Error::other("the hook spawner thread has stopped");
    queue()?
        .send((command, tokio::runtime::Handle::current(), reply))
        .map_err(|_| stopped())?;
    started.await.map_err(|_| stopped())?
}
