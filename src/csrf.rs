//! Cross-site request forgery protection for cookie-authenticated requests:
//! [`CsrfLayer`], and [`CsrfToken`] for forms.
//!
//! `SameSite=Lax` keeps the session cookie off cross-*site* requests, but not off
//! requests from another origin of the same site: a page on another port of the same
//! host, or on a sibling subdomain, can submit a form to your app with the user's
//! cookie. [`CsrfLayer`] refuses such requests with `403 Forbidden`:
//!
//! 1. Safe methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`) always pass: they must not
//!    change state.
//! 2. Requests with an `Authorization: Bearer` header pass: they are not
//!    authenticated by a cookie, and a page of another origin cannot add that header.
//! 3. An `Origin` listed with [`CsrfLayer::with_trusted_origin`] passes.
//! 4. Fetch metadata, as OWASP's cheat sheet and Go's `CrossOriginProtection` use it:
//!    `Sec-Fetch-Site: same-origin` or `none` passes, any other value is refused.
//! 5. Without fetch metadata, an `Origin` header must name the request's own host.
//! 6. A request with neither (an old browser, a non-browser client) must carry a token
//!    from [`CsrfToken`]: in the `x-csrf-token` header or, for a
//!    `application/x-www-form-urlencoded` body of at most 64 KiB, in a `csrf_token`
//!    form field. A missing or wrong token is refused.
//!
//! Tokens are bound to the session: a per-session secret (kept in the session under
//! the reserved key `__csrf`, created when a form first asks for a token) and a fresh
//! random nonce per token, authenticated with HMAC-SHA256. Every render gives
//! different bytes, so a compressed page does not leak the secret (BREACH), and a
//! token of one session is worthless in another.
//!
//! Put the layer inside [`SessionLayer`](crate::SessionLayer) (added before it), so
//! the token check can read the session:
//!
//! ```rust
//! use axum::{Router, routing::post};
//! use tower_redis_session::{CsrfLayer, MemoryStore, SessionConfig, SessionLayer};
//!
//! # fn app() -> Result<Router, Box<dyn std::error::Error>> {
//! let app: Router = Router::new()
//!     .route("/transfer", post(|| async { "done" }))
//!     .layer(CsrfLayer::new())
//!     .layer(SessionLayer::new(MemoryStore::new(), SessionConfig::default())?);
//! # Ok(app) }
//! ```
//!
//! And in a form (escape nothing: a token is base64url):
//!
//! ```rust
//! use axum::response::Html;
//! use tower_redis_session::CsrfToken;
//!
//! async fn form(token: CsrfToken) -> Html<String> {
//!     Html(format!(
//!         "<form method=post action=/transfer>\
//!          <input type=hidden name=csrf_token value={}>\
//!          <button>Send</button></form>",
//!         token
//!     ))
//! }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{HeaderMap, Method, Request, StatusCode, header};
use sha2::Sha256;

use crate::error::ConfigError;
use crate::session::Session;

/// The session key holding the per-session secret.
const SECRET_KEY: &str = "__csrf";
/// The form field and the header that carry a token.
const FIELD: &str = "csrf_token";
const HEADER: &str = "x-csrf-token";
/// The largest form body the token check reads.
const MAX_FORM: usize = 64 * 1024;
const SECRET_LEN: usize = 32;
const NONCE_LEN: usize = 16;
/// Domain separation of the token MAC.
const CONTEXT: &[u8] = b"tower-redis-session csrf v1";

/// Refuses cross-origin state-changing requests (see the [module docs](self)).
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct CsrfLayer {
    trusted: Arc<[String]>,
}

impl CsrfLayer {
    /// The layer with no trusted origins: only same-origin requests change state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accepts unsafe requests whose `Origin` is `origin` (e.g. a front end on
    /// `https://app.example.com` calling an API on another host).
    ///
    /// # Errors
    /// [`ConfigError::TrustedOrigin`] unless `origin` is `http://` or `https://` and a host
    /// with an optional port, and nothing else (no path, no trailing slash).
    pub fn with_trusted_origin(self, origin: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::TrustedOrigin(origin.to_owned());
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .ok_or_else(invalid)?;
        let ok = !host.is_empty()
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !ok {
            return Err(invalid());
        }
        let mut trusted = self.trusted.to_vec();
        trusted.push(origin.to_ascii_lowercase());
        Ok(Self {
            trusted: trusted.into(),
        })
    }
}

impl<S> tower_layer::Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsrfService {
            inner,
            trusted: self.trusted.clone(),
        }
    }
}

/// The service of [`CsrfLayer`].
#[derive(Clone, Debug)]
pub struct CsrfService<S> {
    inner: S,
    trusted: Arc<[String]>,
}

/// The response future of [`CsrfService`].
pub struct CsrfFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>,
}

impl<E> fmt::Debug for CsrfFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfFuture")
    }
}

impl<E> Future for CsrfFuture<E> {
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S> tower_service::Service<Request<Body>> for CsrfService<S>
where
    S: tower_service::Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CsrfFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verdict = verdict(&req, &self.trusted);
        CsrfFuture {
            inner: Box::pin(async move {
                match verdict {
                    Verdict::Pass => inner.call(req).await,
                    Verdict::Refuse(why) => Ok(refused(why)),
                    Verdict::NeedToken => match with_token(req).await {
                        Ok(req) => inner.call(req).await,
                        Err(response) => Ok(response),
                    },
                }
            }),
        }
    }
}

enum Verdict {
    Pass,
    Refuse(&'static str),
    NeedToken,
}

/// What the headers alone decide (steps 1 to 5 of the module docs).
fn verdict(req: &Request<Body>, trusted: &[String]) -> Verdict {
    if matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return Verdict::Pass;
    }
    let headers = req.headers();
    if is_bearer(headers) {
        return Verdict::Pass;
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let Some(o) = origin
        && trusted.iter().any(|t| t.eq_ignore_ascii_case(o))
    {
        return Verdict::Pass;
    }
    match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
        Some(b"same-origin" | b"none") => return Verdict::Pass,
        Some(_) => return Verdict::Refuse("cross-origin request (Sec-Fetch-Site)"),
        None => {}
    }
    let Some(origin) = origin else {
        return Verdict::NeedToken;
    };
    let own = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let theirs = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match (theirs, own) {
        (Some(theirs), Some(own)) if theirs.eq_ignore_ascii_case(own) => Verdict::Pass,
        _ => Verdict::Refuse("cross-origin request (Origin is not this host)"),
    }
}

fn is_bearer(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().get(..7))
        .is_some_and(|p| p.eq_ignore_ascii_case(b"bearer "))
}

fn refused(why: &'static str) -> Response {
    tracing::info!(reason = why, "request refused by the CSRF check");
    (
        StatusCode::FORBIDDEN,
        [(header::CACHE_CONTROL, "no-store")],
        "403 Forbidden: cross-origin request refused",
    )
        .into_response()
}

/// Step 6: the request passes with a valid token (in the header, or in the form body,
/// which is read and handed on unchanged).
async fn with_token(req: Request<Body>) -> Result<Request<Body>, Response> {
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        tracing::error!("CsrfLayer needs a SessionLayer around it to check tokens");
        return Err(refused("no session layer for the token check"));
    };
    let (parts, body) = req.into_parts();
    let in_header = parts
        .headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let (presented, body) = match in_header {
        Some(t) => (Some(t), body),
        None if is_form => {
            let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
                return Err((StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response());
            };
            (form_field(&bytes), Body::from(bytes))
        }
        None => (None, body),
    };
    let valid = match presented {
        Some(token) => match session.get::<String>(SECRET_KEY).await {
            Ok(Some(secret)) => verify(&secret, &token),
            // No secret yet (no form was rendered) or a store failure: refused (a
            // store failure also answers with the layer's store-error response).
            Ok(None) | Err(_) => false,
        },
        None => false,
    };
    if valid {
        Ok(Request::from_parts(parts, body))
    } else {
        Err(refused("missing or wrong CSRF token"))
    }
}

/// The `csrf_token` field of a urlencoded form (a token needs no percent-decoding:
/// anything encoded is not a token).
fn form_field(body: &[u8]) -> Option<String> {
    body.split(|b| *b == b'&')
        .find_map(|pair| pair.strip_prefix(FIELD.as_bytes())?.strip_prefix(b"="))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// The token MAC of `nonce` under the session secret (`None` only for a key length
/// HMAC refuses, which it never does).
fn mac(secret: &[u8], nonce: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()?;
    mac.update(CONTEXT);
    mac.update(nonce);
    Some(mac)
}

/// Whether `token` was made from the session secret `secret` (constant-time).
fn verify(secret: &str, token: &str) -> bool {
    let Ok(secret) = URL_SAFE_NO_PAD.decode(secret) else {
        return false;
    };
    let mut raw = [0u8; NONCE_LEN + 32];
    match URL_SAFE_NO_PAD.decode_slice(token, &mut raw) {
        Ok(n) if n == raw.len() => {}
        _ => return false,
    }
    let (nonce, tag) = raw.split_at(NONCE_LEN);
    mac(&secret, nonce).is_some_and(|m| m.verify_slice(tag).is_ok())
}

/// A token for this session's forms: different bytes on every render, valid for the
/// session until it ends (or its data is cleared). Put it in a `csrf_token` form field
/// or send it as the `x-csrf-token` header; [`CsrfLayer`] checks it where fetch
/// metadata and `Origin` are absent.
///
/// Extracting it reads the session, and creates the session's secret (a write after
/// the handler) the first time.
#[derive(Clone)]
pub struct CsrfToken(String);

/// The token, base64url (safe in HTML attributes and headers without escaping): what
/// a form's hidden field or an `X-CSRF-Token` header carries.
impl fmt::Display for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfToken(..)")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let secret = match session.get::<String>(SECRET_KEY).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                let mut bytes = [0u8; SECRET_LEN];
                getrandom::fill(&mut bytes).map_err(|_| {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "random number generator failed",
                    )
                        .into_response()
                })?;
                let s = URL_SAFE_NO_PAD.encode(bytes);
                session
                    .insert(SECRET_KEY, &s)
                    .await
                    .map_err(IntoResponse::into_response)?;
                s
            }
            Err(e) => return Err(e.into_response()),
        };
        let key = URL_SAFE_NO_PAD
            .decode(&secret)
            .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "bad CSRF secret").into_response())?;
        let mut raw = [0u8; NONCE_LEN + 32];
        getrandom::fill(&mut raw[..NONCE_LEN]).map_err(|_| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "random number generator failed",
            )
                .into_response()
        })?;
        let tag = mac(&key, &raw[..NONCE_LEN])
            .ok_or_else(|| (StatusCode::INTERNAL_SERVER_ERROR, "bad CSRF secret").into_response())?
            .finalize()
            .into_bytes();
        raw[NONCE_LEN..].copy_from_slice(&tag);
        Ok(Self(URL_SAFE_NO_PAD.encode(raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_for(secret: &[u8]) -> String {
        let mut raw = [7u8; NONCE_LEN + 32];
        let tag = mac(secret, &raw[..NONCE_LEN])
            .unwrap()
            .finalize()
            .into_bytes();
        raw[NONCE_LEN..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    #[test]
    fn tokens_verify_only_against_their_secret() {
        let secret = [1u8; SECRET_LEN];
        let stored = URL_SAFE_NO_PAD.encode(secret);
        let token = token_for(&secret);
        assert!(verify(&stored, &token));
        assert!(!verify(&URL_SAFE_NO_PAD.encode([2u8; SECRET_LEN]), &token));
        let mut forged = token.into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(!verify(&stored, std::str::from_utf8(&forged).unwrap()));
        for hostile in ["", "x", "%00", &"A".repeat(10_000), "====", "\u{1F600}"] {
            assert!(!verify(&stored, hostile), "{hostile:?}");
        }
    }

    #[test]
    fn the_form_field_is_found_among_others() {
        assert_eq!(
            form_field(b"a=1&csrf_token=abc&b=2").as_deref(),
            Some("abc")
        );
        assert_eq!(form_field(b"xcsrf_token=abc"), None);
        assert_eq!(form_field(b"csrf_tokenx=abc"), None);
        assert_eq!(form_field(b""), None);
    }

    #[test]
    fn trusted_origins_are_checked() {
        assert!(
            CsrfLayer::new()
                .with_trusted_origin("https://app.example.com")
                .is_ok()
        );
        assert!(
            CsrfLayer::new()
                .with_trusted_origin("http://localhost:3000")
                .is_ok()
        );
        for bad in [
            "app.example.com",
            "https://",
            "https://a/b",
            "https://a/",
            "ftp://a",
            "*",
        ] {
            assert!(CsrfLayer::new().with_trusted_origin(bad).is_err(), "{bad}");
        }
    }
}
