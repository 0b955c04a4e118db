//! What token operations hand out and take: pairs, claims, family listings, issue
//! options.

use super::*;

/// A new access and refresh token. Serializes as an OAuth 2.0 token response
/// (RFC 6749 §5.1). `Debug` is redacted.
#[derive(Clone, serde::Serialize)]
pub struct TokenPair {
    pub(super) access_token: String,
    pub(super) token_type: &'static str,
    /// Seconds until the access token expires.
    pub(super) expires_in: u64,
    pub(super) refresh_token: String,
    /// Seconds until the refresh token expires unused.
    pub(super) refresh_token_expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) scope: Option<String>,
    /// An OpenID Connect ID token, when the scope holds `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id_token: Option<String>,
    #[serde(skip)]
    pub(super) family: FamilyId,
}

impl TokenPair {
    /// The access token, for `Authorization: Bearer`.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The refresh token, for [`Tokens::refresh`].
    pub fn refresh_token(&self) -> &str {
        &self.refresh_token
    }

    /// How long the access token is valid.
    pub fn expires_in(&self) -> Duration {
        Duration::from_secs(self.expires_in)
    }

    /// How long the refresh token stays valid unused.
    pub fn refresh_expires_in(&self) -> Duration {
        Duration::from_secs(self.refresh_token_expires_in)
    }

    /// The family both tokens belong to.
    pub fn family(&self) -> FamilyId {
        self.family
    }

    /// The OpenID Connect ID token issued with the pair (feature `jwt`, scope holding
    /// `openid`), if any.
    pub fn id_token(&self) -> Option<&str> {
        self.id_token.as_deref()
    }
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("family", &self.family)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// What an authenticated access token says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenClaims {
    pub(super) user_id: String,
    pub(super) family: FamilyId,
    pub(super) session: Option<SessionHandle>,
    pub(super) scope: Option<String>,
    pub(super) issued_ms: i64,
    pub(super) expires_ms: i64,
}

impl TokenClaims {
    /// The user the token was issued to.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The token's family.
    pub fn family(&self) -> FamilyId {
        self.family
    }

    /// The session the family is bound to, if any.
    pub fn session(&self) -> Option<SessionHandle> {
        self.session
    }

    /// The scope given at issue, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// When the token was issued.
    pub fn issued_at(&self) -> SystemTime {
        time(self.issued_ms)
    }

    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        time(self.expires_ms)
    }
}

/// What a verified OpenID Connect ID token says ([`Tokens::verify_id_token`]).
#[cfg(feature = "jwt")]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IdTokenClaims {
    pub(super) subject: String,
    pub(super) audience: String,
    pub(super) issuer: String,
    pub(super) issued_ms: i64,
    pub(super) expires_ms: i64,
    pub(super) auth_time_ms: i64,
    pub(super) nonce: Option<String>,
    pub(super) session: Option<SessionHandle>,
    pub(super) family: FamilyId,
}

#[cfg(feature = "jwt")]
impl IdTokenClaims {
    /// The user (`sub`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The client it was issued to (`aud`).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// When it was issued.
    pub fn issued_at(&self) -> SystemTime {
        time(self.issued_ms)
    }

    /// When it expires.
    pub fn expires_at(&self) -> SystemTime {
        time(self.expires_ms)
    }

    /// When the user authenticated (`auth_time`).
    pub fn auth_time(&self) -> SystemTime {
        time(self.auth_time_ms)
    }

    /// The client's `nonce`, if it sent one.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// The session it is bound to (`sid`), if any.
    pub fn session(&self) -> Option<SessionHandle> {
        self.session
    }

    /// The token family it belongs to.
    pub fn family(&self) -> FamilyId {
        self.family
    }
}

/// A live token family of a user (one signed-in app or device), as listed by
/// [`Tokens::list`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FamilyInfo {
    pub(super) family: FamilyId,
    pub(super) created_ms: i64,
    pub(super) refreshed_ms: Option<i64>,
    pub(super) expires_ms: i64,
    pub(super) session: Option<SessionHandle>,
    pub(super) scope: Option<String>,
    pub(super) id_token_expires_ms: Option<i64>,
    pub(super) client_id: Option<String>,
}

impl FamilyInfo {
    /// The family's id: pass it to [`Tokens::revoke_family`].
    pub fn family(&self) -> FamilyId {
        self.family
    }

    /// When it was issued (the login).
    pub fn created(&self) -> SystemTime {
        time(self.created_ms)
    }

    /// When it was last refreshed, if ever.
    pub fn last_refreshed(&self) -> Option<SystemTime> {
        self.refreshed_ms.map(time)
    }

    /// When its last token expires unless refreshed.
    pub fn expires(&self) -> SystemTime {
        time(self.expires_ms)
    }

    /// The session it is bound to, if any.
    pub fn session(&self) -> Option<SessionHandle> {
        self.session
    }

    /// Its scope, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// When its OpenID Connect ID token expires, if it has a live one.
    pub fn id_token_expires(&self) -> Option<SystemTime> {
        self.id_token_expires_ms.map(time)
    }

    /// The OAuth client it was issued to ([`IssueOptions::client_id`]), if any.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
}

/// Options for [`Tokens::issue_with`] and [`Tokens::issue_for_session`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct IssueOptions {
    pub(super) scope: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) nonce: Option<String>,
    pub(super) auth_time: Option<SystemTime>,
}

/// Longest client id or nonce, in bytes.
const MAX_PARAMETER: usize = 256;

impl IssueOptions {
    /// A scope carried by every token of the family (RFC 6749 §3.3). A scope holding
    /// `openid` also issues an OpenID Connect ID token (feature `jwt`; needs a
    /// [`client_id`](Self::client_id) and `JwtKeys` with an issuer).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The OAuth client the tokens are for: the ID token's audience (`aud`). The family
    /// remembers it: only [`Tokens::refresh_for_client`] and
    /// [`Tokens::revoke_for_client`] with this client refresh or revoke it (RFC 6749 §6,
    /// RFC 7009 §2.1); [`Tokens::refresh`] refuses it.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client's `nonce`, echoed in the ID token (OpenID Connect Core §3.1.2.1).
    pub fn nonce(mut self, nonce: impl Into<String>) -> Self {
        self.nonce = Some(nonce.into());
        self
    }

    /// When the user authenticated (the ID token's `auth_time`). Default: the session's
    /// login ([`Session::authenticated_at`]) for [`Tokens::issue_for_session`], else the
    /// time of issue.
    pub fn auth_time(mut self, at: SystemTime) -> Self {
        self.auth_time = Some(at);
        self
    }

    /// Whether the scope asks for an ID token.
    pub(super) fn openid(&self) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|w| w == "openid"))
    }

    /// Checks the client-supplied values; nothing is issued when one is refused.
    pub(super) fn check(&self) -> Result<(), TokenError> {
        for (what, v) in [
            ("scope", &self.scope),
            ("client_id", &self.client_id),
            ("nonce", &self.nonce),
        ] {
            if let Some(v) = v
                && (v.is_empty()
                    || v.len() > MAX_PARAMETER
                    || !v.bytes().all(|b| (0x20..0x7f).contains(&b)))
            {
                return Err(TokenError::InvalidRequest(what));
            }
        }
        if self.openid() && self.client_id.is_none() {
            return Err(TokenError::InvalidRequest("client_id"));
        }
        Ok(())
    }
}
