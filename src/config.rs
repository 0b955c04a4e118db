//! Session and cookie configuration, validated once when the layer is built.

use std::time::Duration;

#[doc(no_inline)]
pub use cookie::SameSite;

use crate::error::ConfigError;

/// Configuration of the session layer: timeouts and cookie attributes.
///
/// Every default is the secure choice; see each setter.
///
/// ```
/// use std::time::Duration;
/// use tower_redis_session::{MemoryStore, SessionConfig, SessionLayer};
///
/// let config = SessionConfig::default()
///     .with_cookie_name("__Host-sid")
///     .with_idle_timeout(Duration::from_secs(15 * 60))
///     .with_absolute_lifetime(Some(Duration::from_secs(8 * 3600)));
/// // The layer checks the configuration once, when it is built.
/// assert!(SessionLayer::new(MemoryStore::new(), config).is_ok());
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct SessionConfig {
    pub(crate) cookie: CookieConfig,
    pub(crate) idle_timeout: Duration,
    pub(crate) refresh_threshold: Option<Duration>,
    pub(crate) absolute_lifetime: Option<Duration>,
    pub(crate) persistent: bool,
    pub(crate) limit: Option<SessionLimit>,
    pub(crate) client_ip_header: Option<http::HeaderName>,
    pub(crate) store_down: StoreDownPolicy,
    pub(crate) max_session_size: usize,
}

/// What a request gets when the store cannot load its session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreDownPolicy {
    /// The handler gets [`SessionError::Store`](crate::SessionError::Store) and the layer
    /// answers with its store-unavailable response (503 by default).
    #[default]
    FailClosed,
    /// The request is served as anonymous: the session reads as empty, nothing is
    /// written and the cookie is left as it is, so the session is intact when the store
    /// returns. Logins, logouts and revocations still fail with an error.
    ///
    /// # Warning
    /// Handlers must not treat "no user" as proof that the visitor is not logged in
    /// (e.g. to show a login form that then fails).
    Anonymous,
}

/// What a login does when the user already has the maximum number of sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitPolicy {
    /// The login fails with [`SessionError::TooManySessions`](crate::SessionError::TooManySessions)
    /// (answer it with 409 Conflict); the existing sessions and the one logging in are
    /// untouched.
    Reject,
    /// The least recently active session of the user is destroyed to make room.
    EvictOldest,
}

/// At most `max` sessions per user, enforced atomically at login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimit {
    /// The maximum number of live sessions of one user (at least 1).
    pub max: usize,
    /// What happens at the limit.
    pub policy: LimitPolicy,
}

/// Cookie attributes.
#[derive(Clone, Debug)]
pub(crate) struct CookieConfig {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie: CookieConfig {
                name: "__Host-id".to_owned(),
                path: "/".to_owned(),
                domain: None,
                secure: true,
                http_only: true,
                same_site: SameSite::Lax,
            },
            idle_timeout: Duration::from_secs(30 * 60),
            refresh_threshold: None,
            absolute_lifetime: Some(Duration::from_secs(12 * 3600)),
            persistent: false,
            limit: Some(SessionLimit {
                max: 100,
                policy: LimitPolicy::EvictOldest,
            }),
            client_ip_header: None,
            store_down: StoreDownPolicy::FailClosed,
            max_session_size: 64 * 1024,
        }
    }
}

impl SessionConfig {
    /// Cookie name. Default: `__Host-id` (generic, revealing nothing about the stack; the
    /// `__Host-` prefix makes browsers refuse a cookie of that name planted by a sibling
    /// subdomain, and they accept it on `http://localhost` too).
    ///
    /// A name starting with `__Host-` is checked to be `Secure`, `Path=/` and without
    /// `Domain`; `__Secure-` to be `Secure`. To set a `Domain` or another `Path`, or to
    /// turn `Secure` off, choose another name (e.g. `id`, or `__Secure-id` with a
    /// `Domain`): [`SessionLayer::new`](crate::SessionLayer::new) refuses the combination otherwise.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into();
        self
    }

    /// Cookie `Path`. Default: `/`.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.cookie.path = path.into();
        self
    }

    /// Cookie `Domain`. Default: none (host-only cookie).
    ///
    /// # Warning
    /// A domain makes the cookie visible to every subdomain.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie.domain = Some(domain.into());
        self
    }

    /// Cookie `Secure` attribute. Default: `true`.
    ///
    /// # Warning
    /// Without it the cookie travels over plain HTTP, where anyone on the path can take
    /// the session. Only turn it off for local development over `http://` on a host
    /// other than `localhost` (browsers accept `Secure` cookies on `http://localhost`),
    /// and then choose a cookie name without the `__Host-` prefix.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.cookie.secure = secure;
        self
    }

    /// Cookie `HttpOnly` attribute. Default: `true`.
    ///
    /// # Warning
    /// Without it any script on the page, including an injected one, can read the
    /// session cookie.
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.cookie.http_only = http_only;
        self
    }

    /// Cookie `SameSite` attribute. Default: `Lax`.
    ///
    /// # Warning
    /// `None` sends the cookie on cross-site requests (CSRF exposure) and requires
    /// `Secure`.
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.cookie.same_site = same_site;
        self
    }

    /// Idle timeout: a session unused this long expires (enforced by the Redis TTL).
    /// Default: 30 minutes.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// The TTL is refreshed on a read only once less than this remains. Default: half
    /// the idle timeout, so a busy session costs one extra command per half idle period.
    /// Setting it equal to the idle timeout refreshes on every read.
    pub fn with_refresh_threshold(mut self, threshold: Duration) -> Self {
        self.refresh_threshold = Some(threshold);
        self
    }

    /// Absolute lifetime from creation, after which the session ends however active it
    /// is; the TTL is never extended past it. Default: 12 hours. `None` removes it.
    ///
    /// # Warning
    /// Without an absolute lifetime a stolen, regularly used cookie never expires.
    pub fn with_absolute_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.absolute_lifetime = lifetime;
        self
    }

    /// Persistent cookies carry `Max-Age` equal to the session's TTL and survive a
    /// browser restart; otherwise the cookie ends with the browser session.
    /// Default: `false`. Per session: [`Session::set_expiry`](crate::Session::set_expiry).
    pub fn with_persistent_cookie(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Limits each user to `max` live sessions (devices), enforced in the same atomic
    /// step as the login. Default: 100, [`LimitPolicy::EvictOldest`]. A login reads the
    /// user's index entries to find the least recently active, so the limit also bounds
    /// that work.
    pub fn with_max_sessions_per_user(mut self, max: usize, policy: LimitPolicy) -> Self {
        self.limit = Some(SessionLimit {
            max: max.max(1),
            policy,
        });
        self
    }

    /// No limit on sessions per user.
    ///
    /// # Warning
    /// A client that logs in in a loop then grows its user's index without bound. Each
    /// Redis call still does bounded work (listing in pages, revoking in steps), but
    /// log out everywhere then takes as many steps as there are sessions.
    pub fn without_session_limit(mut self) -> Self {
        self.limit = None;
        self
    }

    /// Reads the client IP recorded with a session from this header (its right-most
    /// entry, the one your proxy appended), e.g. `x-forwarded-for`. Default: the peer
    /// address from axum's `ConnectInfo<SocketAddr>`, if the app provides it.
    ///
    /// # Warning
    /// Only set this behind a proxy that always sets the header: otherwise clients choose
    /// the IP shown in their session list.
    pub fn with_client_ip_header(mut self, header: http::HeaderName) -> Self {
        self.client_ip_header = Some(header);
        self
    }

    /// What happens when the store cannot load a session. Default:
    /// [`StoreDownPolicy::FailClosed`].
    pub fn with_store_down_policy(mut self, policy: StoreDownPolicy) -> Self {
        self.store_down = policy;
        self
    }

    /// Largest session (sum of key and JSON value lengths) an insert may produce;
    /// larger inserts fail with [`SessionError::TooLarge`](crate::SessionError::TooLarge)
    /// and change nothing. Default: 64 KiB.
    ///
    /// The limit also holds where concurrent requests' changes merge: the store checks
    /// the size after merging in the same atomic write. A request whose changes fit
    /// the session as it loaded it, but not as other requests have grown it since, has
    /// nothing written and is answered `413 Payload Too Large`.
    pub fn with_max_session_size(mut self, bytes: usize) -> Self {
        self.max_session_size = bytes;
        self
    }

    /// Checks the configuration; [`SessionLayer::new`](crate::SessionLayer::new) calls it
    /// and returns the first [`ConfigError`] found.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.cookie;
        if c.name.is_empty() || !c.name.bytes().all(is_token_char) {
            return Err(ConfigError::InvalidCookieName(c.name.clone()));
        }
        if c.name.starts_with("__Host-") && (!c.secure || c.path != "/" || c.domain.is_some()) {
            return Err(ConfigError::HostPrefix);
        }
        if c.name.starts_with("__Secure-") && !c.secure {
            return Err(ConfigError::SecurePrefix);
        }
        if c.same_site == SameSite::None && !c.secure {
            return Err(ConfigError::SameSiteNoneWithoutSecure);
        }
        if !(MIN_DURATION..=MAX_DURATION).contains(&self.idle_timeout) {
            return Err(ConfigError::IdleTimeout(self.idle_timeout));
        }
        if let Some(t) = self.refresh_threshold
            && t > self.idle_timeout
        {
            return Err(ConfigError::RefreshThreshold {
                threshold: t,
                idle: self.idle_timeout,
            });
        }
        if let Some(a) = self.absolute_lifetime
            && !(MIN_DURATION..=MAX_DURATION).contains(&a)
        {
            return Err(ConfigError::AbsoluteLifetime(a));
        }
        Ok(())
    }

    /// Whether a read at `now` refreshes a session expiring at `expires_ms` (with its
    /// idle override and deadline, Unix ms): only below the threshold, and only if it
    /// gains something (near the absolute deadline the TTL cannot grow, so reads stop
    /// refreshing). The one rule for cookie reads and bearer requests.
    pub(crate) fn needs_refresh(
        &self,
        expires_ms: i64,
        idle_ms: Option<i64>,
        deadline_ms: Option<i64>,
        now: i64,
    ) -> bool {
        let idle = idle_ms.unwrap_or_else(|| millis(self.idle_timeout));
        let threshold = self.threshold_ms(idle);
        let remaining = expires_ms - now;
        if remaining >= threshold {
            return false;
        }
        let new_ttl = deadline_ms.map_or(idle, |d| idle.min(d - now));
        let gain = new_ttl - remaining;
        gain > 0 && gain > (idle - threshold) / 2
    }

    /// The refresh threshold for a session whose idle timeout is `idle_ms`.
    pub(crate) fn threshold_ms(&self, idle_ms: i64) -> i64 {
        match self.refresh_threshold {
            Some(t) => millis(t).min(idle_ms),
            None => idle_ms / 2,
        }
    }
}

/// RFC 6265 / RFC 7230 `token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Shortest idle timeout, lifetime or token TTL.
pub(crate) const MIN_DURATION: Duration = Duration::from_secs(1);

/// Longest idle timeout, lifetime or token TTL: 10 years. Deadlines stay far inside the
/// integers that Lua's doubles and `PEXPIRE` represent exactly.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

pub(crate) use crate::time::millis;

/// A per-session expiry override, e.g. "remember me". Stored with the session, so it
/// applies to every later request. What an override leaves unset stays as configured
/// (or as the session's earlier override set it): [`Expiry::default()`] changes nothing.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_redis_session::Expiry;
///
/// // 30 days, persistent cookie, absolute lifetime 30 days from creation.
/// let remember = Expiry::remember_me(Duration::from_secs(30 * 86_400));
/// // Shorter idle timeout for a sensitive area, keeping the configured lifetime.
/// let strict = Expiry::idle(Duration::from_secs(5 * 60));
/// // Ends in one day whatever the activity (tower-sessions' `Expiry::AtDateTime`).
/// let day = Expiry::at(SystemTime::now() + Duration::from_secs(86_400));
/// // Only the cookie: persistent, with the idle timeout and lifetime as they are.
/// let kept = Expiry::default().with_persistent_cookie(true);
/// # let _ = (remember, strict, day, kept);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    pub(crate) idle: Option<Duration>,
    pub(crate) absolute: Option<Option<Duration>>,
    /// A fixed end (Unix ms), in place of a lifetime counted from creation.
    pub(crate) until: Option<i64>,
    pub(crate) persistent: Option<bool>,
}

impl Expiry {
    /// Overrides the idle timeout (at least 1 s, at most 10 years: values outside are
    /// brought to the nearest bound); cookie mode and absolute lifetime stay.
    pub fn idle(idle: Duration) -> Self {
        Self {
            idle: Some(idle.clamp(MIN_DURATION, MAX_DURATION)),
            ..Self::default()
        }
    }

    /// "Remember me": idle timeout and absolute lifetime both `duration`, persistent
    /// cookie.
    pub fn remember_me(duration: Duration) -> Self {
        Self::idle(duration)
            .with_absolute_lifetime(Some(duration))
            .with_persistent_cookie(true)
    }

    /// Ends the session at `end`, however active it is (a fixed time, not counted from
    /// creation or the last request), with a persistent cookie that expires then. An
    /// `end` less than 1 s ahead (or past) when the session is written counts as 1 s; a
    /// later login starts a new lifetime, as every login does. Replaces an absolute
    /// lifetime set before; [`with_absolute_lifetime`](Self::with_absolute_lifetime)
    /// after it replaces the end.
    pub fn at(end: std::time::SystemTime) -> Self {
        Self {
            idle: Some(MAX_DURATION),
            until: Some(crate::time::unix_ms(end)),
            persistent: Some(true),
            ..Self::default()
        }
    }

    /// Sets the absolute lifetime, counted from the session's creation; `None` removes it.
    /// Between 1 s and 10 years; values outside are brought to the nearest bound.
    pub fn with_absolute_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.absolute = Some(lifetime.map(|l| l.clamp(MIN_DURATION, MAX_DURATION)));
        self.until = None;
        self
    }

    /// Sets the cookie mode: persistent (`Max-Age`) or browser session.
    pub fn with_persistent_cookie(mut self, persistent: bool) -> Self {
        self.persistent = Some(persistent);
        self
    }

    /// The lifetime override counted from `from_ms` (Unix ms): a fixed end becomes the
    /// time left until it (at least 1 s, at most 10 years).
    pub(crate) fn absolute_from(&self, from_ms: i64) -> Option<Option<Duration>> {
        match self.until {
            Some(end) => {
                let left = u64::try_from(end.saturating_sub(from_ms)).unwrap_or(0);
                Some(Some(
                    Duration::from_millis(left).clamp(MIN_DURATION, MAX_DURATION),
                ))
            }
            None => self.absolute,
        }
    }
}

#[cfg(test)]
mod tests;
