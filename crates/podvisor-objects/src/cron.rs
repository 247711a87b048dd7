//! Cron schedules as the CronJob controller reads them (robfig/cron's standard parser): five
//! fields (minute, hour, day of month, month, day of week) with `*`, `?`, lists, ranges, steps
//! and month and weekday names (days of the week 0–6, Sunday 0); the descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`,
//! `@daily`, `@midnight`, `@hourly` and `@every <duration>`. A day matches when both day fields
//! match, or, when neither is `*`, when either does, as cron has it. Times are found in the
//! CronJob's time zone, so a schedule follows its daylight-saving changes.

use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Five cron fields.
    Cron(Fields),
    /// `@every <duration>`: activations that far apart.
    Every(Duration),
}

/// The five fields as sets of allowed values, and whether each day field was `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOUR: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DOM: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DOW: Bounds = Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

/// A number as Go's `strconv.Atoi` reads it, with its error words.
fn atoi(s: &str) -> Result<u32, String> {
    s.parse::<u32>().map_err(|_| format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"))
}

fn value(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(u32::try_from(i).unwrap_or(0) + b.min),
        None => atoi(s),
    }
}

/// One comma-separated part of a field: `*`, `?`, `a`, `a-b`, each with an optional `/step`.
fn range(expr: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let (span, step) = match expr.split_once('/') {
        Some((_, rest)) if rest.contains('/') => return Err(format!("too many slashes: {expr}")),
        Some((span, step)) => (span, Some(atoi(step)?)),
        None => (expr, None),
    };
    let star = span == "*" || span == "?";
    let (start, end) = if star {
        (b.min, b.max)
    } else {
        match span.split_once('-') {
            Some((_, rest)) if rest.contains('-') => return Err(format!("too many hyphens: {expr}")),
            Some((lo, hi)) => (value(lo, b)?, value(hi, b)?),
            // `a/n` runs from a to the end of the field.
            None => {
                let v = value(span, b)?;
                (v, if step.is_some() { b.max } else { v })
            }
        }
    };
    let step = step.unwrap_or(1);
    if start < b.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", b.min));
    }
    if end > b.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", b.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let bits = (start..=end).step_by(step as usize).fold(0u64, |acc, v| acc | 1 << v);
    Ok((bits, star && step == 1))
}

fn field(s: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0;
    let mut star = false;
    for part in s.split(',') {
        let (b2, s2) = range(part, b)?;
        bits |= b2;
        star |= s2;
    }
    Ok((bits, star))
}

/// A Go duration (`1h30m`, `90s`, `500ms`) for `@every`.
fn go_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let n: f64 = num.parse().ok()?;
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(n * scale).ok()?)?;
        rest = next;
    }
    Some(total)
}

/// Parses a schedule, with robfig/cron's error words.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let expanded = match spec {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => spec,
    };
    if let Some(every) = expanded.strip_prefix("@every ") {
        let d = go_duration(every.trim()).ok_or_else(|| format!("failed to parse duration {every}"))?;
        // Rounded to whole seconds, at least one, as robfig/cron's Every.
        return Ok(Schedule::Every(Duration::from_secs(d.as_secs().max(1))));
    }
    if expanded.starts_with('@') {
        return Err(format!("unrecognized descriptor: {expanded}"));
    }
    let parts: Vec<&str> = expanded.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", parts.len(), parts.join(" ")));
    }
    let (minute, _) = field(parts[0], &MINUTE)?;
    let (hour, _) = field(parts[1], &HOUR)?;
    let (dom, dom_star) = field(parts[2], &DOM)?;
    let (month, _) = field(parts[3], &MONTH)?;
    let (dow, dow_star) = field(parts[4], &DOW)?;
    Ok(Schedule::Cron(Fields { minute, hour, dom, month, dow, dom_star, dow_star }))
}

fn has(bits: u64, v: i8) -> bool {
    u32::try_from(v).is_ok_and(|v| v < 64 && bits & (1 << v) != 0)
}

impl Fields {
    fn day_matches(&self, dt: DateTime) -> bool {
        let dom = has(self.dom, dt.day());
        let dow = has(self.dow, dt.weekday().to_sunday_zero_offset());
        if self.dom_star || self.dow_star { dom && dow } else { dom || dow }
    }
}

impl Schedule {
    /// The first activation strictly after `t` in time zone `tz`, if one comes within five
    /// years (`0 0 30 2 *` never does).
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let f = match self {
            Schedule::Every(d) => {
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                return whole.checked_add(jiff::SignedDuration::try_from(*d).ok()?).ok();
            }
            Schedule::Cron(f) => f,
        };
        let start = tz.to_datetime(t);
        let mut dt = start.with().second(0).subsec_nanosecond(0).build().ok()?.checked_add(1.minute()).ok()?;
        let limit = start.year().saturating_add(5);
        // Each step moves to the start of the next candidate unit; the loop ends within a
        // bounded number of steps (months, days, hours and minutes of five years at most).
        loop {
            if dt.year() > limit {
                return None;
            }
            if !has(f.month, dt.month()) {
                dt = dt.first_of_month().start_of_day().checked_add(1.month()).ok()?;
                continue;
            }
            if !f.day_matches(dt) {
                dt = dt.start_of_day().checked_add(1.day()).ok()?;
                continue;
            }
            if !has(f.hour, dt.hour()) {
                dt = dt.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?;
                continue;
            }
            if !has(f.minute, dt.minute()) {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            // A local time in a daylight-saving gap moves forward; one in a fold takes the
            // earlier instant. Either way it must be after `t`.
            let at = tz.to_ambiguous_zoned(dt).compatible().ok()?.timestamp();
            if at > t {
                return Some(at);
            }
            dt = dt.checked_add(1.minute()).ok()?;
        }
    }

    /// The latest activation at or before `now` after `since` (exclusive), and whether more
    /// than `cap` activations were missed in between. Long gaps are not walked minute by
    /// minute: the search starts from windows before `now` that double until one holds an
    /// activation.
    pub fn latest(&self, since: Timestamp, now: Timestamp, tz: &TimeZone, cap: usize) -> (Option<Timestamp>, bool) {
        let mut missed = 0usize;
        let mut t = since;
        while let Some(n) = self.next_after(t, tz).filter(|n| *n <= now) {
            missed += 1;
            t = n;
            if missed > cap {
                break;
            }
        }
        if missed <= cap {
            return (if missed == 0 { None } else { Some(t) }, false);
        }
        let mut window = jiff::SignedDuration::from_hours(1);
        loop {
            let from = now.checked_sub(window).unwrap_or(since).max(since);
            let mut last = None;
            let mut at = from;
            while let Some(n) = self.next_after(at, tz).filter(|n| *n <= now) {
                last = Some(n);
                at = n;
            }
            if last.is_some() || from == since {
                return (last, true);
            }
            window = window.checked_mul(2).unwrap_or(jiff::SignedDuration::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, from: &str, tz: &str) -> Option<String> {
        let tz = TimeZone::get(tz).unwrap();
        parse(spec).unwrap().next_after(at(from), &tz).map(|t| t.to_string())
    }

    #[test]
    fn fields_ranges_steps_and_names() {
        assert_eq!(next("*/15 * * * *", "2026-01-01T00:07:30Z", "UTC").as_deref(), Some("2026-01-01T00:15:00Z"));
        assert_eq!(next("0 9 * * MON-FRI", "2026-01-02T09:00:00Z", "UTC").as_deref(), Some("2026-01-05T09:00:00Z"));
        assert_eq!(next("30 2 1 jan,jul *", "2026-01-01T03:00:00Z", "UTC").as_deref(), Some("2026-07-01T02:30:00Z"));
        assert_eq!(next("@hourly", "2026-01-01T00:00:00Z", "UTC").as_deref(), Some("2026-01-01T01:00:00Z"));
        assert_eq!(next("0 0 * * 0", "2026-01-01T00:00:00Z", "UTC").as_deref(), Some("2026-01-04T00:00:00Z"));
        assert_eq!(next("0 0 * * */7", "2026-01-01T00:00:00Z", "UTC").as_deref(), Some("2026-01-04T00:00:00Z"));
        // Day of month or day of week when neither is `*`: the 13th, or any Friday.
        assert_eq!(next("0 0 13 * 5", "2026-01-01T00:00:00Z", "UTC").as_deref(), Some("2026-01-02T00:00:00Z"));
        assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00Z", "UTC"), None);
        assert_eq!(next("@every 90s", "2026-01-01T00:00:00.5Z", "UTC").as_deref(), Some("2026-01-01T00:01:30Z"));
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        assert_eq!(next("0 9 * * *", "2026-06-01T00:00:00Z", "Europe/Berlin").as_deref(), Some("2026-06-01T07:00:00Z"));
        // 02:30 does not exist in Berlin on 29 March 2026: it runs at 03:30 local, 01:30 UTC.
        assert_eq!(
            next("30 2 * * *", "2026-03-29T00:00:00Z", "Europe/Berlin").as_deref(),
            Some("2026-03-29T01:30:00Z")
        );
    }

    #[test]
    fn errors_are_worded_as_robfig_cron_words_them() {
        assert_eq!(parse("* * *").unwrap_err(), "expected exactly 5 fields, found 3: [* * *]");
        assert_eq!(parse("60 * * * *").unwrap_err(), "end of range (60) above maximum (59): 60");
        assert_eq!(parse("*/0 * * * *").unwrap_err(), "step of range should be a positive number: */0");
        assert_eq!(parse("5-1 * * * *").unwrap_err(), "beginning of range (5) beyond end of range (1): 5-1");
        assert_eq!(parse("@fortnightly").unwrap_err(), "unrecognized descriptor: @fortnightly");
        assert_eq!(parse("0 0 * * 7").unwrap_err(), "end of range (7) above maximum (6): 7");
        assert!(parse("x * * * *").unwrap_err().starts_with("failed to parse int from x"));
        assert_eq!(parse("").unwrap_err(), "empty spec string");
    }

    #[test]
    fn the_latest_activation_after_a_long_gap_is_found_without_walking_it() {
        let tz = TimeZone::UTC;
        let s = parse("* * * * *").unwrap();
        let (last, too_many) = s.latest(at("2025-01-01T00:00:00Z"), at("2026-01-01T00:00:30Z"), &tz, 100);
        assert_eq!((last.map(|t| t.to_string()), too_many), (Some("2026-01-01T00:00:00Z".into()), true));
        let (last, too_many) = s.latest(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:03:10Z"), &tz, 100);
        assert_eq!((last.map(|t| t.to_string()), too_many), (Some("2026-01-01T00:03:00Z".into()), false));
        assert_eq!(s.latest(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:59Z"), &tz, 100), (None, false));
    }
}
