//! Durations as Go prints them (`time.Duration.String`): the kubelet's messages quote them.

use std::time::Duration;

/// `0s`, `250ms`, `1.5s`, `5m0s`, `1h2m3s`.
pub fn go_duration(d: Duration) -> String {
    let trim = |x: f64| {
        let s = format!("{x:.9}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        let ns = d.as_nanos();
        return match ns {
            0..1_000 => format!("{ns}ns"),
            1_000..1_000_000 => format!("{}µs", trim(ns as f64 / 1e3)),
            _ => format!("{}ms", trim(ns as f64 / 1e6)),
        };
    }
    let total = d.as_secs();
    let (h, m) = (total / 3600, (total % 3600) / 60);
    let s = trim((total % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_go_prints_them() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(ms(250)), "250ms");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(ms(1000)), "1s");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(300_000)), "5m0s");
        assert_eq!(go_duration(ms(3_723_000)), "1h2m3s");
    }
}
