//! Token lifetimes and limits.

use super::*;

/// Token lifetimes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct TokenConfig {
    pub(super) access_ttl: Duration,
    pub(super) refresh_ttl: Duration,
    pub(super) family_lifetime: Duration,
    pub(super) reuse_grace: Duration,
    pub(super) max_families: Option<usize>,
    pub(super) id_token_ttl: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            family_lifetime: Duration::from_secs(90 * 86_400),
            reuse_grace: Duration::from_secs(10),
            max_families: Some(100),
            id_token_ttl: Duration::from_secs(3600),
        }
    }
}

impl TokenConfig {
    /// How long an access token is valid. Default: 1 hour.
    pub fn with_access_ttl(mut self, d: Duration) -> Self {
        self.access_ttl = d;
        self
    }

    /// How long an OpenID Connect ID token is valid (and listed with its family).
    /// Default: 1 hour.
    pub fn with_id_token_ttl(mut self, d: Duration) -> Self {
        self.id_token_ttl = d;
        self
    }

    /// How long a refresh token stays valid unused (each refresh issues a new one).
    /// Default: 30 days.
    pub fn with_refresh_ttl(mut self, d: Duration) -> Self {
        self.refresh_ttl = d;
        self
    }

    /// Absolute lifetime of a token family (one login): no token of it outlives this.
    /// Default: 90 days.
    pub fn with_family_lifetime(mut self, d: Duration) -> Self {
        self.family_lifetime = d;
        self
    }

    /// How long after a refresh the token it consumed may be presented again without
    /// revoking the family (it gets [`TokenError::Raced`], not new tokens). Default:
    /// 10 s; zero makes every replay a reuse.
    pub fn with_reuse_grace(mut self, d: Duration) -> Self {
        self.reuse_grace = d;
        self
    }

    /// At most `max` (at least 1) live token families (signed-in apps) per user: issuing
    /// one more ends the family closest to expiry (the least recently refreshed),
    /// reported as a revocation. Default: 100. Every token operation costs the same
    /// however many families a user has; this bounds what listing and revoking all of
    /// a user's tokens go through.
    pub fn with_max_families_per_user(mut self, max: usize) -> Self {
        self.max_families = Some(max.max(1));
        self
    }

    /// No limit on token families per user.
    ///
    /// # Warning
    /// A client that logs in in a loop then grows its user's family index without
    /// bound; listing and revoking all of that user's tokens still go in bounded steps,
    /// but take as many steps as there are families.
    pub fn without_family_limit(mut self) -> Self {
        self.max_families = None;
        self
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (what, d) in [
            ("access token TTL", self.access_ttl),
            ("refresh token TTL", self.refresh_ttl),
            ("token family lifetime", self.family_lifetime),
            ("ID token TTL", self.id_token_ttl),
        ] {
            if !(MIN_DURATION..=MAX_DURATION).contains(&d) {
                return Err(ConfigError::TokenLifetime { what, got: d });
            }
        }
        if self.reuse_grace >= self.refresh_ttl {
            return Err(ConfigError::TokenLifetime {
                what: "reuse grace (must be shorter than the refresh token TTL)",
                got: self.reuse_grace,
            });
        }
        Ok(())
    }

    pub(super) fn ttls(&self) -> Ttls {
        Ttls {
            access: millis(self.access_ttl),
            refresh_idle: millis(self.refresh_ttl),
            family: millis(self.family_lifetime),
            grace: millis(self.reuse_grace),
            id: millis(self.id_token_ttl),
        }
    }
}
