//! The `Authorization: Bearer` extractor (RFC 6750).

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};

use super::{TokenClaims, TokenError, Tokens};

/// The claims of a valid bearer access token, as an axum extractor.
///
/// Needs [`Tokens::layer`] on the router. Answers RFC 6750 errors: `401` with
/// `WWW-Authenticate: Bearer` when there is no token, `401` with
/// `error="invalid_token"` when it is malformed, forged, expired or revoked, `400`
/// with `error="invalid_request"` when the header is malformed or repeated, `503` when
/// the store is unavailable. Use `Option<Bearer>` for routes open to anonymous callers.
///
/// ```
/// use tower_redis_session::tokens::Bearer;
///
/// async fn me(Bearer(claims): Bearer) -> String {
///     claims.user_id
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Bearer(pub TokenClaims);

/// A `WWW-Authenticate: Bearer` challenge with an optional RFC 6750 error code.
pub(crate) fn challenge(status: StatusCode, error: Option<&'static str>) -> Response {
    let value = match error {
        None => HeaderValue::from_static("Bearer"),
        Some("invalid_request") => HeaderValue::from_static(r#"Bearer error="invalid_request""#),
        Some(_) => HeaderValue::from_static(
            r#"Bearer error="invalid_token", error_description="The access token is invalid or expired""#,
        ),
    };
    let mut r = status.into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The token of an `Authorization` header: `Bearer <token68>` (scheme
/// case-insensitive, RFC 6750 §2.1).
fn token(parts: &Parts) -> Result<&str, TokenError> {
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(TokenError::MissingToken)?;
    if values.next().is_some() {
        return Err(TokenError::MalformedAuthorization);
    }
    let value = value
        .to_str()
        .map_err(|_| TokenError::MalformedAuthorization)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(TokenError::MalformedAuthorization)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::MissingToken);
    }
    let token68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
    let body = token.trim_end_matches('=');
    if body.is_empty() || !body.bytes().all(token68) {
        return Err(TokenError::MalformedAuthorization);
    }
    Ok(token)
}

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    /// Answers per RFC 6750 §3: [`TokenError::MissingToken`] (401 with a bare
    /// challenge), [`TokenError::MalformedAuthorization`] (400, `invalid_request`),
    /// [`TokenError::InvalidToken`] (401, `invalid_token`), a store failure (503), or
    /// [`TokenError::MissingLayer`] (500).
    type Rejection = TokenError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let tokens = parts
            .extensions
            .get::<Tokens>()
            .cloned()
            .ok_or(TokenError::MissingLayer)?;
        let token = token(parts)?;
        Ok(Self(tokens.authenticate(token).await?))
    }
}

impl<S: Send + Sync> axum_core::extract::OptionalFromRequestParts<S> for Bearer {
    type Rejection = TokenError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <Self as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(b) => Ok(Some(b)),
            Err(TokenError::MissingToken) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(values: &[&str]) -> Parts {
        let mut b = http::Request::builder();
        for v in values {
            b = b.header(header::AUTHORIZATION, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn header_parsing() {
        assert_eq!(token(&parts(&["Bearer at.x"])).unwrap(), "at.x");
        assert_eq!(token(&parts(&["bearer abc=="])).unwrap(), "abc==");
        assert!(matches!(token(&parts(&[])), Err(TokenError::MissingToken)));
        assert!(matches!(
            token(&parts(&["Basic abc"])),
            Err(TokenError::MissingToken)
        ));
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\"b",
            "Bearer  a",
            "Bearer =",
        ] {
            assert!(
                matches!(
                    token(&parts(&[bad])),
                    Err(TokenError::MalformedAuthorization)
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            token(&parts(&["Bearer a", "Bearer b"])),
            Err(TokenError::MalformedAuthorization)
        ));
    }
}
