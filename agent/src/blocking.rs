//! Running synchronous work (file I/O, hashing, rendering) from async code without holding
//! up the runtime's worker: the cycle's stages are plain synchronous functions, called
//! through [`run`] where an async caller needs them.
//!
//! The agent's cycles run on the main thread, inside `Runtime::block_on`, and its one
//! worker thread serves the listener (agent/src/main.rs). There `block_in_place` runs the
//! work inline at the cost of a function call; handing each small read of an unchanged
//! poll to the blocking pool instead cost two thread wake-ups per call and made an unchanged
//! poll ~1.6× as expensive (docs/performance.md). Called from a worker thread,
//! `block_in_place` first moves that worker's other tasks to another thread, so the listener
//! still answers. A current-thread runtime (unit tests) cannot do that, so there the work
//! goes to the blocking pool.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work` without blocking other tasks and returns its result. A panic in `work` goes
/// on in the caller, as if `work` had run inline.
pub(crate) async fn run<T, F>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(work);
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        // A blocking task is never aborted; only a runtime shutting down cancels one, and
        // then no caller is left to see this.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
