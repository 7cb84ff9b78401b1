//! Running synchronous work (file I/O, hashing, rendering) from async code without holding
//! a runtime thread: the cycle's stages are plain synchronous functions, called through
//! [`run`] where an async caller needs them.

/// Runs `work` on tokio's blocking pool and returns its result. A panic in `work` goes on
/// in the caller, as if `work` had run inline.
pub(crate) async fn run<T, F>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        // A blocking task is never aborted; only a runtime shutting down cancels one, and
        // then no caller is left to see this.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
