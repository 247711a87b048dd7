//! The timing of a start's steps, as `podvisor run --timing` shows them.

/// Durations of consecutive steps, measured as they end.
pub(crate) struct Steps {
    last: std::time::Instant,
    /// Each step and its duration in microseconds.
    pub list: Vec<(String, u64)>,
}

impl Steps {
    pub fn new() -> Self {
        Steps { last: std::time::Instant::now(), list: Vec::new() }
    }

    /// Ends the step `name`, started when the previous one ended.
    pub fn done(&mut self, name: &str) {
        let now = std::time::Instant::now();
        self.list.push((name.to_string(), now.duration_since(self.last).as_micros() as u64));
        self.last = now;
    }
}
