//! Independent pieces of work spread over every core, with the results in input order, so
//! that what `drover publish` builds does not depend on how many cores built it.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Applies `f` to every item on up to `available_parallelism()` threads (the calling thread
/// is one of them) and returns the results in the order of `items`.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    map_with(items, threads, |_: &mut (), item| f(item))
}

/// [`map`] on up to `threads` threads, each owning one `S` that it hands to every call of
/// `f` it makes (a read buffer, a string interner): state reused across items, never shared.
pub(crate) fn map_with<T: Sync, S: Default, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        let mut state = S::default();
        return items.iter().map(|item| f(&mut state, item)).collect();
    }
    let next = AtomicUsize::new(0);
    // Each worker records which items it took; the claim order is global, so sorting by
    // claim index restores input order.
    let work = || {
        let (mut state, mut done) = (S::default(), Vec::new());
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            done.push((i, f(&mut state, item)));
        }
        done
    };
    let mut results = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut all = work();
        for helper in helpers {
            match helper.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_back_in_input_order() {
        let items: Vec<u64> = (0..1000).collect();
        let squares = super::map(&items, |i| i * i);
        assert_eq!(squares, items.iter().map(|i| i * i).collect::<Vec<_>>());
        assert!(super::map(&[] as &[u8], |b| *b).is_empty());
    }

    #[test]
    fn each_thread_keeps_its_own_state_across_items() {
        let items: Vec<u64> = (0..1000).collect();
        let count = |seen: &mut u64, _: &u64| {
            *seen += 1;
            *seen
        };
        // One thread: one state, so the counts run 1..=1000 in input order.
        assert_eq!(super::map_with(&items, 1, count), (1..=1000).collect::<Vec<_>>());
        // Four threads: each state starts at 1 once, so at most four items see a fresh one.
        let fresh = super::map_with(&items, 4, count)
            .into_iter()
            .filter(|n| *n == 1)
            .count();
        assert!((1..=4).contains(&fresh), "{fresh} fresh states");
    }
}
