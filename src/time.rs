//! Wall-clock time as the stores keep it: Unix milliseconds in an `i64`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// A time in Unix milliseconds (0 before 1970).
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

/// A duration in milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds as a `SystemTime` (negative values as the epoch).
pub(crate) fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
