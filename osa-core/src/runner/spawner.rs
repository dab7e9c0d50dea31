//! Starts hook processes from one thread that lives as long as the process.
//!
//! A hook is started with a parent-death signal (`PR_SET_PDEATHSIG` in plain mode,
//! bwrap's `--die-with-parent`), so that it dies with the engine. The kernel sends that
//! signal when the *thread* that forked the child exits, not only the process, and the
//! threads of an async runtime come and go while the process lives (a Tokio worker
//! whose core `block_in_place` handed away ends in the blocking pool and exits once
//! idle), which would kill a hook in the middle of its run. Forking from a thread that
//! never exits makes the signal mean what it is for: the engine process has died.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// A command to start, the runtime its child belongs to, and where to send the child.
type Request = (
    Command,
    tokio::runtime::Handle,
    oneshot::Sender<io::Result<Child>>,
);

/// The spawner thread's queue (the thread is started on first use).
fn queue() -> io::Result<&'static mpsc::Sender<Request>> {
    static QUEUE: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    if let Some(queue) = QUEUE.get() {
        return Ok(queue);
    }
    let (sender, receiver) = mpsc::channel::<Request>();
    // Two callers may race here: the loser's thread finds its queue dropped and ends.
    let started = std::thread::Builder::new()
        .name("osa-hook-spawner".into())
        .spawn(move || {
            for (mut command, runtime, reply) in receiver {
                // The child is registered with the caller's runtime (its reaping and
                // `wait` go through that runtime's driver).
                let _entered = runtime.enter();
                let _ = reply.send(command.spawn());
            }
        });
    started?;
    Ok(QUEUE.get_or_init(|| sender))
}

/// Starts `command` from the spawner thread; the child belongs to the current runtime.
pub(crate) async fn spawn(command: Command) -> io::Result<Child> {
    let (reply, child) = oneshot::channel();
    queue()?
        .send((command, tokio::runtime::Handle::current(), reply))
        .map_err(|_| io::Error::other("the hook spawner thread has stopped"))?;
    child
        .await
        .map_err(|_| io::Error::other("the hook spawner thread has stopped"))?
}
