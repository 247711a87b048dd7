//! The e2e suite's ordering assertions, evaluated on a simulation's merged timeline.

use crate::sim::{Entry, Mark};

fn position(tl: &[Entry], name: &str, pred: impl Fn(&Mark) -> bool) -> Option<usize> {
    tl.iter().position(|e| e.container == name && pred(&e.mark))
}

fn is_exiting(m: &Mark) -> bool {
    matches!(m, Mark::Exiting(_))
}

/// `StartsBefore(a, b)`: the first `Started` of `a` is followed by a `Starting` of `b`
/// (with `a == b`: `a` restarted).
pub fn starts_before(tl: &[Entry], a: &str, b: &str) -> bool {
    let Some(i) = position(tl, a, |m| *m == Mark::Started) else { return false };
    tl[i + 1..].iter().any(|e| e.container == b && e.mark == Mark::Starting)
}

/// `ExitsBefore(a, b)`: the first `Exiting` of `a` is followed by an `Exiting` of `b`.
pub fn exits_before(tl: &[Entry], a: &str, b: &str) -> bool {
    let Some(i) = position(tl, a, is_exiting) else { return false };
    tl[i + 1..].iter().any(|e| e.container == b && is_exiting(&e.mark))
}

/// `RunTogether(a, b)`: `b` started after `a` started and before `a` first exited, and `a`
/// started before `b` exited.
pub fn run_together(tl: &[Entry], a: &str, b: &str) -> bool {
    let first = |n: &str, p: &dyn Fn(&Mark) -> bool| position(tl, n, p);
    let (Some(a_start), Some(b_start)) = (first(a, &|m| *m == Mark::Started), first(b, &|m| *m == Mark::Started))
    else {
        return false;
    };
    let a_exit = first(a, &|m| is_exiting(m) || *m == Mark::Killed).unwrap_or(usize::MAX);
    let b_exit = first(b, &|m| is_exiting(m) || *m == Mark::Killed).unwrap_or(usize::MAX);
    let (lo, hi) = if a_start <= b_start { (b_start, a_exit) } else { (a_start, b_exit) };
    lo < hi
}

/// How many times a container's process started.
pub fn starts(tl: &[Entry], name: &str) -> usize {
    tl.iter().filter(|e| e.container == name && e.mark == Mark::Starting).count()
}

/// Whether the container ever logged `Started`.
pub fn started(tl: &[Entry], name: &str) -> bool {
    position(tl, name, |m| *m == Mark::Started).is_some()
}

/// The virtual times (seconds) of a container's marks matching `pred`.
pub fn times(tl: &[Entry], name: &str, pred: impl Fn(&Mark) -> bool) -> Vec<f64> {
    tl.iter().filter(|e| e.container == name && pred(&e.mark)).map(|e| e.at.as_secs_f64()).collect()
}

/// The first `Exiting` of `a` is followed by a `Starting` of `b`: `a` ran to completion before
/// `b` began (a regular init container before the next container).
pub fn exits_before_start(tl: &[Entry], a: &str, b: &str) -> bool {
    let Some(i) = position(tl, a, is_exiting) else { return false };
    tl[i + 1..].iter().any(|e| e.container == b && e.mark == Mark::Starting)
        && !tl[..i].iter().any(|e| e.container == b && e.mark == Mark::Starting)
}
