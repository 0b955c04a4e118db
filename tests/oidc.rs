//! OpenID Connect ID tokens, asymmetric keys and the JWKS, bearer requests that keep
//! their session alive, the application's session details: one suite run on `MemoryStore`, `RedisStore` on a real
//! `redis-server` and on a 3-master Cluster; then an independent verifier (the
//! `openidconnect` crate) checks our ID tokens against our JWKS, and Redis-only checks
//! count the commands hostile JWTs cost (none).

#[macro_use]
mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use common::{Client, TestStore};
use tower_redis_session::tokens::{
    IssueOptions, JwtKey, JwtKeys, TokenConfig, TokenError, TokenStore, Tokens,
};
use tower_redis_session::{Session, SessionConfig, SessionDetails, SessionLayer};

const ISSUER: &str = "https://auth.example.test";
const RS256_PEM: &[u8] = include_bytes!("fixtures/rs256-test-key.pem");
const ES256_PEM: &[u8] = include_bytes!("fixtures/es256-test-key.pem");
const ES256_PEM_2: &[u8] = include_bytes!("fixtures/es256-test-key-2.pem");

fn es256() -> JwtKeys {
    JwtKeys::new(JwtKey::es256_pem(ES256_PEM).unwrap())
        .unwrap()
        .with_issuer(ISSUER)
}

fn rs256() -> JwtKeys {
    JwtKeys::new(JwtKey::rs256_pem(RS256_PEM).unwrap())
        .unwrap()
        .with_issuer(ISSUER)
}

fn openid() -> IssueOptions {
    IssueOptions::default()
        .with_scope("openid profile")
        .with_client_id("app")
        .with_nonce("n-0S6_WzA2Mj")
}

macro_rules! all_cases {
    ($store:ident, $make:path) => {
        store_cases!($store, $make;
            id_token_for_openid_scope, id_token_is_not_an_access_token,
            id_token_ends_with_its_family, id_token_ends_with_its_session,
            id_token_has_its_own_ttl, bearer_requests_keep_the_session_alive,
            rs256_and_es256_sign_and_rotate, session_details_are_listed_and_in_events,
        );
    };
}

all_cases!(memory_store, super::common::stores::memory_store);
all_cases!(redis_store, super::common::stores::redis_store);
all_cases!(redis_cluster, super::common::stores::cluster_store);

/// The payload of a JWT, decoded without verification (to look at what we issued).
fn payload(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64.decode(part).unwrap()).unwrap()
}

fn header(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(&b64.decode(part).unwrap()).unwrap()
}

mod cases {
    use super::*;

    fn tokens<S: TokenStore>(s: S, config: TokenConfig, keys: JwtKeys) -> Tokens {
        Tokens::new(s, config).unwrap().with_jwt(keys)
    }

    async fn id_live(t: &Tokens, id: &str) -> bool {
        match t.verify_id_token(id, "app").await {
            Ok(_) => true,
            Err(TokenError::InvalidToken) => false,
            Err(e) => panic!("{e}"),
        }
    }

    /// An app whose `POST /tokens` issues a pair (with an ID token) bound to the
    /// session, and `GET /read` reads it.
    fn app(layer: SessionLayer, t: &Tokens) -> Router {
        routes::routes()
            .route(
                "/tokens",
                post(
                    |session: Session, tokens: axum::Extension<Tokens>| async move {
                        let pair = tokens.issue_for_session(&session, openid()).await?;
                        Ok::<_, TokenError>(axum::Json(pair))
                    },
                ),
            )
            .layer(layer)
            .layer(t.layer())
    }

    async fn login(app: &Router, user: &str) -> Client {
        let mut c = Client::new(app.clone());
        assert_eq!(c.post(&format!("/login?user={user}")).await.status, 200);
        c
    }

    async fn bound_pair(web: &mut Client) -> serde_json::Value {
        let r = web.post("/tokens").await;
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    }

    pub async fn id_token_for_openid_scope<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default(), es256());
        let p = t.issue_with("alice", openid()).await.unwrap();
        let id = p.id_token.as_deref().expect("an ID token for scope openid");
        let claims = payload(id);
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "app");
        assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
        for c in ["exp", "iat", "auth_time", "at_hash", "jti"] {
            assert!(!claims[c].is_null(), "{c}");
        }
        let exp = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert!((3599..=3600).contains(&exp), "1 h by default: {exp}");
        assert!(claims.get("sid").is_none(), "not bound to a session");
        assert_eq!(header(id)["alg"], "ES256");
        assert!(header(id)["kid"].is_string());
        // The JSON answer carries it.
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["id_token"], id);

        let c = t.verify_id_token(id, "app").await.unwrap();
        assert_eq!(
            (
                c.subject.as_str(),
                c.audience.as_str(),
                c.issuer.as_str(),
                c.nonce.as_deref()
            ),
            ("alice", "app", ISSUER, Some("n-0S6_WzA2Mj"))
        );
        assert_eq!(c.family, p.family);
        assert!(c.expires_at > std::time::SystemTime::now());
        assert!(matches!(
            t.verify_id_token(id, "other-app").await,
            Err(TokenError::InvalidToken)
        ));
        // Listed with its family.
        let list = t.list("alice").await.unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].id_token_expires.is_some());

        // No `openid`: no ID token, and no ID-token expiry in the listing.
        let plain = t
            .issue_with("bob", IssueOptions::default().with_scope("profile"))
            .await
            .unwrap();
        assert!(plain.id_token.as_deref().is_none());
        assert!(
            serde_json::to_value(&plain)
                .unwrap()
                .get("id_token")
                .is_none()
        );
        assert!(t.list("bob").await.unwrap()[0].id_token_expires.is_none());

        // `openid` without a client id, or hostile parameters: refused, nothing issued.
        for bad in [
            IssueOptions::default().with_scope("openid"),
            openid().with_nonce("a\nb"),
            openid().with_nonce("x".repeat(257)),
            openid().with_client_id(""),
        ] {
            assert!(matches!(
                t.issue_with("carol", bad).await,
                Err(TokenError::InvalidRequest(_))
            ));
        }
        assert!(t.list("carol").await.unwrap().is_empty());
    }

    pub async fn id_token_is_not_an_access_token<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s.clone(), TokenConfig::default(), es256());
        let p = t.issue_with("alice", openid()).await.unwrap();
        let id = p.id_token.as_deref().unwrap();
        assert!(matches!(
            t.authenticate(id).await,
            Err(TokenError::InvalidToken)
        ));
        assert!(matches!(
            t.verify_id_token(&p.access_token, "app").await,
            Err(TokenError::InvalidToken)
        ));
        // The ID token's jti, presented as an opaque access token.
        let jti = payload(id)["jti"].as_str().unwrap().to_owned();
        assert!(jti.starts_with("it."));
        assert!(matches!(
            t.authenticate(&jti).await,
            Err(TokenError::InvalidToken)
        ));
        // Revoking an ID token is a no-op (it ends with its family).
        t.revoke(id).await.unwrap();
        assert!(id_live(&t, id).await);

        // Without JWT keys with an issuer, `openid` is a configuration error.
        let bare = Tokens::new(s.clone(), TokenConfig::default()).unwrap();
        assert!(matches!(
            bare.issue_with("alice", openid()).await,
            Err(TokenError::IdTokenUnavailable(_))
        ));
        let no_issuer = Tokens::new(s.clone(), TokenConfig::default())
            .unwrap()
            .with_jwt(JwtKeys::new(JwtKey::es256_pem(ES256_PEM).unwrap()).unwrap());
        assert!(matches!(
            no_issuer.issue_with("alice", openid()).await,
            Err(TokenError::IdTokenUnavailable(_))
        ));
        // ID tokens are for clients to verify: never signed with a shared secret.
        let secret = Tokens::new(s.clone(), TokenConfig::default())
            .unwrap()
            .with_jwt(
                JwtKeys::new(JwtKey::hs256(&[9; 32]).unwrap())
                    .unwrap()
                    .with_issuer(ISSUER),
            );
        assert!(matches!(
            secret.issue_with("alice", openid()).await,
            Err(TokenError::IdTokenUnavailable(_))
        ));
    }

    pub async fn id_token_ends_with_its_family<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s.clone(), TokenConfig::default(), es256());
        // Revoking the refresh token ends the family, ID token included.
        let p = t.issue_with("alice", openid()).await.unwrap();
        let id = p.id_token.as_deref().unwrap().to_owned();
        let next = t.refresh_for_client("app", &p.refresh_token).await.unwrap();
        assert!(
            next.id_token.as_deref().is_none(),
            "a refresh issues no new ID token"
        );
        assert!(
            id_live(&t, &id).await,
            "refresh keeps the family's ID token"
        );
        t.revoke(&next.refresh_token).await.unwrap();
        assert!(!id_live(&t, &id).await);
        assert!(t.list("alice").await.unwrap().is_empty());
        // Reuse detection ends it too.
        let p = t.issue_with("alice", openid()).await.unwrap();
        let _ = t.refresh_for_client("app", &p.refresh_token).await.unwrap();
        let t0 = Tokens::new(
            s.clone(),
            TokenConfig::default().with_reuse_grace(Duration::ZERO),
        )
        .unwrap()
        .with_jwt(es256());
        assert!(matches!(
            t0.refresh_for_client("app", &p.refresh_token).await,
            Err(TokenError::Reused { .. })
        ));
        assert!(!id_live(&t, p.id_token.as_deref().unwrap()).await);
        // Revoking one family and revoking all of a user's tokens.
        let a = t.issue_with("alice", openid()).await.unwrap();
        let b = t.issue_with("alice", openid()).await.unwrap();
        assert!(t.revoke_family("alice", a.family).await.unwrap());
        assert!(!id_live(&t, a.id_token.as_deref().unwrap()).await);
        assert!(id_live(&t, b.id_token.as_deref().unwrap()).await);
        assert_eq!(t.revoke_all_tokens("alice").await.unwrap(), 1);
        assert!(!id_live(&t, b.id_token.as_deref().unwrap()).await);
        // Log out everywhere (sessions and tokens in one step).
        let c = t.issue_with("alice", openid()).await.unwrap();
        let layer = SessionLayer::new(s, SessionConfig::default()).unwrap();
        layer.admin().revoke_all("alice").await.unwrap();
        assert!(!id_live(&t, c.id_token.as_deref().unwrap()).await);
    }

    pub async fn id_token_ends_with_its_session<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s.clone(), TokenConfig::default(), es256());
        let layer = SessionLayer::new(s, SessionConfig::default()).unwrap();
        let app = app(layer, &t);
        let mut web = login(&app, "alice").await;
        // Issued a while after the login: auth_time is the login, not the issue.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let pair = bound_pair(&mut web).await;
        let id = pair["id_token"].as_str().unwrap();
        let (auth_time, iat) = (
            payload(id)["auth_time"].as_i64(),
            payload(id)["iat"].as_i64(),
        );
        assert!(auth_time < iat, "auth_time {auth_time:?}, iat {iat:?}");
        let handle = web_handle(&t, pair["access_token"].as_str().unwrap()).await;
        assert_eq!(
            payload(id)["sid"],
            handle,
            "sid is the session's public handle"
        );
        let c = t.verify_id_token(id, "app").await.unwrap();
        assert_eq!(c.session.map(|h| h.to_string()), Some(handle));
        assert_eq!(web.post("/logout").await.status, 200);
        assert!(!id_live(&t, id).await, "ended with its session");
    }

    async fn web_handle(t: &Tokens, access: &str) -> String {
        let claims = t.authenticate(access).await.unwrap();
        claims.session.unwrap().to_string()
    }

    pub async fn id_token_has_its_own_ttl<S: TestStore + TokenStore>(s: S) {
        let config = TokenConfig::default().with_id_token_ttl(Duration::from_secs(1));
        let t = tokens(s, config, rs256());
        let p = t.issue_with("alice", openid()).await.unwrap();
        let id = p.id_token.as_deref().unwrap();
        assert_eq!(header(id)["alg"], "RS256");
        assert!(id_live(&t, id).await);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(!id_live(&t, id).await, "expired after its own TTL");
        assert!(t.authenticate(&p.access_token).await.is_ok(), "1 h access");
        let list = t.list("alice").await.unwrap();
        assert_eq!(list.len(), 1, "the family lives on");
        assert!(list[0].id_token_expires.is_none(), "its ID token is gone");
    }

    pub async fn bearer_requests_keep_the_session_alive<S: TestStore + TokenStore>(s: S) {
        // Idle timeout 3 s, threshold 1.5 s.
        let config = SessionConfig::default().with_idle_timeout(Duration::from_secs(3));
        let layer = SessionLayer::new(s.clone(), config).unwrap();
        let t = tokens(s.clone(), TokenConfig::default(), es256())
            .with_session_layer(&layer)
            .unwrap();
        let kept_app = app(layer.clone(), &t);
        let mut kept = login(&kept_app, "alice").await;
        let access = bound_pair(&mut kept).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        // A second session whose tokens are used without keep-alive.
        let plain = Tokens::new(s.clone(), TokenConfig::default())
            .unwrap()
            .with_jwt(es256());
        let app2 = app(layer.clone(), &plain);
        let mut dropped = login(&app2, "bob").await;
        let access2 = bound_pair(&mut dropped).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let seen = |list: Vec<tower_redis_session::SessionInfo>| list[0].last_active;
        let first_seen = seen(layer.admin().list("alice").await.unwrap());

        // Above the threshold: nothing written (last active unchanged).
        t.authenticate(&access).await.unwrap();
        assert_eq!(seen(layer.admin().list("alice").await.unwrap()), first_seen);
        // Below it: refreshed, and the request recorded as the last activity.
        tokio::time::sleep(Duration::from_millis(1800)).await;
        t.authenticate(&access).await.unwrap();
        plain.authenticate(&access2).await.unwrap();
        let refreshed = seen(layer.admin().list("alice").await.unwrap());
        assert!(refreshed > first_seen, "last active moved");
        // Past the first idle timeout: the kept session lives, the other expired.
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(kept.get("/read").await.body, "alice");
        assert_eq!(dropped.get("/read").await.status, 401);
        assert!(t.authenticate(&access).await.is_ok());
        assert!(plain.authenticate(&access2).await.is_err());

        // Another namespace's layer is refused.
        let other = SessionLayer::new(
            tower_redis_session::MemoryStore::new()
                .with_namespace("elsewhere")
                .unwrap(),
            SessionConfig::default(),
        )
        .unwrap();
        assert!(matches!(
            Tokens::new(s, TokenConfig::default())
                .unwrap()
                .with_session_layer(&other),
            Err(tower_redis_session::ConfigError::NamespaceMismatch { .. })
        ));
    }

    pub async fn session_details_are_listed_and_in_events<S: TestStore + TokenStore>(s: S) {
        use std::sync::{Arc, Mutex};
        use tower_redis_session::events::{EventKind, SessionEvent};
        let seen: Arc<Mutex<Vec<SessionEvent>>> = Arc::default();
        let hook = {
            let seen = seen.clone();
            move |e: &SessionEvent| seen.lock().unwrap().push(e.clone())
        };
        let layer = SessionLayer::new(s, SessionConfig::default())
            .unwrap()
            .with_events(hook);
        let details = |device: &str| {
            let mut d = SessionDetails::default();
            d.insert("device", device).unwrap();
            d.insert("city", "Lyon").unwrap();
            d
        };
        let app = routes::routes()
            .route(
                "/login-laptop",
                post(move |session: Session| async move {
                    // Before the login: written with it, in the same store call.
                    session.set_details(details("Laptop")).await?;
                    session.login("alice").await?;
                    Ok::<_, tower_redis_session::SessionError>("ok")
                }),
            )
            .route(
                "/rename",
                post(|session: Session| async move {
                    let mut d = session.details().await?;
                    d.insert("device", "Work laptop").unwrap();
                    session.set_details(d).await?;
                    Ok::<_, tower_redis_session::SessionError>("ok")
                }),
            )
            .route(
                "/clear",
                post(|session: Session| async move {
                    session.set_details(SessionDetails::default()).await?;
                    Ok::<_, tower_redis_session::SessionError>("ok")
                }),
            )
            .route(
                "/mine",
                axum::routing::get(|session: Session| async move {
                    let d = session.details().await?;
                    Ok::<_, tower_redis_session::SessionError>(
                        d.get("device").unwrap_or("-").to_owned(),
                    )
                }),
            )
            .layer(layer.clone());
        let mut laptop = Client::new(app.clone());
        assert_eq!(laptop.post("/login-laptop").await.status, 200);
        let mut phone = login(&app, "alice").await;
        assert_eq!(laptop.get("/mine").await.body, "Laptop");
        assert_eq!(phone.get("/mine").await.body, "-");

        let devices = |list: Vec<tower_redis_session::SessionInfo>| {
            let mut d: Vec<Option<String>> = list
                .iter()
                .map(|s| s.details.get("device").map(str::to_owned))
                .collect();
            d.sort();
            d
        };
        let list = layer.admin().list("alice").await.unwrap();
        assert_eq!(devices(list.clone()), [None, Some("Laptop".to_owned())]);
        let with = list.iter().find(|s| !s.details.is_empty()).unwrap();
        assert_eq!(with.details.get("city"), Some("Lyon"));
        let json = serde_json::to_value(with).unwrap();
        assert_eq!(json["details"]["device"], "Laptop", "{json}");

        // Changed later, then removed.
        assert_eq!(laptop.post("/rename").await.status, 200);
        assert_eq!(laptop.get("/mine").await.body, "Work laptop");
        let list = layer.admin().list("alice").await.unwrap();
        assert_eq!(devices(list), [None, Some("Work laptop".to_owned())]);
        assert_eq!(laptop.post("/logout").await.status, 200);
        assert_eq!(phone.post("/clear").await.status, 200);
        assert_eq!(phone.get("/mine").await.body, "-");

        // The login event carries them; the other device's does not.
        layer.flush_events().await;
        let events = seen.lock().unwrap().clone();
        let logins: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::Login)
            .collect();
        assert_eq!(logins.len(), 2, "{events:?}");
        let device = |e: &SessionEvent| {
            e.details
                .as_ref()
                .and_then(|d| d.get("device").map(str::to_owned))
        };
        assert_eq!(device(logins[0]).as_deref(), Some("Laptop"));
        assert_eq!(device(logins[1]), None);
    }

    pub async fn rs256_and_es256_sign_and_rotate<S: TestStore + TokenStore>(s: S) {
        // Signed with the old key, then the app rotates: the old key only verifies.
        let old_key = JwtKey::es256_pem(ES256_PEM).unwrap();
        let old_jwk = old_key.public_jwk().unwrap().clone();
        let old = tokens(s.clone(), TokenConfig::default(), es256());
        let before = old.issue_with("alice", openid()).await.unwrap();
        let rotated_keys = JwtKeys::new(JwtKey::rs256_pem(RS256_PEM).unwrap())
            .unwrap()
            .with_verification_key(JwtKey::from_public_jwk(&old_jwk).unwrap())
            .unwrap()
            .with_issuer(ISSUER);
        let new = tokens(s.clone(), TokenConfig::default(), rotated_keys);
        let after = new.issue_with("alice", openid()).await.unwrap();
        assert_eq!(header(&after.access_token)["alg"], "RS256");
        // Both verify under the new ring, access and ID tokens alike.
        for p in [&before, &after] {
            assert!(new.authenticate(&p.access_token).await.is_ok());
            assert!(
                new.verify_id_token(p.id_token.as_deref().unwrap(), "app")
                    .await
                    .is_ok()
            );
        }
        // The key set publishes both, public halves only.
        let jwks = serde_json::to_value(new.jwks()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for k in keys {
            assert!(k["kid"].is_string() && k["alg"].is_string(), "{k}");
            assert_eq!(k["use"], "sig");
            assert!(
                k.get("d").is_none() && k.get("p").is_none(),
                "no private part"
            );
        }
        // A token from a key the ring does not hold (unknown kid), or claiming the
        // kid of a key that did not sign it, is refused.
        let stranger = tokens(
            s.clone(),
            TokenConfig::default(),
            JwtKeys::new(JwtKey::es256_pem(ES256_PEM_2).unwrap())
                .unwrap()
                .with_issuer(ISSUER),
        );
        let foreign = stranger.issue_with("alice", openid()).await.unwrap();
        let relabelled = JwtKeys::new(
            JwtKey::es256_pem(ES256_PEM_2)
                .unwrap()
                .with_kid(old_jwk.common.key_id.clone().unwrap())
                .unwrap(),
        )
        .unwrap()
        .with_issuer(ISSUER);
        let impostor = tokens(s, TokenConfig::default(), relabelled);
        let forged = impostor.issue_with("alice", openid()).await.unwrap();
        for p in [&foreign, &forged] {
            assert!(matches!(
                new.authenticate(&p.access_token).await,
                Err(TokenError::InvalidToken)
            ));
            assert!(matches!(
                new.verify_id_token(p.id_token.as_deref().unwrap(), "app")
                    .await,
                Err(TokenError::InvalidToken)
            ));
        }
        // Shared secrets are never published.
        let hs = tokens(
            tower_redis_session::MemoryStore::new(),
            TokenConfig::default(),
            JwtKeys::new(JwtKey::hs256(&[9; 32]).unwrap()).unwrap(),
        );
        assert!(hs.jwks().keys.is_empty());
    }
}

/// Key handling that needs no store.
mod keys {
    use super::*;

    #[test]
    fn bad_key_material_is_a_config_error() {
        assert!(JwtKey::rs256_pem(ES256_PEM).is_err());
        assert!(JwtKey::es256_pem(RS256_PEM).is_err());
        assert!(JwtKey::es256_pem(b"not a pem").is_err());
        assert!(JwtKey::hs256(&[1; 31]).is_err());
        assert!(JwtKey::hs256(&[1; 32]).unwrap().with_kid("").is_err());
        let jwk = JwtKey::es256_pem(ES256_PEM)
            .unwrap()
            .public_jwk()
            .unwrap()
            .clone();
        let verify_only = JwtKey::from_public_jwk(&jwk).unwrap();
        assert!(JwtKeys::new(verify_only.clone()).is_err(), "cannot sign");
        let dup = JwtKeys::new(JwtKey::es256_pem(ES256_PEM).unwrap())
            .unwrap()
            .with_verification_key(verify_only);
        assert!(dup.is_err(), "two keys with one kid");
    }

    /// A JWK whose key type is symmetric (`oct`), or does not match its `alg`, is
    /// refused: a secret never reaches the JWKS, whatever `alg` it claims.
    #[test]
    fn public_jwks_must_be_public_keys_of_their_algorithm() {
        let es = serde_json::to_value(JwtKey::es256_pem(ES256_PEM).unwrap().public_jwk().unwrap())
            .unwrap();
        let rs = serde_json::to_value(JwtKey::rs256_pem(RS256_PEM).unwrap().public_jwk().unwrap())
            .unwrap();
        let jwk = |v: serde_json::Value| {
            serde_json::from_value::<tower_redis_session::tokens::jsonwebtoken::jwk::Jwk>(v)
        };
        let with = |mut v: serde_json::Value, k: &str, x: &str| {
            v[k] = serde_json::Value::from(x);
            v
        };
        // An oct key claiming RS256 or ES256.
        for alg in ["RS256", "ES256", "HS256"] {
            let oct = serde_json::json!({
                "kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA",
                "alg": alg, "kid": "k1"
            });
            if let Ok(oct) = jwk(oct) {
                assert!(JwtKey::from_public_jwk(&oct).is_err(), "oct as {alg}");
            }
        }
        // An EC key claiming RS256, an RSA key claiming ES256.
        for (v, alg) in [
            (with(es.clone(), "alg", "RS256"), "RS256"),
            (with(rs.clone(), "alg", "ES256"), "ES256"),
        ] {
            let k = jwk(v).unwrap();
            assert!(
                JwtKey::from_public_jwk(&k).is_err(),
                "kty mismatch for {alg}"
            );
        }
        // The genuine ones are accepted.
        assert!(JwtKey::from_public_jwk(&jwk(es).unwrap()).is_ok());
        assert!(JwtKey::from_public_jwk(&jwk(rs).unwrap()).is_ok());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = JwtKey::rs256_pem(RS256_PEM).unwrap();
        let jwk = serde_json::to_value(key.public_jwk().unwrap()).unwrap();
        let keys = JwtKeys::new(key).unwrap().with_issuer(ISSUER);
        let shown = format!("{keys:?}");
        assert!(shown.contains("RS256"), "{shown}");
        let n = jwk["n"].as_str().unwrap();
        assert!(!shown.contains(&n[..16]), "{shown}");
        let secret = JwtKey::hs256(b"0123456789abcdef0123456789abcdef").unwrap();
        assert!(!format!("{secret:?}").contains("0123456789"));
    }
}

/// An independent OpenID Connect implementation verifies what we issue.
mod interop {
    use openidconnect::core::{
        CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    };
    use openidconnect::{AccessToken, AccessTokenHash, ClientId, IssuerUrl, Nonce};

    use super::*;

    fn verifier(jwks: &serde_json::Value, client: &str) -> CoreIdTokenVerifier<'static> {
        let set: CoreJsonWebKeySet = serde_json::from_value(jwks.clone()).unwrap();
        CoreIdTokenVerifier::new_public_client(
            ClientId::new(client.to_owned()),
            IssuerUrl::new(ISSUER.to_owned()).unwrap(),
            set,
        )
        .set_allowed_algs([
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ])
    }

    /// Re-signs `jwt`'s claims, changed by `edit`, with `pem` under `kid`.
    fn resign(
        jwt: &str,
        pem: &[u8],
        kid: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> String {
        use tower_redis_session::tokens::jsonwebtoken::{self, Algorithm, EncodingKey, Header};
        let mut claims = payload(jwt);
        edit(&mut claims);
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_pem(pem).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn openidconnect_crate_verifies_our_id_tokens() {
        let store = tower_redis_session::MemoryStore::new();
        for keys in [es256(), rs256()] {
            let t = Tokens::new(store.clone(), TokenConfig::default())
                .unwrap()
                .with_jwt(keys);
            let jwks = serde_json::to_value(t.jwks()).unwrap();
            let p = t.issue_with("alice", openid()).await.unwrap();
            let response = serde_json::to_value(&p).unwrap();
            let id: CoreIdToken = p.id_token.as_deref().unwrap().parse().unwrap();
            let v = verifier(&jwks, "app");
            let claims = id
                .claims(&v, &Nonce::new("n-0S6_WzA2Mj".into()))
                .expect("valid by openidconnect");
            assert_eq!(claims.subject().as_str(), "alice");
            assert_eq!(claims.issuer().as_str(), ISSUER);
            // at_hash binds the access token of the same response.
            let expected = claims.access_token_hash().unwrap();
            let alg = id.signing_alg().unwrap();
            let key = id.signing_key(&v).unwrap();
            let access = AccessToken::new(response["access_token"].as_str().unwrap().into());
            let actual = AccessTokenHash::from_token(&access, alg, key).unwrap();
            assert_eq!(&actual, expected);
            // Wrong audience, wrong nonce.
            assert!(
                id.claims(
                    &verifier(&jwks, "other"),
                    &Nonce::new("n-0S6_WzA2Mj".into())
                )
                .is_err()
            );
            assert!(id.claims(&v, &Nonce::new("other".into())).is_err());
        }

        // Tampered, expired, and wrong-kid tokens: refused by it and by us.
        let t = Tokens::new(store, TokenConfig::default())
            .unwrap()
            .with_jwt(es256());
        let jwks = serde_json::to_value(t.jwks()).unwrap();
        let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
        let p = t.issue_with("alice", openid()).await.unwrap();
        let good = p.id_token.as_deref().unwrap();
        let (h, rest) = good.split_once('.').unwrap();
        let (_, sig) = rest.rsplit_once('.').unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut admin = payload(good);
        admin["sub"] = "admin".into();
        let tampered = format!("{h}.{}.{sig}", b64.encode(admin.to_string()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expired = resign(good, ES256_PEM, &kid, |c| c["exp"] = (now - 60).into());
        let wrong_kid = resign(good, ES256_PEM_2, &kid, |_| {});
        let unknown_kid = resign(good, ES256_PEM, "no-such-key", |_| {});
        // The control: re-signed unchanged with the right key, it passes both.
        let control = resign(good, ES256_PEM, &kid, |_| {});
        let nonce = Nonce::new("n-0S6_WzA2Mj".into());
        let id: CoreIdToken = control.parse().unwrap();
        assert!(id.claims(&verifier(&jwks, "app"), &nonce).is_ok());
        assert!(t.verify_id_token(&control, "app").await.is_ok());
        for bad in [&tampered, &expired, &wrong_kid, &unknown_kid] {
            let theirs = bad
                .parse::<CoreIdToken>()
                .map(|id| id.claims(&verifier(&jwks, "app"), &nonce).is_ok());
            assert!(!theirs.unwrap_or(false), "openidconnect accepted {bad}");
            assert!(matches!(
                t.verify_id_token(bad, "app").await,
                Err(TokenError::InvalidToken)
            ));
        }
    }
}

/// Redis-only: what hostile JWTs cost (nothing), and what Redis holds.
mod redis_only {
    use super::*;
    use common::RedisServer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_jwts_cost_no_redis_command() {
        // A server of its own: the count sees no other test's commands.
        let server = RedisServer::start();
        let store = common::stores::redis_store_on(&server.url(), "hostile-jwt");
        let t = Tokens::new(store, TokenConfig::default())
            .unwrap()
            .with_jwt(es256());
        let p = t.issue_with("alice", openid()).await.unwrap();
        // Warm: the token check key is read once.
        t.verify_id_token(p.id_token.as_deref().unwrap(), "app")
            .await
            .unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = b64.encode(br#"{"sub":"admin","jti":"x","exp":9999999999,"iss":"https://auth.example.test","aud":"app"}"#);
        let none = format!("{}.{body}.", b64.encode(br#"{"alg":"none"}"#));
        let hs = format!(
            "{}.{body}.c2ln",
            b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#)
        );
        let huge = format!(
            "{}.{}.x",
            b64.encode(br#"{"alg":"ES256"}"#),
            "A".repeat(9000)
        );
        let id = p.id_token.as_deref().unwrap();
        let (h, rest) = id.split_once('.').unwrap();
        let (claims, _) = rest.rsplit_once('.').unwrap();
        let wrong_sig = format!("{h}.{claims}.{}", b64.encode([7u8; 64]));
        let foreign = Tokens::new(
            tower_redis_session::MemoryStore::new(),
            TokenConfig::default(),
        )
        .unwrap()
        .with_jwt(
            JwtKeys::new(JwtKey::es256_pem(ES256_PEM_2).unwrap())
                .unwrap()
                .with_issuer(ISSUER),
        )
        .issue_with("alice", openid())
        .await
        .unwrap();
        let before = server.command_calls();
        for bad in [
            none.as_str(),
            hs.as_str(),
            huge.as_str(),
            wrong_sig.as_str(),
            "a.b.c",
            "",
            foreign.id_token.as_deref().unwrap(),
            &foreign.access_token,
        ] {
            assert!(matches!(
                t.verify_id_token(bad, "app").await,
                Err(TokenError::InvalidToken)
            ));
            assert!(matches!(
                t.authenticate(bad).await,
                Err(TokenError::InvalidToken)
            ));
        }
        let spent = RedisServer::delta(&before, &server.command_calls());
        assert!(spent.is_empty(), "hostile JWTs cost {spent:?}");
        // A good one costs one lookup.
        t.verify_id_token(id, "app").await.unwrap();
        assert!(!RedisServer::delta(&before, &server.command_calls()).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_costs_nothing_above_the_threshold() {
        let server = RedisServer::start();
        let store = common::stores::redis_store_on(&server.url(), "keep-alive-cost");
        let layer = SessionLayer::new(store.clone(), SessionConfig::default()).unwrap();
        let t = Tokens::new(store.clone(), TokenConfig::default())
            .unwrap()
            .with_session_layer(&layer)
            .unwrap();
        let app = routes::routes()
            .route(
                "/tokens",
                post(
                    |session: Session, tokens: axum::Extension<Tokens>| async move {
                        let pair = tokens
                            .issue_for_session(&session, IssueOptions::default())
                            .await?;
                        Ok::<_, TokenError>(axum::Json(pair))
                    },
                ),
            )
            .layer(layer)
            .layer(t.layer());
        let mut web = Client::new(app);
        assert_eq!(web.post("/login?user=alice").await.status, 200);
        let r = web.post("/tokens").await;
        let pair: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let access = pair["access_token"].as_str().unwrap();
        t.authenticate(access).await.unwrap();
        let before = server.command_calls();
        t.authenticate(access).await.unwrap();
        let spent = RedisServer::delta(&before, &server.command_calls());
        // The plain read, then the script that checks the bound session (one round
        // trip each, as before keep-alive existed); nothing written.
        assert_eq!(spent.get("evalsha"), Some(&1), "{spent:?}");
        for write in ["hset", "pexpire", "pexpireat", "zadd", "del"] {
            assert!(!spent.contains_key(write), "{spent:?}");
        }
    }
}
