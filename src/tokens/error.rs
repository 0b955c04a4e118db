//! [`TokenError`] and its HTTP responses (RFC 6749, RFC 6750).

use super::*;

/// What a token operation can fail with.
///
/// `IntoResponse`: [`InvalidToken`](Self::InvalidToken) answers `401` with
/// `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750); refresh failures answer
/// `400 {"error":"invalid_grant"}` (RFC 6749 §5.2); store failures answer `503`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The access token is malformed, forged, expired or revoked.
    #[error("invalid access token")]
    InvalidToken,
    /// No `Authorization: Bearer` header ([`Bearer`]).
    #[error("no bearer token")]
    MissingToken,
    /// The `Authorization` header is not `Bearer <token68>`, or appears more than once
    /// ([`Bearer`]).
    #[error("malformed Authorization header")]
    MalformedAuthorization,
    /// [`Tokens::layer`] is not installed on the route of a [`Bearer`] extractor.
    #[error("Tokens missing from request extensions: add `.layer(tokens.layer())`")]
    MissingLayer,
    /// The refresh token is malformed, unknown, expired, or its family or session ended.
    #[error("invalid refresh token")]
    InvalidGrant,
    /// The refresh token was already used: its whole family has been revoked (a stolen
    /// token was probably replayed). Nothing of that family works any more.
    #[error("refresh token reused; its token family was revoked")]
    Reused {
        /// The revoked family.
        family: FamilyId,
    },
    /// The refresh token was rotated moments ago (within the grace window): a client's
    /// double submit. No tokens are issued; the family is kept.
    #[error("refresh token already rotated")]
    Raced,
    /// Tokens can be bound only to a logged-in session of this store's namespace.
    #[error("the session is not logged in in this token store's namespace")]
    NotLoggedIn,
    /// The session ended before its tokens could be issued.
    #[error("the session has ended")]
    SessionEnded,
    /// The user id is empty, longer than 256 bytes or holds a control character.
    /// Nothing was issued.
    #[error("invalid user id: {0}")]
    InvalidUserId(&'static str),
    /// A request parameter (named here: `scope`, `client_id`, `nonce`) is empty,
    /// longer than 256 bytes or not printable ASCII, or one an ID token needs is
    /// missing. Nothing was issued.
    #[error("invalid request parameter: {0}")]
    InvalidRequest(&'static str),
    /// The scope asks for an OpenID Connect ID token, but this `Tokens` cannot sign one
    /// (no feature `jwt`, no `JwtKeys`, or keys without an issuer). Nothing was
    /// issued.
    #[error("ID tokens are not configured: {0}")]
    IdTokenUnavailable(&'static str),
    /// [`Tokens::login`] was called on `Tokens` without
    /// [`with_session_layer`](Tokens::with_session_layer) (which keeps devices alive
    /// through their bearer requests), or with a session of another store. Nothing
    /// was written.
    #[error("Tokens::login needs Tokens::with_session_layer on the session's store")]
    NoSessionLayer,
    /// The store failed.
    #[error("token store unavailable")]
    Store(#[from] StoreError),
    /// Loading the session failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        match self {
            Self::InvalidToken | Self::NotLoggedIn | Self::SessionEnded => {
                bearer::challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"))
            }
            Self::MissingToken => bearer::challenge(StatusCode::UNAUTHORIZED, None),
            Self::MalformedAuthorization => {
                bearer::challenge(StatusCode::BAD_REQUEST, Some("invalid_request"))
            }
            Self::InvalidGrant | Self::Reused { .. } | Self::Raced => {
                oauth_error("invalid_grant", &self)
            }
            Self::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
            )
                .into_response(),
            Self::InvalidUserId(_) => (StatusCode::BAD_REQUEST, "invalid user id").into_response(),
            Self::InvalidRequest(_) => oauth_error("invalid_request", &self),
            Self::IdTokenUnavailable(_) | Self::MissingLayer | Self::NoSessionLayer => {
                tracing::error!("{self}");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            Self::Session(e) => e.into_response(),
        }
    }
}

/// A `400` RFC 6749 §5.2 error: `{"error": code, "error_description": <the error's
/// text>}`, never cached. The text is the variant's fixed message (and for an invalid
/// request the parameter's name): never a token or a secret.
fn oauth_error(code: &'static str, error: &TokenError) -> Response {
    let body = serde_json::json!({ "error": code, "error_description": error.to_string() });
    let mut r = (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
