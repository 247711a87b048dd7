//! Time as the engine reads it: a monotonic reading for every deadline (grace periods,
//! back-offs, probe periods, `activeDeadlineSeconds`) and a wall-clock reading for the stamps
//! of the API status. A step of the wall clock (NTP, a suspended laptop, a user's `date -s`)
//! moves no deadline, as in the kubelet, whose Go clock readings carry a monotonic part.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// A reading of a monotonic clock: the time since an origin the driver chooses (its own
/// start, or the start of a simulation), negative before it (a pod that started before the
/// node process did). Only differences between instants mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(SignedDuration);

impl Instant {
    /// The origin.
    pub const ORIGIN: Instant = Instant(SignedDuration::ZERO);

    /// The instant `d` after the origin.
    pub fn from_origin(d: Duration) -> Self {
        Instant::ORIGIN.after(d)
    }

    /// The time from the origin to this instant (negative before it).
    pub const fn since_origin(self) -> SignedDuration {
        self.0
    }

    /// The time from `earlier` to this instant; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(Duration::ZERO)
    }

    /// The instant `d` after this one, saturating at the end of time.
    pub fn after(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)))
    }

    /// The instant `secs` whole seconds after this one (none for a negative number), saturating
    /// at the end of time: a grace of `i64::MAX` seconds is legal.
    pub fn after_secs(self, secs: i64) -> Instant {
        Instant(self.0.saturating_add(SignedDuration::from_secs(secs.max(0))))
    }

    /// The instant `d` before this one, saturating at the beginning of time.
    pub fn before(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)))
    }
}

/// The moment an input arrives, as both clocks read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// The monotonic reading: deadlines are measured on it.
    pub mono: Instant,
    /// The wall clock's reading: it stamps the status (`startedAt`, `finishedAt`, conditions).
    pub wall: Timestamp,
}

impl Now {
    /// A moment read from both clocks.
    pub const fn new(mono: Instant, wall: Timestamp) -> Self {
        Now { mono, wall }
    }

    /// A moment of a clock whose wall reading never steps (a simulation, a test): the
    /// monotonic reading is the time since the Unix epoch.
    pub fn steady(wall: Timestamp) -> Self {
        Now { mono: Instant(wall.duration_since(Timestamp::UNIX_EPOCH)), wall }
    }

    /// The monotonic instant at which the wall clock read `t`, as far as this moment can tell:
    /// how a time the runtime or an earlier node process reported (a container's start or end)
    /// becomes a point deadlines can be measured from.
    pub fn mono_of(&self, t: Timestamp) -> Instant {
        // A time in the future (a clock that stepped back since) counts as now.
        let ago = self.wall.duration_since(t).max(SignedDuration::ZERO);
        Instant(self.mono.0.saturating_sub(ago))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_saturate_at_both_ends() {
        let t = Instant::from_origin(Duration::from_secs(5));
        assert_eq!(t.after_secs(i64::MAX).since_origin(), SignedDuration::MAX);
        assert_eq!(t.after(Duration::MAX).after_secs(i64::MAX).since_origin(), SignedDuration::MAX);
        assert_eq!(t.after_secs(-3), t);
        assert_eq!(t.before(Duration::from_secs(60)).since_origin(), SignedDuration::from_secs(-55));
        assert_eq!(t.before(Duration::MAX).before(Duration::MAX).since_origin(), SignedDuration::MIN);
        assert_eq!(Instant::ORIGIN.saturating_since(t), Duration::ZERO);
    }

    #[test]
    fn a_reported_time_maps_onto_the_monotonic_clock() {
        let wall = Timestamp::from_second(1_000).unwrap();
        let now = Now::new(Instant::from_origin(Duration::from_secs(50)), wall);
        assert_eq!(now.mono_of(Timestamp::from_second(990).unwrap()), Instant::from_origin(Duration::from_secs(40)));
        // Before the origin: the pod began before the node process did.
        let early = Now::new(Instant::ORIGIN, wall).mono_of(Timestamp::from_second(985).unwrap());
        assert_eq!(early.since_origin(), SignedDuration::from_secs(-15));
        // Reported in the future of the wall clock: now.
        assert_eq!(now.mono_of(Timestamp::from_second(2_000).unwrap()), now.mono);
    }
}
