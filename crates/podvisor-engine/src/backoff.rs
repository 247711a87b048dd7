//! Per-key exponential back-off, as the kubelet applies it at container start (R26).

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::Instant;

/// The kubelet's crash-loop back-off: 10 s initial, doubling to 300 s (R26).
pub const CRASH_LOOP_INITIAL: Duration = Duration::from_secs(10);
/// The cap of the crash-loop back-off.
pub const CRASH_LOOP_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// Back-off entries by key. An entry expires when more than twice the maximum passed since
/// its last update.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    /// A back-off starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, entries: HashMap::new() }
    }

    fn expired(&self, at: Instant, last_update: Instant) -> bool {
        at.saturating_since(last_update) > self.max.saturating_mul(2)
    }

    /// If `key` is still backing off from an event at `since`, how long is left.
    pub fn remaining(&self, key: &str, since: Instant, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if self.expired(since, entry.last_update) {
            return None;
        }
        let elapsed = now.saturating_since(since);
        entry.backoff.checked_sub(elapsed).filter(|d| !d.is_zero())
    }

    /// The current back-off of `key`, if it has one.
    pub fn current(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.backoff)
    }

    /// Records an attempt at `now` for an event (an exit) at `since`: a new entry, or one
    /// whose last update is more than twice the maximum before `since`, starts at the initial
    /// value; an existing one doubles, capped at the maximum.
    pub fn next(&mut self, key: &str, since: Instant, now: Instant) {
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(since, e.last_update) => (e.backoff * 2).min(self.max),
            _ => self.initial.min(self.max),
        };
        self.entries.insert(key.to_string(), Entry { backoff, last_update: now });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Instant {
        Instant::from_origin(Duration::from_secs(1_700_000_000 + secs))
    }

    #[test]
    fn r26_first_restart_is_immediate_then_doubles_to_the_cap() {
        let mut b = Backoff::new(CRASH_LOOP_INITIAL, CRASH_LOOP_MAX);
        assert_eq!(b.remaining("k", t(0), t(0)), None, "no entry: start at once");
        b.next("k", t(0), t(0));
        assert_eq!(b.remaining("k", t(1), t(1)), Some(Duration::from_secs(10)));
        assert_eq!(b.remaining("k", t(1), t(11)), None);
        let mut seen = Vec::new();
        for i in 1..9 {
            b.next("k", t(i), t(i));
            seen.push(b.current("k").unwrap().as_secs());
        }
        assert_eq!(seen, [20, 40, 80, 160, 300, 300, 300, 300]);
    }

    #[test]
    fn r26_entry_expires_after_twice_the_max() {
        let mut b = Backoff::new(CRASH_LOOP_INITIAL, CRASH_LOOP_MAX);
        b.next("k", t(0), t(0));
        b.next("k", t(1), t(1));
        assert_eq!(b.remaining("k", t(601), t(601)), Some(Duration::from_secs(20)), "600 s is not more than 2 x max");
        assert_eq!(b.remaining("k", t(602), t(602)), None, "an exit over 600 s after the last update is not held");
        b.next("k", t(602), t(602));
        assert_eq!(b.current("k"), Some(CRASH_LOOP_INITIAL), "expired entries restart at the initial value");
    }
}
