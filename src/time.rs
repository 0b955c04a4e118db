//! Wall-clock time as the stores keep it: Unix milliseconds in an `i64`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    let now = unix_ms(SystemTime::now());
    #[cfg(feature = "store-internals")]
    let now = now.saturating_add(SKEW_MS.load(std::sync::atomic::Ordering::Relaxed));
    now
}

/// Test hook (feature `store-internals`): how far this process's clock is off.
#[cfg(feature = "store-internals")]
static SKEW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Test hook (feature `store-internals`, not covered by semver): makes this process's
/// clock run `ms` ahead (negative: behind), as a skewed application instance would.
#[cfg(feature = "store-internals")]
#[doc(hidden)]
pub fn set_clock_skew(ms: i64) {
    SKEW_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// A time in Unix milliseconds (0 before 1970).
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

/// A duration in milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Serializes a time as Unix milliseconds (the JSON of listings and claims).
pub(crate) fn serialize_ms<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(unix_ms(*t))
}

/// As [`serialize_ms`], for a time that may be missing (`null`).
#[cfg(feature = "tokens")]
pub(crate) fn serialize_opt_ms<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&unix_ms(*t)),
        None => s.serialize_none(),
    }
}

/// Unix milliseconds as a `SystemTime` (negative values as the epoch).
pub(crate) fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
