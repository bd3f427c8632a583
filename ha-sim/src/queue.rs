//! The simulators' event queue: a binary heap of events that pops the earliest first, ties in
//! the order they were scheduled (so a seed replays exactly).
use std::cmp::Ordering;

/// One scheduled event of kind `E` at simulated time `at` (ns); `seq` breaks ties.
pub struct Item<E> {
    pub at: u64,
    pub seq: u64,
    pub ev: E,
}

impl<E> PartialEq for Item<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Item<E> {}

impl<E> PartialOrd for Item<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Item<E> {
    /// Reversed: the heap pops the earliest, ties in the order scheduled.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
