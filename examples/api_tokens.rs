//! Bearer tokens for an API client (mobile app, single-page app): log in, call a
//! protected route, refresh (rotation with reuse detection), revoke, log out
//! everywhere; with the `jwt` feature, access tokens are JWTs signed with an ES256 key,
//! an OpenID Connect ID token comes with a login whose `scope` holds `openid`, and the
//! public keys are served at `/.well-known/jwks.json`.
//!
//! ```text
//! cargo run --example api_tokens --features jwt                   # in-memory store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example api_tokens --features jwt
//! ```
//!
//! The signing key is read from the PKCS#8 PEM file `JWT_KEY_FILE` (ES256 or RS256);
//! without one a fresh ES256 key is made at start-up (tokens then die with the
//! process). The issuer is `ISSUER`, default `http://localhost:<port>`.
//!
//! Then, with `curl` (the password is `demo`):
//!
//! ```text
//! curl -s -d 'username=alice&password=demo&scope=openid&client_id=my-app&nonce=n-0S6' localhost:3001/login
//! curl -s localhost:3001/.well-known/jwks.json
//! curl -s -d "id_token=$ID_TOKEN&client_id=my-app" localhost:3001/id-token
//! curl -s -H "Authorization: Bearer $ACCESS" localhost:3001/me
//! curl -s -d "grant_type=refresh_token&refresh_token=$REFRESH" localhost:3001/token
//! curl -s -d "token=$REFRESH" localhost:3001/revoke
//! curl -s -X POST -H "Authorization: Bearer $ACCESS" localhost:3001/logout-everywhere
//! ```
//!
//! Every error of `/login`, `/token` and `/id-token` is an RFC 6749 §5.2 JSON error
//! (`{"error": "...", "error_description": "..."}`) with `Cache-Control: no-store`.

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tower_redis_session::tokens::{Bearer, IssueOptions, TokenConfig, TokenError, Tokens};
use tower_redis_session::{MemoryStore, RedisStore};

/// A password login, with the optional OAuth / OpenID Connect parameters a client sends.
#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
    scope: Option<String>,
    client_id: Option<String>,
    nonce: Option<String>,
}

/// RFC 6749 §6: `grant_type=refresh_token&refresh_token=...`, with the `client_id` of
/// a public client (a confidential one would authenticate; this demo has no client
/// registry). Tokens issued to a client are refreshed only with its id.
#[derive(Deserialize)]
struct RefreshGrant {
    grant_type: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
}

/// RFC 7009: `token=...`, with the client's id when the tokens were issued to one.
#[derive(Deserialize)]
struct Revoke {
    token: String,
    client_id: Option<String>,
}

/// An ID token to check, and the client it must be for.
#[derive(Deserialize)]
struct IdTokenCheck {
    id_token: String,
    client_id: String,
}

/// An RFC 6749 §5.2 error response.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        });
        let mut r = (self.status, Json(body)).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<FormRejection> for OAuthError {
    fn from(e: FormRejection) -> Self {
        Self::invalid_request(e.body_text())
    }
}

impl From<TokenError> for OAuthError {
    fn from(e: TokenError) -> Self {
        let bad = StatusCode::BAD_REQUEST;
        match e {
            TokenError::InvalidGrant
            | TokenError::Reused { .. }
            | TokenError::Raced
            | TokenError::SessionEnded => Self::new(bad, "invalid_grant", e.to_string()),
            TokenError::InvalidRequest(p) => {
                Self::invalid_request(format!("invalid or missing parameter: {p}"))
            }
            TokenError::InvalidUserId(_) => Self::invalid_request("invalid username"),
            TokenError::InvalidToken => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
            }
            TokenError::Store(_) | TokenError::Session(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the token store is unavailable",
            ),
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            ),
        }
    }
}

async fn login(
    Extension(tokens): Extension<Tokens>,
    form: Result<Form<Login>, FormRejection>,
) -> Result<Response, OAuthError> {
    let Form(f) = form?;
    // A real app checks a password hash here.
    if f.username.is_empty() || f.password != "demo" {
        let e = "wrong username or password";
        return Err(OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", e));
    }
    let mut options = IssueOptions::default();
    for (value, set) in [
        (
            f.scope,
            IssueOptions::with_scope as fn(IssueOptions, String) -> IssueOptions,
        ),
        (f.client_id, IssueOptions::with_client_id),
        (f.nonce, IssueOptions::with_nonce),
    ] {
        if let Some(v) = value {
            options = set(options, v);
        }
    }
    let pair = tokens.issue_with(&f.username, options).await?;
    Ok(no_store(Json(pair)))
}

/// A token response: never cached (RFC 6749 §5.1).
fn no_store(r: impl IntoResponse) -> Response {
    let mut r = r.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn me(Bearer(claims): Bearer) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user": claims.user_id,
        "family": claims.family.to_string(),
        "expires_at": claims
            .expires_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }))
}

async fn token(
    Extension(tokens): Extension<Tokens>,
    form: Result<Form<RefreshGrant>, FormRejection>,
) -> Result<Response, OAuthError> {
    let Form(f) = form?;
    match f.grant_type.as_deref() {
        Some("refresh_token") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=refresh_token is supported here",
            ));
        }
        None => return Err(OAuthError::invalid_request("missing grant_type")),
    }
    let Some(refresh_token) = f.refresh_token.filter(|t| !t.is_empty()) else {
        return Err(OAuthError::invalid_request("missing refresh_token"));
    };
    let pair = match f.client_id.as_deref() {
        Some(client) => tokens.refresh_for_client(client, &refresh_token).await?,
        None => tokens.refresh(&refresh_token).await?,
    };
    Ok(no_store(Json(pair)))
}

async fn revoke(
    Extension(tokens): Extension<Tokens>,
    Form(f): Form<Revoke>,
) -> Result<StatusCode, TokenError> {
    match f.client_id.as_deref() {
        Some(client) => tokens.revoke_for_client(client, &f.token).await?,
        None => tokens.revoke(&f.token).await?,
    }
    Ok(StatusCode::OK)
}

async fn logout_everywhere(
    Extension(tokens): Extension<Tokens>,
    Bearer(claims): Bearer,
) -> Result<Json<serde_json::Value>, TokenError> {
    let families = tokens.revoke_all_tokens(&claims.user_id).await?;
    Ok(Json(serde_json::json!({ "revoked_families": families })))
}

/// Checks an ID token as a relying party's back end would: signature, claims, and that
/// it is still live (not revoked, its session not ended).
#[cfg(feature = "jwt")]
async fn id_token(
    Extension(tokens): Extension<Tokens>,
    form: Result<Form<IdTokenCheck>, FormRejection>,
) -> Result<Json<serde_json::Value>, OAuthError> {
    let Form(f) = form?;
    let c = tokens.verify_id_token(&f.id_token, &f.client_id).await?;
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    Ok(Json(serde_json::json!({
        "sub": c.subject,
        "aud": c.audience,
        "iss": c.issuer,
        "exp": secs(c.expires_at),
        "auth_time": secs(c.auth_time),
        "nonce": c.nonce.as_deref(),
    })))
}

#[cfg(not(feature = "jwt"))]
async fn id_token(form: Result<Form<IdTokenCheck>, FormRejection>) -> OAuthError {
    let _ = form.map(|Form(f)| (f.id_token, f.client_id));
    OAuthError::new(
        StatusCode::NOT_IMPLEMENTED,
        "server_error",
        "built without the `jwt` feature",
    )
}

/// The ES256 or RS256 signing key: `JWT_KEY_FILE`, or a fresh ES256 key.
#[cfg(feature = "jwt")]
fn signing_key() -> Result<tower_redis_session::tokens::JwtKey, Box<dyn std::error::Error>> {
    use tower_redis_session::tokens::JwtKey;
    if let Ok(path) = std::env::var("JWT_KEY_FILE") {
        let pem = std::fs::read(path)?;
        return Ok(JwtKey::es256_pem(&pem).or_else(|_| JwtKey::rs256_pem(&pem))?);
    }
    use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
    loop {
        let mut scalar = [0u8; 32];
        getrandom::fill(&mut scalar)?;
        if let Ok(secret) = p256::SecretKey::from_slice(&scalar) {
            let pem = secret.to_pkcs8_pem(LineEnding::LF)?;
            return Ok(JwtKey::es256_pem(pem.as_bytes())?);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let config = TokenConfig::default();
    let tokens = match std::env::var("REDIS_URL") {
        Ok(url) => {
            println!("token store: Redis (REDIS_URL)");
            Tokens::new(RedisStore::from_url(&url)?, config)?
        }
        Err(_) => {
            println!("token store: in-memory (set REDIS_URL to use Redis)");
            Tokens::new(MemoryStore::new(), config)?
        }
    };
    #[cfg(feature = "jwt")]
    let tokens = {
        use tower_redis_session::tokens::JwtKeys;
        let issuer = std::env::var("ISSUER").unwrap_or_else(|_| format!("http://localhost:{port}"));
        let key = signing_key()?;
        // Debug shows the algorithm and key id, never key material.
        println!("signing key: {key:?}");
        tokens.with_jwt(JwtKeys::new(key)?.with_issuer(issuer))
    };
    #[cfg(feature = "jwt")]
    let jwks = {
        let set = tokens.jwks();
        get(move || async move { Json(set) })
    };
    #[cfg(not(feature = "jwt"))]
    let jwks = get(|| async { Json(serde_json::json!({ "keys": [] })) });
    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/id-token", post(id_token))
        .route("/.well-known/jwks.json", jwks)
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(tokens.layer());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://localhost:{port}");
    axum::serve(listener, app).await?;
    Ok(())
}
