//! The node's events on their way to an observer (`podvisor run`'s printer, `serve -v`), through
//! a bounded channel that never holds the node back: when the observer falls behind (a terminal
//! or a pipe that does not keep up with a container writing as fast as it can), container output
//! gives way first, then the rest, and each pod is told how much it missed once there is room
//! again. Nothing is lost for good: the log files keep every line, the store every event.

use std::collections::BTreeMap;

use jiff::Timestamp;
use podvisor_node::{NodeEvent, What};
use tokio::sync::mpsc;

/// How many events an observer's channel holds.
pub const CAPACITY: usize = 4096;

/// The room kept free of output lines for lifecycle events and the notes of what was skipped.
const RESERVED: usize = 256;

/// What one pod's observer missed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Missed {
    lines: u64,
    events: u64,
}

/// Passes node events on to an observer without ever waiting for it.
#[derive(Debug)]
pub struct Relay {
    observer: mpsc::Sender<NodeEvent>,
    missed: BTreeMap<String, (String, Missed)>,
}

impl Relay {
    /// A relay to `observer` (made with [`CAPACITY`], or any capacity above the reserve).
    pub fn new(observer: mpsc::Sender<NodeEvent>) -> Relay {
        Relay { observer, missed: BTreeMap::new() }
    }

    /// Passes `e` on if there is room for it (a container's line only while the reserve is
    /// untouched); otherwise counts it as missed for its pod. Notes of what was missed go
    /// first, as soon as there is room.
    pub fn pass(&mut self, e: NodeEvent) {
        self.tell_missed();
        let log = matches!(e.what, What::Log { .. });
        let room = self.observer.capacity();
        let fits = if log { room > RESERVED && self.missed.is_empty() } else { room > 0 };
        if fits && self.observer.try_send(e.clone()).is_ok() {
            return;
        }
        let (_, m) = self.missed.entry(e.pod.clone()).or_insert_with(|| (e.uid.clone(), Missed::default()));
        if log {
            m.lines += 1;
        } else {
            m.events += 1;
        }
    }

    /// Sends, once the observer has caught up (room beyond the reserve), a note for each pod
    /// that missed something.
    fn tell_missed(&mut self) {
        while self.observer.capacity() > RESERVED {
            let Some((pod, (uid, m))) = self.missed.pop_first() else { return };
            let mut what = Vec::new();
            if m.lines > 0 {
                what.push(format!("{} line(s) of output", m.lines));
            }
            if m.events > 0 {
                what.push(format!("{} event(s)", m.events));
            }
            let note = NodeEvent {
                at: Timestamp::now(),
                pod,
                uid,
                what: What::Event {
                    kind: "Warning",
                    reason: "OutputSkipped".into(),
                    message: format!(
                        "{} not shown here: this output fell behind the pod (the container logs and the events keep them all)",
                        what.join(" and ")
                    ),
                    container: None,
                    field_path: None,
                },
            };
            if self.observer.try_send(note).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(pod: &str, n: usize) -> NodeEvent {
        NodeEvent {
            at: Timestamp::UNIX_EPOCH,
            pod: pod.into(),
            uid: format!("uid-{pod}"),
            what: What::Log { container: "c".into(), stream: "stdout", line: format!("line {n}") },
        }
    }

    fn started(pod: &str) -> NodeEvent {
        NodeEvent {
            at: Timestamp::UNIX_EPOCH,
            pod: pod.into(),
            uid: format!("uid-{pod}"),
            what: What::Started { container: "c".into(), attempt: 0 },
        }
    }

    #[test]
    fn output_gives_way_first_the_reserve_keeps_lifecycle_events_and_each_pod_is_told_what_it_missed() {
        let (tx, mut rx) = mpsc::channel(RESERVED + 4);
        let mut relay = Relay::new(tx);
        // A container writing as fast as it can while nobody reads: 4 lines fit, the rest wait
        // nowhere (bounded), and a start still gets through the reserve.
        for n in 0..10_000 {
            relay.pass(line("default/chatty", n));
        }
        relay.pass(started("default/quiet"));
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e);
        }
        assert_eq!(got.len(), 5, "4 lines and the start");
        assert!(matches!(got[4].what, What::Started { .. }));
        // Room again: the next event brings the note of what was missed first.
        relay.pass(line("default/chatty", 10_000));
        let note = rx.try_recv().unwrap();
        let What::Event { reason, message, .. } = &note.what else { panic!("{note:?}") };
        assert_eq!((note.pod.as_str(), reason.as_str()), ("default/chatty", "OutputSkipped"));
        assert!(message.starts_with("9996 line(s) of output not shown here"), "{message}");
        assert!(matches!(rx.try_recv().unwrap().what, What::Log { .. }), "then the line");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn with_no_room_at_all_lifecycle_events_are_counted_too() {
        let (tx, mut rx) = mpsc::channel(RESERVED + 1);
        let mut relay = Relay::new(tx);
        for _ in 0..=RESERVED + 1 {
            relay.pass(started("default/a"));
        }
        relay.pass(line("default/a", 0));
        for _ in 0..=RESERVED {
            assert!(matches!(rx.try_recv().unwrap().what, What::Started { .. }));
        }
        assert!(rx.try_recv().is_err());
        relay.pass(started("default/b"));
        let What::Event { message, .. } = rx.try_recv().unwrap().what else { panic!("a note") };
        assert!(message.starts_with("1 line(s) of output and 1 event(s) not shown"), "{message}");
        assert!(matches!(rx.try_recv().unwrap().what, What::Started { .. }), "then b's start");
    }
}
