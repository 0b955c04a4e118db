//! Access and refresh tokens: one suite run on `MemoryStore`, `RedisStore` on a real
//! `redis-server`, and `RedisStore` on a 3-master Redis Cluster; then Redis-only checks
//! (command counts for hostile tokens, no secret in a dump, key TTLs).

#[macro_use]
mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::collections::HashSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::{get, post};
use common::{Client, TestStore};
use tower_redis_session::tokens::{
    Bearer, IssueOptions, TokenConfig, TokenError, TokenPair, TokenStore, Tokens,
};
use tower_redis_session::{Session, SessionConfig, SessionLayer};

macro_rules! all_cases {
    ($store:ident, $make:path) => {
        store_cases!($store, $make;
            rotation_chain, access_ttl_and_refresh_inactivity, family_absolute_lifetime,
            reuse_outside_grace_kills_family, grace_tolerates_only_the_previous_token,
            concurrent_refreshes_yield_one_pair, revocation_per_rfc7009,
            revoke_user_ends_sessions_and_tokens, logout_everywhere_ends_tokens,
            session_bound_tokens_end_with_the_session, hostile_tokens_are_invalid,
            bearer_extractor_answers_rfc6750, claims_and_scope, token_events,
            list_families, long_chain_stays_bounded_and_detects_old_reuse,
            invalid_user_ids_get_no_tokens, session_bound_tokens_follow_id_rotation,
            family_limit_ends_the_family_closest_to_expiry, grace_window_has_a_time_limit,
            relogin_in_flight_keeps_bound_families, families_remember_their_client,
            grace_replays_are_reported, a_device_login_is_a_session,
            a_device_ends_with_its_tokens,
        );
    };
}

all_cases!(memory_store, super::common::stores::memory_store);
all_cases!(redis_store, super::common::stores::redis_store);
all_cases!(redis_cluster, super::common::stores::cluster_store);

mod cases {
    use super::*;

    fn tokens<S: TokenStore>(s: S, config: TokenConfig) -> Tokens {
        Tokens::new(s, config).unwrap()
    }

    async fn refresh_ok(t: &Tokens, p: &TokenPair) -> TokenPair {
        t.refresh(&p.refresh_token).await.expect("refresh")
    }

    async fn live(t: &Tokens, access: &str) -> bool {
        match t.authenticate(access).await {
            Ok(_) => true,
            Err(TokenError::InvalidToken) => false,
            Err(e) => panic!("{e}"),
        }
    }

    async fn sleep_ms(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    pub async fn rotation_chain<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default());
        let first = t.issue("alice").await.unwrap();
        assert_eq!(
            Duration::from_secs(first.expires_in),
            Duration::from_secs(3600)
        );
        assert!(
            Duration::from_secs(first.refresh_token_expires_in)
                >= Duration::from_secs(30 * 86_400 - 1)
        );
        let claims = t.authenticate(&first.access_token).await.unwrap();
        assert_eq!(claims.user_id.as_str(), "alice");
        assert_eq!(claims.family, first.family);

        let mut chain = vec![first];
        for _ in 0..4 {
            let next = refresh_ok(&t, chain.last().unwrap()).await;
            assert_eq!(next.family, chain[0].family, "same family");
            let c = t.authenticate(&next.access_token).await.unwrap();
            assert_eq!((c.user_id.as_str(), c.family), ("alice", chain[0].family));
            chain.push(next);
        }
        let distinct: HashSet<_> = chain
            .iter()
            .flat_map(|p| [p.access_token.clone(), p.refresh_token.clone()])
            .collect();
        assert_eq!(distinct.len(), chain.len() * 2, "every token is new");
        // Access tokens stay valid until they expire; the consumed refresh tokens do not
        // rotate again.
        for p in &chain {
            assert!(live(&t, &p.access_token).await);
        }
        assert!(matches!(
            t.refresh(&chain[3].refresh_token).await,
            Err(TokenError::Raced | TokenError::Reused { .. })
        ));
    }

    pub async fn access_ttl_and_refresh_inactivity<S: TestStore + TokenStore>(s: S) {
        let config = TokenConfig::default()
            .with_access_ttl(Duration::from_secs(1))
            .with_refresh_ttl(Duration::from_secs(1))
            .with_reuse_grace(Duration::ZERO);
        let t = tokens(s, config);
        let idle = t.issue("alice").await.unwrap();
        let active = t.issue("alice").await.unwrap();
        assert_eq!(Duration::from_secs(idle.expires_in), Duration::from_secs(1));
        sleep_ms(600).await;
        let active = refresh_ok(&t, &active).await;
        sleep_ms(600).await;
        assert!(!live(&t, &idle.access_token).await, "access TTL enforced");
        assert!(
            matches!(
                t.refresh(&idle.refresh_token).await,
                Err(TokenError::InvalidGrant)
            ),
            "an unused refresh token expires after the inactivity period"
        );
        // 1.2 s after its login, the family that keeps refreshing is alive.
        let active = refresh_ok(&t, &active).await;
        assert!(live(&t, &active.access_token).await);
    }

    pub async fn family_absolute_lifetime<S: TestStore + TokenStore>(s: S) {
        let config = TokenConfig::default()
            .with_refresh_ttl(Duration::from_secs(1))
            .with_family_lifetime(Duration::from_secs(1))
            .with_reuse_grace(Duration::from_millis(100));
        let t = tokens(s, config);
        let p = t.issue("alice").await.unwrap();
        assert!(
            Duration::from_secs(p.expires_in) <= Duration::from_secs(1),
            "capped by the family"
        );
        sleep_ms(500).await;
        // Refreshing keeps the family's deadline: the new pair gets what is left.
        let p = refresh_ok(&t, &p).await;
        assert_eq!(
            Duration::from_secs(p.expires_in),
            Duration::ZERO,
            "under a second left"
        );
        assert_eq!(
            Duration::from_secs(p.refresh_token_expires_in),
            Duration::ZERO
        );
        sleep_ms(600).await;
        assert!(
            !live(&t, &p.access_token).await,
            "no token outlives the family"
        );
        assert!(matches!(
            t.refresh(&p.refresh_token).await,
            Err(TokenError::InvalidGrant)
        ));
    }

    pub async fn reuse_outside_grace_kills_family<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default().with_reuse_grace(Duration::ZERO));
        let p1 = t.issue("alice").await.unwrap();
        let other = t.issue("alice").await.unwrap();
        let p2 = refresh_ok(&t, &p1).await;
        let p3 = refresh_ok(&t, &p2).await;
        // The attacker replays p1's refresh token after the client moved on.
        match t.refresh(&p1.refresh_token).await {
            Err(TokenError::Reused { family }) => assert_eq!(family, p1.family),
            other => panic!("expected Reused, got {other:?}"),
        }
        for p in [&p1, &p2, &p3] {
            assert!(!live(&t, &p.access_token).await, "family revoked");
        }
        assert!(matches!(
            t.refresh(&p3.refresh_token).await,
            Err(TokenError::InvalidGrant)
        ));
        assert!(
            live(&t, &other.access_token).await,
            "other family untouched"
        );
        refresh_ok(&t, &other).await;
    }

    pub async fn long_chain_stays_bounded_and_detects_old_reuse<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default().with_reuse_grace(Duration::ZERO));
        let mut chain = vec![t.issue("alice").await.unwrap()];
        for _ in 0..40 {
            let next = refresh_ok(&t, chain.last().unwrap()).await;
            chain.push(next);
        }
        // A family keeps its newest ACCESS_KEPT (8) access tokens; older ones ended
        // when they were pushed out.
        let kept = chain.len() - 8;
        for (i, p) in chain.iter().enumerate() {
            assert_eq!(
                live(&t, &p.access_token).await,
                i >= kept,
                "access token {i}"
            );
        }
        // The refresh token consumed 40 refreshes ago is still known: replaying it
        // ends the family, with every token issued since.
        match t.refresh(&chain[0].refresh_token).await {
            Err(TokenError::Reused { family }) => assert_eq!(family, chain[0].family),
            other => panic!("expected Reused, got {other:?}"),
        }
        for p in &chain[kept..] {
            assert!(!live(&t, &p.access_token).await, "family revoked");
        }
        assert!(matches!(
            t.refresh(&chain.last().unwrap().refresh_token).await,
            Err(TokenError::InvalidGrant)
        ));
    }

    pub async fn grace_tolerates_only_the_previous_token<S: TestStore + TokenStore>(s: S) {
        let t = tokens(
            s,
            TokenConfig::default().with_reuse_grace(Duration::from_secs(5)),
        );
        let p1 = t.issue("alice").await.unwrap();
        let p2 = refresh_ok(&t, &p1).await;
        // A double submit of p1 right after: an error, no tokens, nothing revoked.
        assert!(matches!(
            t.refresh(&p1.refresh_token).await,
            Err(TokenError::Raced)
        ));
        assert!(live(&t, &p2.access_token).await);
        let p3 = refresh_ok(&t, &p2).await;
        // p1 is no longer the immediately previous token: replaying it is reuse.
        assert!(matches!(
            t.refresh(&p1.refresh_token).await,
            Err(TokenError::Reused { .. })
        ));
        assert!(!live(&t, &p3.access_token).await);
    }

    pub async fn grace_window_has_a_time_limit<S: TestStore + TokenStore>(s: S) {
        let t = tokens(
            s,
            TokenConfig::default().with_reuse_grace(Duration::from_millis(200)),
        );
        let victim = t.issue("alice").await.unwrap();
        let refreshed = refresh_ok(&t, &victim).await;
        // The common theft: the victim refreshed once, and the thief replays the stolen
        // (immediately previous) token after the window has passed.
        sleep_ms(300).await;
        assert!(matches!(
            t.refresh(&victim.refresh_token).await,
            Err(TokenError::Reused { .. })
        ));
        assert!(
            !live(&t, &refreshed.access_token).await,
            "reuse ends the family"
        );
    }

    /// RFC 6749 §6 and RFC 7009 §2.1: a family issued to a client is refreshed and
    /// revoked only by that client; another client (or none) is refused and changes
    /// nothing.
    pub async fn families_remember_their_client<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default());
        let mine = t
            .issue_with("alice", IssueOptions::default().with_client_id("app-a"))
            .await
            .unwrap();
        for wrong in [Some("app-b"), None] {
            let refused = match wrong {
                Some(c) => t.refresh_for_client(c, &mine.refresh_token).await,
                None => t.refresh(&mine.refresh_token).await,
            };
            assert!(
                matches!(refused, Err(TokenError::InvalidGrant)),
                "{wrong:?}: {refused:?}"
            );
        }
        for token in [&mine.access_token, &mine.refresh_token] {
            assert!(matches!(
                t.revoke_for_client("app-b", token).await,
                Err(TokenError::InvalidGrant)
            ));
        }
        assert!(live(&t, &mine.access_token).await, "nothing changed");
        assert_eq!(
            t.list("alice").await.unwrap()[0].client_id.as_deref(),
            Some("app-a")
        );
        let next = t
            .refresh_for_client("app-a", &mine.refresh_token)
            .await
            .unwrap();
        // A first-party family (no client) refuses a client's refresh.
        let plain = t.issue("alice").await.unwrap();
        assert!(matches!(
            t.refresh_for_client("app-a", &plain.refresh_token).await,
            Err(TokenError::InvalidGrant)
        ));
        assert!(t.refresh(&plain.refresh_token).await.is_ok());
        t.revoke_for_client("app-a", &next.refresh_token)
            .await
            .unwrap();
        assert!(
            !live(&t, &next.access_token).await,
            "its own client revoked it"
        );
        // Unknown and malformed tokens stay a success (RFC 7009 §2.2).
        t.revoke_for_client("app-a", "rt.nope").await.unwrap();
    }

    /// A replay inside the grace window is not a refresh and not a reuse: its own event.
    pub async fn grace_replays_are_reported<S: TestStore + TokenStore>(s: S) {
        use std::sync::{Arc, Mutex};
        use tower_redis_session::events::{EventKind, SessionEvent};
        let seen = Arc::new(Mutex::new(Vec::<SessionEvent>::new()));
        let sink = seen.clone();
        let t = tokens(s, TokenConfig::default())
            .with_events(move |e: &SessionEvent| sink.lock().unwrap().push(e.clone()));
        let p = t.issue("ivy").await.unwrap();
        refresh_ok(&t, &p).await;
        assert!(matches!(
            t.refresh(&p.refresh_token).await,
            Err(TokenError::Raced)
        ));
        tokio::time::timeout(Duration::from_secs(10), t.flush_events())
            .await
            .expect("the hook drains its queue");
        let events = seen.lock().unwrap().clone();
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::TokenIssued,
                EventKind::TokenRefreshed,
                EventKind::TokenGraceReplay
            ]
        );
        assert_eq!(events[2].family, Some(p.family));
        assert_eq!(events[2].user_id.as_deref(), Some("ivy"));
        assert_eq!(EventKind::TokenGraceReplay.name(), "token_grace_replay");
    }

    pub async fn relogin_in_flight_keeps_bound_families<S: TestStore + TokenStore>(s: S) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::sync::Semaphore;
        let t = tokens(s.clone(), TokenConfig::default());
        let (held, release) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
        let armed = Arc::new(AtomicBool::new(false));
        let (h, r, on) = (held.clone(), release.clone(), armed.clone());
        let layer = SessionLayer::new(s.clone(), SessionConfig::default())
            .unwrap()
            .with_login_pause(move || {
                let (h, r, on) = (h.clone(), r.clone(), on.clone());
                async move {
                    if on.load(Ordering::SeqCst) {
                        h.add_permits(1);
                        r.acquire().await.unwrap().forget();
                    }
                }
            });
        let app = app_on(layer, &t);
        let mut web = login(&app, "alice").await;
        let (access, refresh) = bound_pair(&mut web).await;
        armed.store(true, Ordering::SeqCst);
        let mut again = web.clone();
        let relogin = tokio::spawn(async move { again.post("/login?user=alice").await });
        held.acquire().await.unwrap().forget();
        // A bearer request lands while the re-login is in flight.
        assert!(live(&t, &access).await, "the session is still there");
        release.add_permits(1);
        assert_eq!(relogin.await.unwrap().status, 200);
        assert!(live(&t, &access).await, "the family survives the re-login");
        t.refresh(&refresh).await.expect("and refreshes");
    }

    pub async fn concurrent_refreshes_yield_one_pair<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default());
        let p = t.issue("alice").await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let t = t.clone();
                let r = p.refresh_token.clone();
                tokio::spawn(async move { t.refresh(&r).await })
            })
            .collect();
        let mut pairs = Vec::new();
        let mut raced = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(pair) => pairs.push(pair),
                Err(TokenError::Raced) => raced += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!((pairs.len(), raced), (1, 19), "exactly one new pair");
        assert!(live(&t, &pairs[0].access_token).await, "family kept");
        refresh_ok(&t, &pairs[0]).await;
    }

    pub async fn revocation_per_rfc7009<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default());
        let a = t.issue("alice").await.unwrap();
        let b = refresh_ok(&t, &a).await;
        // An access token ends alone.
        t.revoke(&a.access_token).await.unwrap();
        assert!(!live(&t, &a.access_token).await);
        assert!(live(&t, &b.access_token).await);
        // A refresh token ends its family, access tokens included; twice is fine.
        t.revoke(&b.refresh_token).await.unwrap();
        t.revoke(&b.refresh_token).await.unwrap();
        assert!(!live(&t, &b.access_token).await);
        assert!(matches!(
            t.refresh(&b.refresh_token).await,
            Err(TokenError::InvalidGrant)
        ));
        // Unknown and malformed tokens: success, nothing happens.
        let c = t.issue("alice").await.unwrap();
        for junk in ["", "nonsense", "rt.AAAAAAAAAAAAAAAA.x", &a.refresh_token] {
            t.revoke(junk).await.unwrap();
        }
        assert!(live(&t, &c.access_token).await);
        // Revoking a family by id, as an admin would.
        assert!(t.revoke_family("alice", c.family).await.unwrap());
        assert!(!t.revoke_family("alice", c.family).await.unwrap());
        assert!(!live(&t, &c.access_token).await);
        let d = t.issue("alice").await.unwrap();
        assert!(
            !t.revoke_family("bob", d.family).await.unwrap(),
            "owner checked"
        );
        assert!(live(&t, &d.access_token).await);
    }

    pub fn app<S: TestStore>(s: S, t: &Tokens) -> Router {
        app_on(SessionLayer::new(s, SessionConfig::default()).unwrap(), t)
    }

    pub fn app_on(layer: SessionLayer, t: &Tokens) -> Router {
        routes::routes()
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
            .route(
                "/device",
                post(
                    |session: Session,
                     tokens: axum::Extension<Tokens>,
                     q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                        let mut details = tower_redis_session::SessionDetails::default();
                        details.insert("device", "phone").unwrap();
                        let options = IssueOptions::default().with_details(details);
                        let pair = tokens.login(&session, &q["user"], options).await?;
                        Ok::<_, TokenError>(axum::Json(pair))
                    },
                ),
            )
            .merge(common::session_routes::per_user())
            .route(
                "/me",
                get(|Bearer(claims): Bearer| async move { claims.user_id.as_str().to_owned() }),
            )
            .layer(layer)
            .layer(t.layer())
    }

    pub async fn login(app: &Router, user: &str) -> Client {
        let mut c = Client::new(app.clone());
        assert_eq!(c.post(&format!("/login?user={user}")).await.status, 200);
        c
    }

    /// A device login over HTTP, as an app would send it: its pair, parsed.
    async fn device_login(app: &Router, user: &str) -> (Client, TokenPairJson) {
        let mut app_client = Client::new(app.clone());
        app_client
            .headers
            .push(("user-agent", "ExampleApp/2.1 (iOS 18)".to_owned()));
        let r = app_client.post(&format!("/device?user={user}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.set_cookie.is_none(), "a device gets no cookie");
        let pair: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let token = |name: &str| pair[name].as_str().unwrap().to_owned();
        (app_client, (token("access_token"), token("refresh_token")))
    }

    type TokenPairJson = (String, String);

    fn device_setup<S: TestStore + TokenStore>(
        s: &S,
        max: usize,
        config: TokenConfig,
    ) -> (SessionLayer, Tokens, Router) {
        let limit = SessionConfig::default()
            .with_max_sessions_per_user(max, tower_redis_session::LimitPolicy::Reject);
        let layer = SessionLayer::new(s.clone(), limit).unwrap();
        let t = tokens(s.clone(), config)
            .with_session_layer(&layer)
            .unwrap();
        let app = app_on(layer.clone(), &t);
        (layer, t, app)
    }

    pub async fn a_device_login_is_a_session<S: TestStore + TokenStore>(s: S) {
        // Without the session layer that keeps devices alive, nothing is written.
        let bare = tokens(s.clone(), TokenConfig::default());
        let layer = SessionLayer::new(s.clone(), SessionConfig::default()).unwrap();
        let mut c = Client::new(app_on(layer.clone(), &bare));
        assert_eq!(c.post("/device?user=alice").await.status, 500);
        assert!(layer.admin().list("alice").await.unwrap().is_empty());

        let (layer, t, app) = device_setup(&s, 2, TokenConfig::default());
        let (mut phone, (access, _)) = device_login(&app, "alice").await;
        // Listed with the browser sessions: user agent, details, and its tokens'
        // handle.
        let listed = layer.admin().list("alice").await.unwrap();
        assert_eq!(listed.len(), 1);
        let device = &listed[0];
        assert_eq!(
            device.user_agent.as_deref(),
            Some("ExampleApp/2.1 (iOS 18)")
        );
        assert_eq!(device.details.get("device"), Some("phone"));
        let claims = t.authenticate(&access).await.unwrap();
        assert_eq!(claims.session, Some(device.handle));
        assert_eq!(claims.user_id, "alice");
        // Its bearer requests work and still send no cookie.
        phone
            .headers
            .push(("authorization", format!("Bearer {access}")));
        let r = phone.get("/me").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "alice"));
        assert!(r.set_cookie.is_none());
        // Counted by the same limit: a browser login takes the second place, a second
        // device is refused (409) and leaves nothing behind.
        let mut web = login(&app, "alice").await;
        let mut second = Client::new(app.clone());
        assert_eq!(second.post("/device?user=alice").await.status, 409);
        assert_eq!(layer.admin().list("alice").await.unwrap().len(), 2);
        // "Sign out other devices" from the browser ends the device and its tokens.
        assert_eq!(web.post("/revoke_others").await.body, "1");
        assert!(!live(&t, &access).await, "its tokens ended with it");
        assert_eq!(layer.admin().list("alice").await.unwrap().len(), 1);
        // A device's tokens are bound to it, not to the request's own session: a device
        // login from a browser leaves the browser's session as it is.
        let before = web.cookie.clone();
        let r = web.post("/device?user=alice").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.set_cookie.is_none());
        assert_eq!(web.cookie, before);
        assert_eq!(web.get("/read").await.body, "alice");
        assert_eq!(layer.admin().list("alice").await.unwrap().len(), 2);
    }

    pub async fn a_device_ends_with_its_tokens<S: TestStore + TokenStore>(s: S) {
        let (layer, t, app) = device_setup(
            &s,
            10,
            TokenConfig::default().with_reuse_grace(Duration::ZERO),
        );
        let count = || async { layer.admin().list("alice").await.unwrap().len() };
        let mut web = login(&app, "alice").await;
        // The app signs out (RFC 7009 revocation of its refresh token).
        let (_, (access, refresh)) = device_login(&app, "alice").await;
        assert_eq!(count().await, 2);
        t.revoke(&refresh).await.unwrap();
        assert!(!live(&t, &access).await);
        assert_eq!(count().await, 1, "the device went with its family");
        // A replayed refresh token (theft) ends the family, and so the device.
        let (_, (_, first)) = device_login(&app, "alice").await;
        let next = t.refresh(&first).await.unwrap();
        assert!(matches!(
            t.refresh(&first).await,
            Err(TokenError::Reused { .. })
        ));
        assert!(!live(&t, &next.access_token).await);
        assert_eq!(count().await, 1);
        // So does an admin's revocation of the family.
        let (_, (access, _)) = device_login(&app, "alice").await;
        let family = t.authenticate(&access).await.unwrap().family;
        assert!(t.revoke_family("alice", family).await.unwrap());
        assert_eq!(count().await, 1);
        // Revoking every token of the user (or a family by id) ends the devices; the
        // browser session stays.
        device_login(&app, "alice").await;
        device_login(&app, "alice").await;
        assert_eq!(count().await, 3);
        assert_eq!(t.revoke_all_tokens("alice").await.unwrap(), 2);
        assert_eq!(count().await, 1);
        assert_eq!(web.get("/read").await.body, "alice");
        // Log out everywhere counts devices as sessions.
        device_login(&app, "alice").await;
        assert_eq!(web.post("/everywhere").await.body, "2");
        assert_eq!(count().await, 0);
    }

    pub async fn revoke_user_ends_sessions_and_tokens<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s.clone(), TokenConfig::default());
        let layer = SessionLayer::new(s.clone(), SessionConfig::default()).unwrap();
        let app = app(s.clone(), &t);
        let mut alice_web = [login(&app, "alice").await, login(&app, "alice").await];
        let alice_api = [
            t.issue("alice").await.unwrap(),
            t.issue("alice").await.unwrap(),
        ];
        let mut bob_web = login(&app, "bob").await;
        let bob_api = t.issue("bob").await.unwrap();

        assert_eq!(layer.admin().revoke_all("alice").await.unwrap(), 2);
        for c in &mut alice_web {
            assert_eq!(c.get("/read").await.status, 401);
        }
        for p in &alice_api {
            assert!(!live(&t, &p.access_token).await);
            assert!(matches!(
                t.refresh(&p.refresh_token).await,
                Err(TokenError::InvalidGrant)
            ));
        }
        assert_eq!(bob_web.get("/read").await.body, "bob");
        assert!(live(&t, &bob_api.access_token).await);
        // Tokens alone.
        let again = t.issue("alice").await.unwrap();
        assert_eq!(t.revoke_all_tokens("alice").await.unwrap(), 1);
        assert!(!live(&t, &again.access_token).await);
        assert_eq!(t.revoke_all_tokens("alice").await.unwrap(), 0);
    }

    pub async fn logout_everywhere_ends_tokens<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s.clone(), TokenConfig::default());
        let app = app(s.clone(), &t);
        let mut web = login(&app, "alice").await;
        let api = t.issue("alice").await.unwrap();
        let bob = t.issue("bob").await.unwrap();
        assert_eq!(web.post("/everywhere").await.body, "1");
        assert!(!live(&t, &api.access_token).await);
        assert!(matches!(
            t.refresh(&api.refresh_token).await,
            Err(TokenError::InvalidGrant)
        ));
        assert!(live(&t, &bob.access_token).await);
    }

    pub async fn session_bound_tokens_end_with_the_session<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s.clone(), TokenConfig::default());
        let app = app(s.clone(), &t);
        let mut anonymous = Client::new(app.clone());
        assert_eq!(anonymous.post("/tokens").await.status, 401, "needs a login");
        let mut web = login(&app, "alice").await;
        let r = web.post("/tokens").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let pair: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(pair["token_type"], "Bearer");
        assert_eq!(pair["expires_in"], 3600);
        let access = pair["access_token"].as_str().unwrap().to_owned();
        let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
        let claims = t.authenticate(&access).await.unwrap();
        assert!(claims.session.is_some());
        let unbound = t.issue("alice").await.unwrap();

        assert_eq!(web.post("/logout").await.status, 200);
        assert!(!live(&t, &access).await, "ended with its session");
        assert!(matches!(
            t.refresh(&refresh).await,
            Err(TokenError::InvalidGrant)
        ));
        assert!(live(&t, &unbound.access_token).await, "unbound family kept");
    }

    /// A bound pair issued on `web`'s session: (access, refresh).
    async fn bound_pair(web: &mut Client) -> (String, String) {
        let r = web.post("/tokens").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let pair: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let token = |name: &str| pair[name].as_str().unwrap().to_owned();
        (token("access_token"), token("refresh_token"))
    }

    pub async fn session_bound_tokens_follow_id_rotation<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s.clone(), TokenConfig::default());
        let app = app(s.clone(), &t);
        let mut web = login(&app, "alice").await;
        let (access, refresh) = bound_pair(&mut web).await;
        let handle = web.get("/handle").await.body;
        // cycle_id and a second login of the same user rotate the id, not the session.
        let before = web.cookie.clone();
        assert_eq!(web.post("/cycle").await.status, 200);
        assert_ne!(web.cookie, before, "the id rotated");
        assert!(live(&t, &access).await, "access token survives cycle_id");
        let before = web.cookie.clone();
        assert_eq!(web.post("/login?user=alice").await.status, 200);
        assert_ne!(web.cookie, before, "the id rotated again");
        assert_eq!(web.get("/handle").await.body, handle, "same session");
        assert!(live(&t, &access).await, "access token survives a new login");
        let next = t.refresh(&refresh).await.expect("refresh after rotations");
        assert!(live(&t, &next.access_token).await);
        // It still ends with the session.
        assert_eq!(web.post("/logout").await.status, 200);
        assert!(
            !live(&t, &next.access_token).await,
            "ended with its session"
        );
        assert!(matches!(
            t.refresh(&next.refresh_token).await,
            Err(TokenError::InvalidGrant)
        ));
        // Logging the session in as someone else ends alice's tokens bound to it.
        let mut shared = login(&app, "alice").await;
        let (access, _) = bound_pair(&mut shared).await;
        assert_eq!(shared.post("/login?user=bob").await.status, 200);
        assert!(!live(&t, &access).await, "the session is no longer alice's");
    }

    pub async fn family_limit_ends_the_family_closest_to_expiry<S: TestStore + TokenStore>(s: S) {
        let t = tokens(
            s.clone(),
            TokenConfig::default().with_max_families_per_user(3),
        );
        let stale = t.issue("alice").await.unwrap();
        sleep_ms(3).await;
        let mut fresh = Vec::new();
        for _ in 0..2 {
            fresh.push(t.issue("alice").await.unwrap());
            sleep_ms(3).await; // expiry times are in ms: no ties
        }
        // Refreshing the first family moves it to the back of the line.
        let stale = refresh_ok(&t, &stale).await;
        sleep_ms(3).await;
        let newest = t.issue("alice").await.unwrap();
        assert!(
            !live(&t, &fresh[0].access_token).await,
            "closest to expiry: ended"
        );
        for p in [&stale, &fresh[1], &newest] {
            assert!(live(&t, &p.access_token).await);
        }
        assert_eq!(t.list("alice").await.unwrap().len(), 3);
        assert!(t.issue("bob").await.is_ok(), "per user");
        // The default is 100.
        let t = tokens(s, TokenConfig::default());
        let first = t.issue("carol").await.unwrap();
        sleep_ms(3).await;
        for _ in 0..100 {
            t.issue("carol").await.unwrap();
        }
        assert_eq!(t.list("carol").await.unwrap().len(), 100);
        assert!(!live(&t, &first.access_token).await);
    }

    pub async fn invalid_user_ids_get_no_tokens<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default());
        let long = "u".repeat(257);
        for bad in ["", "a\0b", "a\nb", long.as_str()] {
            assert!(
                matches!(t.issue(bad).await, Err(TokenError::InvalidUserId(_))),
                "{bad:?}"
            );
            assert!(t.list(bad).await.unwrap_or_default().is_empty());
        }
        let r = TokenError::InvalidUserId("empty");
        assert_eq!(axum::response::IntoResponse::into_response(r).status(), 400);
        t.issue(&"u".repeat(256)).await.unwrap();
    }

    pub async fn hostile_tokens_are_invalid<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default());
        let p = t.issue("alice").await.unwrap();
        let a = &p.access_token;
        let (head, secret) = a.rsplit_once('.').unwrap();
        let mut flipped = secret.as_bytes().to_vec();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let forged_secret = format!("{head}.{}", String::from_utf8(flipped).unwrap());
        let other_tag = format!("at.AAAAAAAAAAAAAAAA.{secret}");
        let huge = "a".repeat(100_000);
        for bad in [
            "",
            "at.",
            "Bearer x",
            &forged_secret,
            &other_tag,
            &huge,
            "at.\u{0}\u{0}\u{0}",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.",
        ] {
            assert!(!live(&t, bad).await, "{bad:.40}");
            assert!(matches!(
                t.refresh(bad).await,
                Err(TokenError::InvalidGrant)
            ));
        }
        assert!(!live(&t, &p.refresh_token).await, "the wrong kind");
        assert!(matches!(t.refresh(a).await, Err(TokenError::InvalidGrant)));
        assert!(live(&t, a).await);
    }

    pub async fn bearer_extractor_answers_rfc6750<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s.clone(), TokenConfig::default());
        let app = app(s, &t);
        let p = t.issue("alice").await.unwrap();
        let call = |auth: Option<String>| {
            let app = app.clone();
            async move {
                let mut req = Request::builder().uri("/me");
                if let Some(a) = auth {
                    req = req.header(header::AUTHORIZATION, a);
                }
                common::client::send(app, req.body(Body::empty()).unwrap()).await
            }
        };
        let ok = call(Some(format!("Bearer {}", &p.access_token))).await;
        assert_eq!((ok.status.as_u16(), ok.body.as_str()), (200, "alice"));
        let missing = call(None).await;
        assert_eq!(missing.status, 401);
        assert_eq!(missing.headers[header::WWW_AUTHENTICATE], "Bearer");
        let malformed = call(Some("Bearer a b".into())).await;
        assert_eq!(malformed.status, 400);
        assert!(
            malformed.headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_request""#)
        );
        t.revoke(&p.access_token).await.unwrap();
        for auth in [
            format!("Bearer {}", &p.access_token),
            "Bearer at.AAAAAAAAAAAAAAAA.xyz".into(),
        ] {
            let r = call(Some(auth)).await;
            assert_eq!(r.status, 401);
            assert!(
                r.headers[header::WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap()
                    .contains(r#"error="invalid_token""#)
            );
        }
    }

    pub async fn token_events<S: TestStore + TokenStore>(s: S) {
        use std::sync::{Arc, Mutex};
        use tower_redis_session::events::{EventKind, SessionEvent};
        let seen = Arc::new(Mutex::new(Vec::<SessionEvent>::new()));
        let sink = seen.clone();
        let t = tokens(s, TokenConfig::default().with_reuse_grace(Duration::ZERO))
            .with_events(move |e: &SessionEvent| sink.lock().unwrap().push(e.clone()));
        let p1 = t.issue("ivy").await.unwrap();
        let p2 = refresh_ok(&t, &p1).await;
        assert!(matches!(
            t.refresh(&p1.refresh_token).await,
            Err(TokenError::Reused { .. })
        ));
        let q = t.issue("ivy").await.unwrap();
        t.revoke(&q.refresh_token).await.unwrap();
        let expected = [
            EventKind::TokenIssued,
            EventKind::TokenRefreshed,
            EventKind::TokenReused,
            EventKind::TokenIssued,
            EventKind::TokenRevoked,
        ];
        tokio::time::timeout(Duration::from_secs(10), t.flush_events())
            .await
            .expect("the hook drains its queue");
        let events = seen.lock().unwrap().clone();
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, expected);
        assert!(
            events[..4]
                .iter()
                .all(|e| e.user_id.as_deref() == Some("ivy"))
        );
        assert_eq!(events[2].family, Some(p1.family));
        assert_eq!(events[4].family, Some(q.family));
        let json = serde_json::to_string(&events).unwrap();
        for token in [&p1.refresh_token, &p2.access_token, &q.refresh_token] {
            let secret = token.rsplit_once('.').unwrap().1;
            assert!(!json.contains(secret), "a token is in an event");
        }
    }

    pub async fn list_families<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default());
        assert!(t.list("lee").await.unwrap().is_empty());
        let a = t.issue("lee").await.unwrap();
        sleep_ms(5).await;
        let b = t
            .issue_with("lee", IssueOptions::default().with_scope("read"))
            .await
            .unwrap();
        t.issue("someone-else").await.unwrap();
        refresh_ok(&t, &a).await;
        let list = t.list("lee").await.unwrap();
        let ids: Vec<_> = list.iter().map(|f| f.family).collect();
        assert_eq!(ids, [a.family, b.family], "oldest first, only lee's");
        assert!(list[0].last_refreshed.is_some());
        assert!(list[1].last_refreshed.is_none());
        assert_eq!(list[1].scope.as_deref(), Some("read"));
        assert!(list[0].expires > list[0].created);
        // "Sign out that app".
        assert!(t.revoke_family("lee", b.family).await.unwrap());
        let ids: Vec<_> = t
            .list("lee")
            .await
            .unwrap()
            .iter()
            .map(|f| f.family)
            .collect();
        assert_eq!(ids, [a.family]);
        t.revoke_all_tokens("lee").await.unwrap();
        assert!(t.list("lee").await.unwrap().is_empty());
    }

    pub async fn claims_and_scope<S: TestStore + TokenStore>(s: S) {
        let t = tokens(s, TokenConfig::default());
        let p = t
            .issue_with("alice", IssueOptions::default().with_scope("read write"))
            .await
            .unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["scope"], "read write");
        assert!(
            !format!("{p:?}").contains(&p.access_token),
            "Debug is redacted"
        );
        let c = t.authenticate(&p.access_token).await.unwrap();
        assert_eq!(c.scope.as_deref(), Some("read write"));
        assert!(c.session.is_none());
        assert!(c.expires_at > c.issued_at);
        let next = refresh_ok(&t, &p).await;
        let c2 = t.authenticate(&next.access_token).await.unwrap();
        assert_eq!(
            c2.scope.as_deref(),
            Some("read write"),
            "scope kept on rotation"
        );
    }
}

/// Checks that need to look inside Redis.
mod redis_only {
    use redis::AsyncCommands as _;
    use tower_redis_session::{RedisStore, SessionError, StoreError, UserKey};

    use super::*;
    use common::RedisServer;

    /// What one process of an app holds: its store, session layer, tokens and routes.
    struct Process {
        layer: SessionLayer,
        tokens: Tokens,
        app: Router,
    }

    fn process(store: RedisStore) -> Process {
        let tokens = Tokens::new(store.clone(), TokenConfig::default()).unwrap();
        Process {
            layer: SessionLayer::new(store.clone(), SessionConfig::default()).unwrap(),
            app: cases::app(store, &tokens),
            tokens,
        }
    }

    fn is_key_lost(e: &SessionError) -> bool {
        matches!(e, SessionError::Store(s) if matches!(**s, StoreError::UserKeyLost { .. }))
    }

    /// Alice's two browser sessions and one API token family, made by `p`.
    async fn alice(p: &Process) -> (Vec<Client>, TokenPair) {
        let web = vec![
            cases::login(&p.app, "alice").await,
            cases::login(&p.app, "alice").await,
        ];
        (web, p.tokens.issue("alice").await.unwrap())
    }

    /// Whether every session and token of alice's is refused.
    async fn alice_is_out(p: &Process, web: &mut [Client], api: &TokenPair) -> bool {
        let mut out = p.tokens.authenticate(&api.access_token).await.is_err();
        for c in web {
            out &= c.get("/read").await.status == 401;
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn longest_lifetimes_work_in_the_scripts() {
        let ten_years = Duration::from_secs(10 * 365 * 86_400);
        let config = TokenConfig::default()
            .with_access_ttl(ten_years)
            .with_refresh_ttl(ten_years)
            .with_family_lifetime(ten_years);
        let t = Tokens::new(common::stores::redis_store("longest-tokens"), config).unwrap();
        let p = t.issue("max").await.unwrap();
        assert!(
            Duration::from_secs(p.refresh_token_expires_in) > ten_years - Duration::from_secs(60)
        );
        let p = t.refresh(&p.refresh_token).await.unwrap();
        assert_eq!(
            t.authenticate(&p.access_token)
                .await
                .unwrap()
                .user_id
                .as_str(),
            "max"
        );
        assert_eq!(t.list("max").await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_user_key_is_never_silently_replaced() {
        let server = RedisServer::start();
        let ns = "lost-key";
        let first = process(common::stores::redis_store_on(&server.url(), ns));
        let (mut web, api) = alice(&first).await;
        let mut conn = common::stores::redis_conn(&server.url()).await;
        let _: () = conn.del(format!("{ns}:salt")).await.unwrap();

        // A new process finds alice's data but no key: it refuses, mints nothing.
        let second = process(common::stores::redis_store_on(&server.url(), ns));
        let err = second.layer.admin().revoke_all("alice").await.unwrap_err();
        assert!(is_key_lost(&err), "{err:?}");
        assert!(matches!(
            second.tokens.issue("bob").await,
            Err(TokenError::Store(StoreError::UserKeyLost { .. }))
        ));
        assert!(
            !conn.exists::<_, bool>(format!("{ns}:salt")).await.unwrap(),
            "no new key was made"
        );
        // Nothing was lost: alice is still signed in, and the process that has seen
        // the key still ends every session and token of hers.
        for c in &mut web {
            assert_eq!(c.get("/read").await.body, "alice");
        }
        assert!(first.tokens.authenticate(&api.access_token).await.is_ok());
        assert_eq!(first.layer.admin().revoke_all("alice").await.unwrap(), 2);
        assert!(alice_is_out(&first, &mut web, &api).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_supplied_user_key_survives_processes_and_needs_nothing_in_redis() {
        let server = RedisServer::start();
        let ns = "own-key";
        let key = UserKey::try_from(&[42; 32][..]).unwrap();
        let store = || common::stores::redis_store_on(&server.url(), ns).with_user_key(key.clone());
        let first = process(store());
        let (mut web, api) = alice(&first).await;
        let mut conn = common::stores::redis_conn(&server.url()).await;
        let keys: Vec<String> = conn.keys(format!("{ns}:*")).await.unwrap();
        assert!(!keys.contains(&format!("{ns}:salt")), "{keys:?}");
        // Another process with the same key accepts the tokens and logs alice out
        // everywhere.
        let second = process(store());
        assert!(second.tokens.authenticate(&api.access_token).await.is_ok());
        assert_eq!(second.layer.admin().revoke_all("alice").await.unwrap(), 2);
        assert!(alice_is_out(&second, &mut web, &api).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_evicted_user_key_is_never_silently_replaced() {
        let server = RedisServer::start();
        let ns = "evicted-key";
        let first = process(common::stores::redis_store_on(&server.url(), ns));
        let (mut web, api) = alice(&first).await;
        let mut conn = common::stores::redis_conn(&server.url()).await;
        // Memory pressure under allkeys-lru: fill Redis until the key is evicted.
        let used: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .unwrap();
        let used: u64 = used
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used + 2_000_000)
            .arg("maxmemory-policy")
            .arg("allkeys-lru")
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut filled = 0;
        while conn.exists::<_, bool>(format!("{ns}:salt")).await.unwrap() {
            assert!(filled < 50_000, "the key was never evicted");
            let mut pipe = redis::pipe();
            for i in filled..filled + 200 {
                pipe.set(format!("junk:{i}"), "x".repeat(1024)).ignore();
            }
            let _: () = pipe.query_async(&mut conn).await.unwrap();
            filled += 200;
        }
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();

        // A new process logs alice out everywhere: either it refuses (some of her data
        // survived) or every session and token of hers is gone. Never a silent 0 while
        // she is still signed in.
        let second = process(common::stores::redis_store_on(&server.url(), ns));
        match second.layer.admin().revoke_all("alice").await {
            Err(e) => {
                assert!(is_key_lost(&e), "{e:?}");
                assert!(!conn.exists::<_, bool>(format!("{ns}:salt")).await.unwrap());
            }
            Ok(n) => {
                eprintln!("revoke_all after eviction: {n} sessions ended");
                assert!(alice_is_out(&first, &mut web, &api).await);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_tokens_never_reach_redis() {
        let server = RedisServer::start();
        let store = common::stores::redis_store_on(&server.url(), "hostile");
        let t = Tokens::new(store, TokenConfig::default()).unwrap();
        let p = t.issue("alice").await.unwrap(); // reads the salt once
        let flip = |token: &str| {
            let mut b = token.as_bytes().to_vec();
            let i = b.len() - 5;
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        };
        let (a, r) = (&p.access_token, &p.refresh_token);
        let wrong_tag = |token: &str| format!("{}BBBBBBBBBBBBBBBB{}", &token[..3], &token[19..]);
        let before = server.command_calls();
        for bad in [
            String::new(),
            "garbage".into(),
            flip(a),
            flip(r),
            wrong_tag(a),
            wrong_tag(r),
            "x".repeat(10_000),
        ] {
            assert!(matches!(
                t.authenticate(&bad).await,
                Err(TokenError::InvalidToken)
            ));
            assert!(matches!(
                t.refresh(&bad).await,
                Err(TokenError::InvalidGrant)
            ));
            t.revoke(&bad).await.unwrap();
        }
        assert!(
            t.authenticate(r).await.is_err(),
            "a refresh token is no access token"
        );
        assert!(t.refresh(a).await.is_err(), "and the other way round");
        let delta = RedisServer::delta(&before, &server.command_calls());
        assert!(delta.is_empty(), "hostile tokens reached Redis: {delta:?}");
        assert!(t.authenticate(a).await.is_ok());
    }

    /// The bytes of a hash's fields and values.
    async fn hash_size(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> (usize, usize) {
        let h: Vec<(String, String)> = conn.hgetall(key).await.unwrap();
        (h.len(), h.iter().map(|(f, v)| f.len() + v.len()).sum())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_family_record_does_not_grow_with_its_refreshes() {
        let server = RedisServer::start();
        let store = common::stores::redis_store_on(&server.url(), "chain");
        let t = Tokens::new(
            store,
            TokenConfig::default().with_reuse_grace(Duration::ZERO),
        )
        .unwrap();
        let mut conn = common::stores::redis_conn(&server.url()).await;
        let first = t.issue("alice").await.unwrap();
        let mut p = first.clone();
        let mut sizes = Vec::new();
        for n in 1..=400 {
            p = t.refresh(&p.refresh_token).await.unwrap();
            if n == 20 || n == 400 {
                let keys: Vec<String> = conn.keys("chain:*:t:*").await.unwrap();
                assert_eq!(keys.len(), 1, "{keys:?}");
                sizes.push(hash_size(&mut conn, &keys[0]).await);
                let access: Vec<String> = conn.keys("chain:*:a:*").await.unwrap();
                assert_eq!(access.len(), 8, "live access tokens after {n} refreshes");
            }
        }
        assert_eq!(
            sizes[0], sizes[1],
            "family record (fields, bytes) after 20 and 400"
        );
        // Consumed tokens are tombstones of their own that expire by themselves.
        let tombstones: Vec<String> = conn.keys("chain:*:r:*").await.unwrap();
        assert_eq!(tombstones.len(), 401);
        for k in &tombstones {
            let ttl: i64 = conn.pttl(k).await.unwrap();
            assert!(ttl > 0, "{k} has no TTL");
        }
        assert!(matches!(
            t.refresh(&first.refresh_token).await,
            Err(TokenError::Reused { .. })
        ));
        assert!(t.authenticate(&p.access_token).await.is_err());
        let left: Vec<String> = conn.keys("chain:*:[at]:*").await.unwrap();
        assert!(
            left.is_empty(),
            "the family and its tokens are gone: {left:?}"
        );
    }

    /// Eviction (or a hand) removes a family's record while its tokens live on: they
    /// are refused, never accepted without the record revocation needs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_without_their_family_record_fail_closed() {
        let server = RedisServer::shared();
        let store = common::stores::redis_store_on(&server.url(), "famgone");
        let t = Tokens::new(store, TokenConfig::default()).unwrap();
        let mut conn = common::stores::redis_conn(&server.url()).await;
        for refresh_first in [false, true] {
            let p = t.issue("alice").await.unwrap();
            assert!(t.authenticate(&p.access_token).await.is_ok());
            let families: Vec<String> = conn.keys("famgone:*:t:*").await.unwrap();
            assert!(!families.is_empty());
            let _: () = conn.del(&families).await.unwrap();
            if refresh_first {
                assert!(matches!(
                    t.refresh(&p.refresh_token).await,
                    Err(TokenError::InvalidGrant)
                ));
            }
            assert!(
                matches!(
                    t.authenticate(&p.access_token).await,
                    Err(TokenError::InvalidToken)
                ),
                "an access token whose family record is gone is refused"
            );
            assert!(matches!(
                t.refresh(&p.refresh_token).await,
                Err(TokenError::InvalidGrant)
            ));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_script_per_operation_and_key_ttls() {
        let server = RedisServer::start();
        let store = common::stores::redis_store_on(&server.url(), "budget");
        let config = TokenConfig::default()
            .with_access_ttl(Duration::from_secs(60))
            .with_refresh_ttl(Duration::from_secs(600))
            .with_family_lifetime(Duration::from_secs(900));
        let t = Tokens::new(store, config).unwrap();
        t.issue("warm-up").await.unwrap();
        let scripts = |before: std::collections::HashMap<String, u64>| {
            let d = RedisServer::delta(&before, &server.command_calls());
            d.get("evalsha").copied().unwrap_or(0)
        };
        let b = server.command_calls();
        let p = t.issue("alice").await.unwrap();
        assert_eq!(scripts(b), 1, "issue");
        let b = server.command_calls();
        t.authenticate(&p.access_token).await.unwrap();
        // The token and its family's record, checked together (fail closed).
        assert_eq!(scripts(b), 1, "authenticate");
        let b = server.command_calls();
        let p2 = t.refresh(&p.refresh_token).await.unwrap();
        assert_eq!(scripts(b), 1, "refresh");
        let b = server.command_calls();
        t.revoke(&p2.refresh_token).await.unwrap();
        assert_eq!(scripts(b), 1, "revoke");

        // TTLs in Redis follow the config, and the family key outlives none of its tokens
        // by more than needed.
        let p = t.issue("carol").await.unwrap();
        let mut conn = common::stores::redis_conn(&server.url()).await;
        let keys: Vec<String> = conn.keys("budget:*").await.unwrap();
        let mut seen = HashSet::new();
        for k in keys.iter().filter(|k| *k != "budget:salt") {
            let ttl: i64 = conn.pttl(k).await.unwrap();
            let kind = k
                .rsplit_once('}')
                .unwrap()
                .1
                .split(':')
                .nth(1)
                .unwrap()
                .to_owned();
            match kind.as_str() {
                "a" => assert!((55_000..=60_000).contains(&ttl), "{k} {ttl}"),
                "r" => assert!((595_000..=600_000).contains(&ttl), "{k} {ttl}"),
                "t" | "tf" => assert!((595_000..=600_000).contains(&ttl), "{k} {ttl}"),
                other => panic!("unexpected key kind {other}: {k}"),
            }
            seen.insert(kind);
        }
        for kind in ["a", "r", "t", "tf"] {
            assert!(seen.contains(kind), "{kind} missing from {keys:?}");
        }
        // Nothing in Redis reveals a token: keys and values hold only hashes.
        let dump = common::stores::dump(&mut conn, &keys).await;
        for token in [&p.access_token, &p.refresh_token] {
            let secret = token.rsplit_once('.').unwrap().1;
            assert!(!dump.contains(secret), "a token secret is in Redis");
        }
        assert!(
            keys.iter().all(|k| !k.contains("carol")),
            "user ids stay out of key names"
        );
    }
}

#[cfg(feature = "jwt")]
mod jwt {
    use super::*;
    use common::RedisServer;
    use tower_redis_session::tokens::JwtKeys;

    fn jwt_tokens(url: &str, ns: &str, config: TokenConfig) -> Tokens {
        let store = common::stores::redis_store_on(url, ns);
        Tokens::new(store, config).unwrap().with_jwt(
            JwtKeys::new(tower_redis_session::tokens::JwtKey::hs256(&[42; 32]).unwrap())
                .unwrap()
                .with_issuer("test"),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jwt_access_tokens_are_checked_then_looked_up() {
        let server = RedisServer::start();
        let t = jwt_tokens(&server.url(), "jwt", TokenConfig::default());
        let p = t.issue("alice").await.unwrap();
        assert_eq!(p.access_token.matches('.').count(), 2, "a JWT");
        let c = t.authenticate(&p.access_token).await.unwrap();
        assert_eq!(c.user_id.as_str(), "alice");

        // Forged: signed with another key, or altered, or alg=none. No Redis command.
        let other = Tokens::new(
            tower_redis_session::MemoryStore::new(),
            TokenConfig::default(),
        )
        .unwrap()
        .with_jwt(
            JwtKeys::new(tower_redis_session::tokens::JwtKey::hs256(&[7; 32]).unwrap())
                .unwrap()
                .with_issuer("test"),
        );
        let foreign = other.issue("alice").await.unwrap();
        let (h, rest) = p.access_token.split_once('.').unwrap();
        let (_, sig) = rest.rsplit_once('.').unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let admin = b64.encode(br#"{"sub":"admin","jti":"x","exp":9999999999,"iss":"test"}"#);
        let none = format!("{}.{admin}.", b64.encode(br#"{"alg":"none"}"#));
        let before = server.command_calls();
        for bad in [
            foreign.access_token.clone(),
            format!("{h}.{admin}.{sig}"),
            none,
            "a.b.c".to_owned(),
        ] {
            assert!(matches!(
                t.authenticate(&bad).await,
                Err(TokenError::InvalidToken)
            ));
        }
        assert!(RedisServer::delta(&before, &server.command_calls()).is_empty());

        // Revocation is immediate although the JWT itself is still valid.
        t.revoke(&p.access_token).await.unwrap();
        assert!(t.authenticate(&p.access_token).await.is_err());
        // Refresh gives a new JWT in the same family.
        let p2 = t.refresh(&p.refresh_token).await.unwrap();
        assert_eq!(
            t.authenticate(&p2.access_token).await.unwrap().family,
            p.family
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_jwt_is_refused_without_redis() {
        use base64::Engine as _;
        use tower_redis_session::tokens::jsonwebtoken;
        let server = RedisServer::start();
        let t = jwt_tokens(&server.url(), "jwt-exp", TokenConfig::default());
        let p = t.issue("alice").await.unwrap();
        // The same claims (a live jti), correctly signed, but expired 10 s ago.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = p.access_token.split('.').nth(1).unwrap();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        claims["exp"] = (now - 10).into();
        let expired = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&[42; 32]),
        )
        .unwrap();
        let before = server.command_calls();
        assert!(matches!(
            t.authenticate(&expired).await,
            Err(TokenError::InvalidToken)
        ));
        assert!(RedisServer::delta(&before, &server.command_calls()).is_empty());
        assert!(
            t.authenticate(&p.access_token).await.is_ok(),
            "the original is live"
        );
    }
}

/// `with_session_layer` refuses a layer on another store, even one with the same
/// namespace: the tokens would keep alive sessions in data the layer never reads. The
/// same store (a clone) or the same Redis built again from its URL is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_layer_on_another_store_is_refused() {
    use tower_redis_session::{MemoryStore, RedisStore};
    let memory = Tokens::new(MemoryStore::new(), TokenConfig::default()).unwrap();
    let other_memory = SessionLayer::new(MemoryStore::new(), SessionConfig::default()).unwrap();
    assert!(
        matches!(
            memory.with_session_layer(&other_memory),
            Err(tower_redis_session::ConfigError::StoreMismatch)
        ),
        "another memory store"
    );
    let ns = "another-store";
    let redis = common::stores::redis_store(ns);
    let tokens = Tokens::new(redis.clone(), TokenConfig::default()).unwrap();
    assert!(
        tokens.clone().with_session_layer(&other_memory).is_err(),
        "a memory layer for Redis tokens"
    );
    let other_db = RedisStore::from_url(&format!("{}/3", common::RedisServer::shared().url()))
        .unwrap()
        .with_namespace(ns)
        .unwrap();
    let other_db = SessionLayer::new(other_db, SessionConfig::default()).unwrap();
    assert!(
        tokens.clone().with_session_layer(&other_db).is_err(),
        "another database"
    );
    let same = SessionLayer::new(redis, SessionConfig::default()).unwrap();
    assert!(tokens.clone().with_session_layer(&same).is_ok());
    let again = RedisStore::from_url(&common::RedisServer::shared().url())
        .unwrap()
        .with_namespace(ns)
        .unwrap();
    let again = SessionLayer::new(again, SessionConfig::default()).unwrap();
    assert!(
        tokens.with_session_layer(&again).is_ok(),
        "the same Redis again"
    );
    let memory_store = MemoryStore::new();
    let shared = SessionLayer::new(memory_store.clone(), SessionConfig::default()).unwrap();
    let t = Tokens::new(memory_store, TokenConfig::default()).unwrap();
    assert!(
        t.with_session_layer(&shared).is_ok(),
        "the same memory store"
    );
}

/// A refused grant or request answers the RFC 6749 §5.2 body itself, `error` and
/// `error_description` (the error's own text, never a token), uncached: apps need not
/// rewrite it.
#[tokio::test]
async fn oauth_errors_answer_with_a_description() {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    for (e, code) in [
        (TokenError::InvalidGrant, "invalid_grant"),
        (TokenError::Raced, "invalid_grant"),
        (TokenError::InvalidRequest("grant_type"), "invalid_request"),
    ] {
        let description = e.to_string();
        let res = e.into_response();
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], code);
        assert_eq!(json["error_description"], description.as_str(), "{json}");
    }
}

/// As for a layer, a token hook serves every clone of its `Tokens`, taken before or
/// after `with_events` (e.g. the one `tokens.layer()` put in the router).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_hook_reaches_clones_taken_before_it() {
    use std::sync::{Arc, Mutex};
    use tower_redis_session::MemoryStore;
    use tower_redis_session::events::{EventKind, SessionEvent};
    let tokens = Tokens::new(MemoryStore::new(), TokenConfig::default()).unwrap();
    let earlier = tokens.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let tokens = tokens.with_events(move |e: &SessionEvent| sink.lock().unwrap().push(e.kind));
    earlier.issue("alice").await.unwrap();
    tokens.flush_events().await;
    assert_eq!(*seen.lock().unwrap(), [EventKind::TokenIssued]);
}
