//! Unit tests of the configuration rules.

use super::*;

#[test]
fn defaults_are_valid_and_secure() {
    let c = SessionConfig::default();
    c.validate().unwrap();
    assert!(c.cookie.secure && c.cookie.http_only);
    assert_eq!(
        c.cookie.name, "__Host-id",
        "generic, reveals nothing about the stack; __Host- stops cookie tossing from \
         sibling subdomains"
    );
    assert!(!c.persistent, "browser-session cookie unless asked");
    assert_eq!(c.cookie.same_site, SameSite::Lax);
    assert_eq!(c.threshold_ms(1000), 500);
}

#[test]
fn rejects_unsafe_or_impossible_configs() {
    let bad = [
        SessionConfig::default().with_cookie_name(""),
        SessionConfig::default().with_cookie_name("a b"),
        SessionConfig::default().with_cookie_name("a;b"),
        SessionConfig::default()
            .with_cookie_name("__Host-id")
            .with_domain("example.com"),
        SessionConfig::default()
            .with_cookie_name("__Host-id")
            .with_path("/app"),
        SessionConfig::default()
            .with_cookie_name("__Host-id")
            .with_secure(false),
        SessionConfig::default()
            .with_cookie_name("__Secure-id")
            .with_secure(false),
        SessionConfig::default()
            .with_same_site(SameSite::None)
            .with_secure(false),
        SessionConfig::default().with_idle_timeout(Duration::ZERO),
        SessionConfig::default()
            .with_idle_timeout(Duration::from_secs(10))
            .with_refresh_threshold(Duration::from_secs(11)),
        SessionConfig::default().with_absolute_lifetime(Some(Duration::from_millis(10))),
        SessionConfig::default().with_idle_timeout(Duration::MAX),
        SessionConfig::default().with_idle_timeout(MAX_DURATION + Duration::from_secs(1)),
        SessionConfig::default().with_absolute_lifetime(Some(Duration::from_secs(u64::MAX))),
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
    }
    SessionConfig::default()
        .with_cookie_name("__Host-id")
        .validate()
        .unwrap();
    SessionConfig::default()
        .with_idle_timeout(MAX_DURATION)
        .with_absolute_lifetime(Some(MAX_DURATION))
        .validate()
        .unwrap();
}

#[test]
fn per_session_expiry_stays_in_range() {
    let e = Expiry::remember_me(Duration::MAX);
    assert_eq!(e.idle, Some(MAX_DURATION));
    assert_eq!(e.absolute, Some(Some(MAX_DURATION)));
    assert_eq!(Expiry::idle(Duration::ZERO).idle, Some(MIN_DURATION));
    // A fixed end: the time left from when it is written, within the bounds.
    let at = Expiry::at(crate::time::system_time(100_000));
    assert_eq!(
        at.absolute_from(40_000),
        Some(Some(Duration::from_secs(60)))
    );
    assert_eq!(
        at.absolute_from(100_000),
        Some(Some(MIN_DURATION)),
        "past: 1 s"
    );
    let later = at.with_absolute_lifetime(None);
    assert_eq!(
        later.absolute_from(40_000),
        Some(None),
        "the last one set wins"
    );
    assert_eq!(Expiry::default().absolute_from(0), None, "nothing changed");
}
