//! The system clock, read in one place: epoch milliseconds and seconds. Flows take the time as
//! an argument (tests pass their own); entry points and adapters read it here.

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    now_ms().div_euclid(1000)
}
