//! What token operations hand out and take: pairs, claims, family listings, issue
//! options.

use super::*;

/// A new access and refresh token. Serializes as an OAuth 2.0 token response
/// (RFC 6749 §5.1). `Debug` is redacted.
#[derive(Clone, serde::Serialize)]
#[non_exhaustive]
pub struct TokenPair {
    /// The access token, for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `"Bearer"`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The refresh token, for [`Tokens::refresh`].
    pub refresh_token: String,
    /// Seconds until the refresh token expires unused.
    pub refresh_token_expires_in: u64,
    /// The family's scope, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// An OpenID Connect ID token, when the scope holds `openid` (feature `jwt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The family both tokens belong to (not serialized).
    #[serde(skip)]
    pub family: FamilyId,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("family", &self.family)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// What an authenticated access token says. Serialized with the times as Unix
/// milliseconds (`issued_ms`, `expires_ms`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TokenClaims {
    /// The user the token was issued to.
    pub user_id: String,
    /// The token's family.
    pub family: FamilyId,
    /// The session the family is bound to, if any.
    pub session: Option<SessionHandle>,
    /// The scope given at issue, if any.
    pub scope: Option<String>,
    /// When the token was issued.
    #[serde(rename = "issued_ms", serialize_with = "crate::time::serialize_ms")]
    pub issued_at: SystemTime,
    /// When the token expires.
    #[serde(rename = "expires_ms", serialize_with = "crate::time::serialize_ms")]
    pub expires_at: SystemTime,
}

/// What a verified OpenID Connect ID token says ([`Tokens::verify_id_token`]).
/// Serialized with the times as Unix milliseconds (`issued_ms`, `expires_ms`,
/// `auth_time_ms`).
#[cfg(feature = "jwt")]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct IdTokenClaims {
    /// The user (`sub`).
    pub subject: String,
    /// The client it was issued to (`aud`).
    pub audience: String,
    /// The issuer (`iss`).
    pub issuer: String,
    /// When it was issued.
    #[serde(rename = "issued_ms", serialize_with = "crate::time::serialize_ms")]
    pub issued_at: SystemTime,
    /// When it expires.
    #[serde(rename = "expires_ms", serialize_with = "crate::time::serialize_ms")]
    pub expires_at: SystemTime,
    /// When the user authenticated (`auth_time`).
    #[serde(rename = "auth_time_ms", serialize_with = "crate::time::serialize_ms")]
    pub auth_time: SystemTime,
    /// The client's `nonce`, if it sent one.
    pub nonce: Option<String>,
    /// The session it is bound to (`sid`), if any.
    pub session: Option<SessionHandle>,
    /// The token family it belongs to.
    pub family: FamilyId,
}

/// A live token family of a user (one signed-in app or device), as listed by
/// [`Tokens::list`]. Serialized with the times as Unix milliseconds (`created_ms`,
/// `refreshed_ms`, `expires_ms`, `id_token_expires_ms`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct FamilyInfo {
    /// The family's id: pass it to [`Tokens::revoke_family`].
    pub family: FamilyId,
    /// When it was issued (the login).
    #[serde(rename = "created_ms", serialize_with = "crate::time::serialize_ms")]
    pub created: SystemTime,
    /// When it was last refreshed, if ever.
    #[serde(
        rename = "refreshed_ms",
        serialize_with = "crate::time::serialize_opt_ms"
    )]
    pub last_refreshed: Option<SystemTime>,
    /// When its last token expires unless refreshed.
    #[serde(rename = "expires_ms", serialize_with = "crate::time::serialize_ms")]
    pub expires: SystemTime,
    /// The session it is bound to, if any.
    pub session: Option<SessionHandle>,
    /// Its scope, if any.
    pub scope: Option<String>,
    /// When its OpenID Connect ID token expires, if it has a live one.
    #[serde(
        rename = "id_token_expires_ms",
        serialize_with = "crate::time::serialize_opt_ms"
    )]
    pub id_token_expires: Option<SystemTime>,
    /// The OAuth client it was issued to ([`IssueOptions::with_client_id`]), if any.
    pub client_id: Option<String>,
}

/// Options for [`Tokens::issue_with`], [`Tokens::issue_for_session`] and
/// [`Tokens::login`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct IssueOptions {
    pub(super) scope: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) nonce: Option<String>,
    pub(super) auth_time: Option<SystemTime>,
    pub(super) details: Option<crate::SessionDetails>,
}

/// Longest client id or nonce, in bytes.
const MAX_PARAMETER: usize = 256;

impl IssueOptions {
    /// A scope carried by every token of the family (RFC 6749 §3.3). A scope holding
    /// `openid` also issues an OpenID Connect ID token (feature `jwt`; needs a
    /// [`client_id`](Self::with_client_id) and `JwtKeys` with an issuer).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The OAuth client the tokens are for: the ID token's audience (`aud`). The family
    /// remembers it: only [`Tokens::refresh_for_client`] and
    /// [`Tokens::revoke_for_client`] with this client refresh or revoke it (RFC 6749 §6,
    /// RFC 7009 §2.1); [`Tokens::refresh`] refuses it.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client's `nonce`, echoed in the ID token (OpenID Connect Core §3.1.2.1).
    pub fn with_nonce(mut self, nonce: impl Into<String>) -> Self {
        self.nonce = Some(nonce.into());
        self
    }

    /// When the user authenticated (the ID token's `auth_time`). Default: the session's
    /// login ([`Session::authenticated_at`]) for [`Tokens::issue_for_session`], else the
    /// time of issue.
    pub fn with_auth_time(mut self, at: SystemTime) -> Self {
        self.auth_time = Some(at);
        self
    }

    /// Display details of the device [`Tokens::login`] creates (a device name, say),
    /// shown with the user's sessions; other ways of issuing ignore them.
    pub fn with_details(mut self, details: crate::SessionDetails) -> Self {
        self.details = Some(details);
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
