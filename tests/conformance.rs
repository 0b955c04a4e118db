//! One behaviour suite, run against every store: `MemoryStore` and `RedisStore` on a
//! real `redis-server`. Same cases, same assertions.

#[macro_use]
mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::{get, post};
use common::{Client, TestStore};
use tower_redis_session::store::{Clock, Patch, WriteMode, WriteOutcome};
use tower_redis_session::{
    Expiry, Key, LimitPolicy, Session, SessionConfig, SessionError, SessionKey, SessionLayer,
};

macro_rules! all_cases {
    ($store:ident, $make:path) => {
        store_cases!($store, $make;
            create_is_nx, update_is_xx, rotate_moves_within_slot, patch_writes_only_its_fields,
            ttl_capped_at_deadline, expiry_really_evicts, delete_reports_existence,
            untouched_session_costs_nothing, empty_new_session_is_not_saved,
            insert_creates_secure_cookie, concurrent_writes_to_different_keys_all_persist,
            destroy_ends_both_sides, destroyed_while_in_flight_stays_destroyed,
            cycle_id_rotates_and_keeps_data, remember_me_survives_later_requests,
            refresh_only_below_threshold, ttl_never_passes_deadline,
            unknown_and_malformed_cookies_are_no_session, namespaces_are_isolated,
            bad_value_is_typed_error_and_kept, signed_cookies_reject_forgery,
            clear_and_remove, login_lists_devices_with_metadata, revoke_one_by_handle,
            revoke_other_sessions_keeps_current, logout_everywhere_with_requests_in_flight,
            limit_reject_under_concurrency, limit_evict_under_concurrency,
            limit_evicts_the_least_recently_active, rejected_login_keeps_the_session,
            user_tag_hides_the_user_id, user_namespaces_are_independent,
            users_api_without_a_request, invalid_user_ids_are_refused_and_lose_nothing,
            default_limit_is_100_evicting_the_oldest, listing_goes_in_pages,
            size_limit_holds_where_concurrent_writes_merge,
            login_as_another_user_starts_clean, login_as_the_same_user_keeps_data,
            login_restarts_the_lifetime, failed_login_never_resurrects,
            too_many_fields_lose_nothing, recent_authentication,
            expiry_at_a_fixed_time_and_cookie_mode_alone,
        );
    };
}

/// `RedisStore::from_pool` on the user's own `deadpool_redis::Pool`.
fn redis_user_pool(ns: &str) -> tower_redis_session::RedisStore {
    let url = common::RedisServer::shared().url();
    let mut cfg = deadpool_redis::Config::from_url(url);
    cfg.pool = Some(common::stores::user_pool_config());
    let pool = cfg
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    tower_redis_session::RedisStore::from_pool(pool)
        .with_namespace(ns)
        .unwrap()
}

all_cases!(memory_store, super::common::stores::memory_store);
all_cases!(redis_store, super::common::stores::redis_store);
all_cases!(redis_user_pool, super::redis_user_pool);
// With the local session cache (client tracking) in the loop.
#[cfg(feature = "local-cache")]
all_cases!(redis_cached, super::common::stores::cached_store);
all_cases!(redis_cluster, super::common::stores::cluster_store);
#[cfg(feature = "local-cache")]
all_cases!(cluster_cached, super::common::stores::cached_cluster_store);
all_cases!(sentinel, super::common::stores::sentinel_store);
// As a Redis user with only the documented ACL rules.
all_cases!(acl, super::common::stores::acl_store);
#[cfg(feature = "tls")]
all_cases!(tls, super::common::stores::tls_store);
#[cfg(feature = "tls")]
all_cases!(cluster_tls, super::common::stores::tls_cluster_store);

mod cases {
    use super::*;

    fn key() -> SessionKey {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).unwrap();
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let tag = b.encode(&secret[..12]);
        SessionKey::from_cookie_value(&format!("{tag}.{}", b.encode(secret))).unwrap()
    }

    /// Another key in the same slot as `k`.
    fn sibling(k: &SessionKey) -> SessionKey {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).unwrap();
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        SessionKey::from_cookie_value(&format!("{}.{}", k.tag(), b.encode(secret))).unwrap()
    }

    fn clock() -> Clock {
        Clock {
            now_ms: now(),
            default_idle_ms: 60_000,
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    fn set(fields: &[(&str, &str)]) -> Patch {
        let mut p = Patch::default();
        p.set_fields(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        p
    }

    async fn field<S: TestStore>(s: &S, k: &SessionKey, f: &str) -> Option<String> {
        s.load(k).await.unwrap()?.get(f).map(str::to_owned)
    }

    // ---- store semantics -------------------------------------------------------

    pub async fn create_is_nx<S: TestStore>(s: S) {
        let k = key();
        let first = s
            .write(&k, WriteMode::Create, &set(&[("d:a", "1")]), clock())
            .await
            .unwrap();
        assert!(matches!(first, WriteOutcome::Written { .. }));
        let again = s
            .write(&k, WriteMode::Create, &set(&[("d:a", "2")]), clock())
            .await
            .unwrap();
        assert_eq!(again, WriteOutcome::Collision);
        assert_eq!(field(&s, &k, "d:a").await.as_deref(), Some("1"));
    }

    pub async fn update_is_xx<S: TestStore>(s: S) {
        let k = key();
        let w = s
            .write(&k, WriteMode::Update, &set(&[("d:a", "1")]), clock())
            .await
            .unwrap();
        assert_eq!(w, WriteOutcome::Gone);
        assert!(s.load(&k).await.unwrap().is_none());
        assert_eq!(s.count().await, 0);
    }

    pub async fn rotate_moves_within_slot<S: TestStore>(s: S) {
        let old = key();
        let new = sibling(&old);
        s.write(&old, WriteMode::Create, &set(&[("d:a", "1")]), clock())
            .await
            .unwrap();
        let w = s
            .write(
                &new,
                WriteMode::Rotate { from: &old },
                &set(&[("d:b", "2")]),
                clock(),
            )
            .await
            .unwrap();
        assert!(matches!(w, WriteOutcome::Written { .. }));
        assert!(s.load(&old).await.unwrap().is_none());
        assert_eq!(field(&s, &new, "d:a").await.as_deref(), Some("1"));
        assert_eq!(field(&s, &new, "d:b").await.as_deref(), Some("2"));
        // From a key that no longer exists: gone, nothing created.
        let third = sibling(&old);
        let w = s
            .write(
                &third,
                WriteMode::Rotate { from: &old },
                &Patch::default(),
                clock(),
            )
            .await
            .unwrap();
        assert_eq!(w, WriteOutcome::Gone);
        assert!(s.load(&third).await.unwrap().is_none());
        // Onto an existing key: collision, both untouched.
        s.write(&third, WriteMode::Create, &set(&[("d:c", "3")]), clock())
            .await
            .unwrap();
        let w = s
            .write(
                &third,
                WriteMode::Rotate { from: &new },
                &Patch::default(),
                clock(),
            )
            .await
            .unwrap();
        assert_eq!(w, WriteOutcome::Collision);
        assert_eq!(field(&s, &new, "d:a").await.as_deref(), Some("1"));
        assert_eq!(field(&s, &third, "d:c").await.as_deref(), Some("3"));
    }

    pub async fn patch_writes_only_its_fields<S: TestStore>(s: S) {
        let k = key();
        s.write(
            &k,
            WriteMode::Create,
            &set(&[("d:a", "1"), ("d:b", "1")]),
            clock(),
        )
        .await
        .unwrap();
        // Two writers, each with its own field.
        s.write(&k, WriteMode::Update, &set(&[("d:a", "2")]), clock())
            .await
            .unwrap();
        s.write(&k, WriteMode::Update, &set(&[("d:b", "3")]), clock())
            .await
            .unwrap();
        assert_eq!(field(&s, &k, "d:a").await.as_deref(), Some("2"));
        assert_eq!(field(&s, &k, "d:b").await.as_deref(), Some("3"));
        // Delete one field; clear all data fields but keep metadata.
        let mut p = Patch::default();
        p.delete_fields(["d:a".to_owned()]);
        s.write(&k, WriteMode::Update, &p, clock()).await.unwrap();
        assert_eq!(field(&s, &k, "d:a").await, None);
        let mut p = set(&[("d:z", "9"), ("m:app", "keep")]);
        s.write(&k, WriteMode::Update, &p, clock()).await.unwrap();
        p = set(&[("d:new", "1")]);
        p.clear_all_data();
        s.write(&k, WriteMode::Update, &p, clock()).await.unwrap();
        let fields = s.load(&k).await.unwrap().unwrap().unpacked();
        assert_eq!(fields.get("d:new").map(String::as_str), Some("1"));
        assert!(!fields.contains_key("d:b") && !fields.contains_key("d:z"));
        assert_eq!(fields.get("m:app").map(String::as_str), Some("keep"));
        assert!(fields.contains_key("m:e") && fields.contains_key("m:s"));
    }

    pub async fn ttl_capped_at_deadline<S: TestStore>(s: S) {
        let k = key();
        let c = clock();
        let deadline = (c.now_ms + 5_000).to_string();
        let w = s
            .write(&k, WriteMode::Create, &set(&[("m:d", &deadline)]), c)
            .await
            .unwrap();
        let WriteOutcome::Written { ttl, .. } = w else {
            panic!("not written")
        };
        assert_eq!(ttl, Duration::from_millis(5_000));
        let pttl = s.pttl(&k).await.unwrap();
        assert!(pttl <= 5_000 && pttl > 4_000, "{pttl}");
        // An idle override shorter than the deadline wins.
        let w = s
            .write(&k, WriteMode::Update, &set(&[("m:i", "2000")]), c)
            .await
            .unwrap();
        assert_eq!(
            w,
            WriteOutcome::Written {
                ttl: Duration::from_millis(2_000),
                evicted: vec![],
            }
        );
        // A deadline in the past deletes the session.
        let past = (c.now_ms - 1).to_string();
        let w = s
            .write(&k, WriteMode::Update, &set(&[("m:d", &past)]), c)
            .await
            .unwrap();
        assert_eq!(w, WriteOutcome::Gone);
        assert!(s.load(&k).await.unwrap().is_none());
    }

    pub async fn expiry_really_evicts<S: TestStore>(s: S) {
        let k = key();
        let c = Clock {
            default_idle_ms: 150,
            ..clock()
        };
        s.write(&k, WriteMode::Create, &set(&[("d:a", "1")]), c)
            .await
            .unwrap();
        assert_eq!(s.count().await, 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(s.load(&k).await.unwrap().is_none());
        assert_eq!(s.count().await, 0);
        let w = s
            .write(&k, WriteMode::Update, &set(&[("d:a", "2")]), clock())
            .await
            .unwrap();
        assert_eq!(w, WriteOutcome::Gone);
    }

    pub async fn delete_reports_existence<S: TestStore>(s: S) {
        let k = key();
        assert!(s.delete(&k).await.unwrap().is_none());
        s.write(&k, WriteMode::Create, &set(&[("d:a", "1")]), clock())
            .await
            .unwrap();
        assert!(s.delete(&k).await.unwrap().is_some());
        assert!(s.load(&k).await.unwrap().is_none());
    }

    // ---- the layer -------------------------------------------------------------

    fn config() -> SessionConfig {
        SessionConfig::default()
    }

    /// Holds `/gated_set` requests between their load and their write, so that a
    /// test can act while they are in flight.
    #[derive(Clone)]
    struct Gate {
        loaded: Arc<tokio::sync::Semaphore>,
        release: Arc<tokio::sync::Semaphore>,
    }

    impl Gate {
        fn new() -> Self {
            Self {
                loaded: Arc::new(tokio::sync::Semaphore::new(0)),
                release: Arc::new(tokio::sync::Semaphore::new(0)),
            }
        }

        /// Waits until `n` requests have loaded their session and are held.
        async fn loaded(&self, n: u32) {
            tokio::time::timeout(Duration::from_secs(10), self.loaded.acquire_many(n))
                .await
                .expect("the gated requests arrive")
                .unwrap()
                .forget();
        }

        /// Lets `n` held requests write.
        fn release(&self, n: usize) {
            self.release.add_permits(n);
        }

        /// Called by the handler between its load and its write.
        async fn hold(&self) {
            self.loaded.add_permits(1);
            self.release.acquire().await.unwrap().forget();
        }
    }

    fn app_with<S: TestStore>(s: S, config: SessionConfig) -> Router {
        gated_app(s, config).0
    }

    /// The test app and the gate of its `/gated_set` route.
    fn gated_app<S: TestStore>(s: S, config: SessionConfig) -> (Router, Gate) {
        let gate = Gate::new();
        let held = gate.clone();
        let extra = Router::new()
            .route(
                "/gated_set",
                post(
                    move |session: Session, Query(q): Query<routes::KeyValue>| async move {
                        session.get::<String>(&q.key).await?;
                        held.hold().await;
                        session.insert(&q.key, q.value).await?;
                        Ok::<_, SessionError>("ok")
                    },
                ),
            )
            .route(
                "/remember",
                post(|session: Session| async move {
                    session.insert("user", "u").await?;
                    session
                        .set_expiry(Expiry::remember_me(Duration::from_secs(30 * 86_400)))
                        .await?;
                    Ok::<_, SessionError>("ok")
                }),
            )
            .route(
                "/until",
                post(
                    |session: Session, Query(q): Query<routes::KeyParam>| async move {
                        let secs: u64 = q.key.parse().unwrap();
                        let end = std::time::SystemTime::now() + Duration::from_secs(secs);
                        session.insert("until", secs).await?;
                        session.set_expiry(Expiry::at(end)).await?;
                        Ok::<_, SessionError>("ok")
                    },
                ),
            )
            .route(
                "/until-login",
                post(|session: Session| async move {
                    let end = std::time::SystemTime::now() + Duration::from_secs(7200);
                    session.set_expiry(Expiry::at(end)).await?;
                    session.login("ulla").await?;
                    Ok::<_, SessionError>("ok")
                }),
            )
            .route(
                "/persist",
                post(|session: Session| async move {
                    let e = Expiry::default().with_persistent_cookie(true);
                    session.set_expiry(e).await?;
                    Ok::<_, SessionError>("ok")
                }),
            )
            .route(
                "/times",
                get(|session: Session| async move {
                    let secs = |t: Option<std::time::SystemTime>| {
                        t.map_or(-1, |t| {
                            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
                        })
                    };
                    let created = secs(session.created_at().await?);
                    let expires = secs(session.expires_at().await?);
                    let persistent = session.is_persistent().await?;
                    Ok::<_, SessionError>(format!("{created} {expires} {persistent}"))
                }),
            )
            .route(
                "/clear",
                post(|session: Session| async move {
                    session.clear().await?;
                    Ok::<_, SessionError>("ok")
                }),
            )
            .route(
                "/remove",
                post(
                    |session: Session, Query(q): Query<routes::KeyParam>| async move {
                        let old: Option<String> = session.remove(&q.key).await?;
                        Ok::<_, SessionError>(old.unwrap_or_default())
                    },
                ),
            )
            .route(
                "/empty",
                get(|session: Session| async move {
                    Ok::<_, SessionError>(session.is_empty().await?.to_string())
                }),
            );
        let per_user = Router::new().route(
            "/sessions",
            get(|session: Session| async move {
                let list = session.user_sessions().await?;
                Ok::<_, SessionError>(
                    list.iter()
                        .map(|s| {
                            format!(
                                "{}|{}|{}|{}\n",
                                s.handle,
                                s.ip.as_deref().unwrap_or("-"),
                                s.user_agent.as_deref().unwrap_or("-"),
                                s.current
                            )
                        })
                        .collect::<String>(),
                )
            }),
        );
        let app = routes::routes()
            .merge(extra)
            .merge(per_user)
            .merge(common::session_routes::per_user())
            .layer(SessionLayer::new(s, config).unwrap());
        (app, gate)
    }

    /// Lines of `/sessions`: (handle, ip, user agent, current).
    fn sessions(body: &str) -> Vec<(String, String, String, bool)> {
        body.lines()
            .map(|l| {
                let p: Vec<_> = l.split('|').collect();
                (p[0].into(), p[1].into(), p[2].into(), p[3] == "true")
            })
            .collect()
    }

    fn users_of<S: TestStore>(s: S, config: SessionConfig) -> tower_redis_session::SessionAdmin {
        SessionLayer::new(s, config).unwrap().admin()
    }

    fn app<S: TestStore>(s: S) -> Router {
        app_with(s, config())
    }

    fn skey(c: &Client) -> SessionKey {
        SessionKey::from_cookie_value(c.cookie.as_deref().expect("a session cookie")).unwrap()
    }

    pub async fn untouched_session_costs_nothing<S: TestStore>(s: S) {
        let mut c = Client::new(app(s.clone()));
        let r = c.get("/plain").await;
        assert_eq!(r.body, "ok");
        assert!(r.set_cookie.is_none());
        // With a cookie, a route that ignores the session neither loads nor rewrites it.
        c.post("/incr").await;
        let r = c.get("/plain").await;
        assert!(r.set_cookie.is_none());
        assert!(r.headers.get("cache-control").is_none());
    }

    pub async fn empty_new_session_is_not_saved<S: TestStore>(s: S) {
        let mut c = Client::new(app(s.clone()));
        let r = c.get("/read").await;
        assert_eq!(r.status, 401);
        assert!(r.set_cookie.is_none());
        assert_eq!(s.count().await, 0);
    }

    pub async fn insert_creates_secure_cookie<S: TestStore>(s: S) {
        let mut c = Client::new(app(s.clone()));
        let r = c.post("/incr").await;
        assert_eq!(r.body, "1");
        let sc = r.set_cookie.expect("cookie");
        for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(sc.raw.contains(attr), "{attr} missing: {}", sc.raw);
        }
        assert_eq!(sc.max_age(), None, "browser-session cookie by default");
        assert_eq!(r.headers["cache-control"], "no-store");
        assert_eq!(s.count().await, 1);
        let r = c.post("/incr").await;
        assert_eq!(r.body, "2");
        assert!(r.set_cookie.is_none(), "same id, no need to resend");
        assert_eq!(s.count().await, 1);
    }

    pub async fn concurrent_writes_to_different_keys_all_persist<S: TestStore>(s: S) {
        let (app, gate) = gated_app(s.clone(), config());
        let mut c = Client::new(app);
        c.post("/login?user=alice").await;
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let mut c = c.clone();
                tokio::spawn(async move {
                    let r = c.post(&format!("/set?key=k{i}&value=v{i}")).await;
                    assert_eq!(r.status, 200);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        for i in 0..20 {
            assert_eq!(c.get(&format!("/get?key=k{i}")).await.body, format!("v{i}"));
        }
        assert_eq!(c.get("/read").await.body, "alice");
        // An interleaving every store must survive, not only one with real
        // concurrency: the slow request loads the session before the fast one writes,
        // and writes after it. A whole-record write would drop `early`.
        let mut slow = c.clone();
        let late = tokio::spawn(async move { slow.post("/gated_set?key=late&value=l").await });
        gate.loaded(1).await;
        assert_eq!(c.post("/set?key=early&value=e").await.status, 200);
        gate.release(1);
        assert_eq!(late.await.unwrap().status, 200);
        assert_eq!(
            c.get("/get?key=early").await.body,
            "e",
            "the earlier write survives"
        );
        assert_eq!(c.get("/get?key=late").await.body, "l");
    }

    pub async fn destroy_ends_both_sides<S: TestStore>(s: S) {
        let mut c = Client::new(app(s.clone()));
        c.post("/incr").await;
        let old = c.cookie.clone();
        let r = c.post("/logout").await;
        let sc = r.set_cookie.expect("removal cookie");
        assert!(sc.is_removal());
        assert!(sc.raw.contains("Path=/") && sc.raw.contains("Secure"));
        assert_eq!(
            r.headers.get("cache-control").map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "a response that removes the cookie is not cached"
        );
        assert_eq!(s.count().await, 0);
        // Replaying the old cookie: no session, and the cookie is removed again.
        c.cookie = old;
        let r = c.get("/get?key=counter").await;
        assert_eq!(r.status, 404);
        assert!(r.set_cookie.expect("removal").is_removal());
    }

    pub async fn destroyed_while_in_flight_stays_destroyed<S: TestStore>(s: S) {
        let (app, gate) = gated_app(s.clone(), config());
        let mut c = Client::new(app);
        c.post("/login?user=alice").await;
        let old = c.cookie.clone();
        let mut slow = c.clone();
        let in_flight = tokio::spawn(async move { slow.post("/gated_set?key=cart&value=x").await });
        gate.loaded(1).await;
        c.post("/logout").await;
        gate.release(1);
        let r = in_flight.await.unwrap();
        assert!(
            r.set_cookie.as_ref().is_some_and(|c| c.is_removal()),
            "the late write must answer with a removal cookie: {r:?}"
        );
        assert_eq!(s.count().await, 0, "the destroyed session came back");
        c.cookie = old;
        assert_eq!(c.get("/read").await.status, 401);
    }

    pub async fn cycle_id_rotates_and_keeps_data<S: TestStore>(s: S) {
        let mut c = Client::new(app(s.clone()));
        c.post("/set?key=cart&value=book").await;
        let planted = c.cookie.clone().unwrap();
        let handle = c.get("/handle").await.body;
        let r = c.post("/login?user=alice").await;
        let rotated = r.set_cookie.expect("new cookie").value;
        assert_ne!(rotated, planted);
        assert_eq!(c.get("/get?key=cart").await.body, "book");
        assert_eq!(c.get("/read").await.body, "alice");
        assert_eq!(
            c.get("/handle").await.body,
            handle,
            "handle survives rotation"
        );
        assert_eq!(s.count().await, 1);
        // The id planted before login is useless after.
        let mut attacker = Client::new(c.app.clone());
        attacker.cookie = Some(planted);
        assert_eq!(attacker.get("/read").await.status, 401);
    }

    pub async fn remember_me_survives_later_requests<S: TestStore>(s: S) {
        let mut c = Client::new(app(s.clone()));
        let r = c.post("/remember").await;
        let month = 30 * 86_400;
        let age = r.set_cookie.expect("cookie").max_age().expect("persistent");
        assert!(age > month - 5 && age <= month, "{age}");
        let pttl = s.pttl(&skey(&c)).await.unwrap();
        assert!(pttl > (month as i64 - 5) * 1000, "{pttl}");
        // A later write resets the TTL and re-sends the persistent cookie.
        let r = c.post("/incr").await;
        let age = r
            .set_cookie
            .expect("re-sent")
            .max_age()
            .expect("still persistent");
        assert!(age > month - 5, "{age}");
        assert!(s.pttl(&skey(&c)).await.unwrap() > (month as i64 - 5) * 1000);
    }

    /// tower-sessions' `Expiry::AtDateTime` (a fixed end, whatever the activity) and a
    /// switch of the cookie mode alone, and the getters that show them.
    pub async fn expiry_at_a_fixed_time_and_cookie_mode_alone<S: TestStore>(s: S) {
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
        };
        // Idle 10 min, browser-session cookie: the configuration a switch must keep.
        let config = config().with_idle_timeout(Duration::from_secs(600));
        let mut c = Client::new(app_with(s.clone(), config.clone()));
        assert_eq!(c.get("/times").await.body, "-1 -1 false", "no session yet");
        c.post("/set?key=k&value=v").await;
        let t = c.get("/times").await.body;
        let t: Vec<&str> = t.split(' ').collect();
        let (created, expires) = (t[0].parse::<i64>().unwrap(), t[1].parse::<i64>().unwrap());
        assert!((created - now()).abs() <= 2, "{t:?}");
        assert!((expires - now() - 600).abs() <= 2, "idle 10 min: {t:?}");
        assert_eq!(t[2], "false");
        // The cookie mode alone: persistent now, the idle timeout still 10 min.
        let r = c.post("/persist").await;
        let age = r.set_cookie.expect("cookie").max_age().expect("persistent");
        assert!(age > 595 && age <= 600, "{age}");
        assert!(s.pttl(&skey(&c)).await.unwrap() <= 600_000);
        assert!(c.get("/times").await.body.ends_with(" true"));
        let r = c.post("/incr").await;
        let age = r
            .set_cookie
            .expect("re-sent")
            .max_age()
            .expect("stays persistent");
        assert!(age > 595 && age <= 600, "{age}");

        // A fixed end 2 hours away, beyond the 10 min idle timeout: the session lives
        // until then, idle or not, and a later write does not move it.
        let mut c = Client::new(app_with(s.clone(), config.clone()));
        let r = c.post("/until?key=7200").await;
        let age = r.set_cookie.expect("cookie").max_age().expect("persistent");
        assert!(age > 7195 && age <= 7200, "{age}");
        let pttl = s.pttl(&skey(&c)).await.unwrap();
        assert!(pttl > 7_195_000 && pttl <= 7_200_000, "{pttl}");
        let r = c.post("/incr").await;
        let age = r.set_cookie.map(|sc| sc.max_age().expect("persistent"));
        assert!(age.is_none_or(|a| a <= 7200), "{age:?}");
        assert!(s.pttl(&skey(&c)).await.unwrap() <= 7_200_000);
        let t = c.get("/times").await.body;
        let expires: i64 = t.split(' ').nth(1).unwrap().parse().unwrap();
        assert!((expires - now() - 7200).abs() <= 2, "{t}");
        // The same end set on an existing session, and one set just before a login.
        let mut c = Client::new(app_with(s.clone(), config.clone()));
        c.post("/set?key=k&value=v").await;
        c.post("/until?key=3600").await;
        let pttl = s.pttl(&skey(&c)).await.unwrap();
        assert!(pttl > 3_595_000 && pttl <= 3_600_000, "{pttl}");
        let mut c = Client::new(app_with(s.clone(), config));
        c.post("/until-login").await;
        let pttl = s.pttl(&skey(&c)).await.unwrap();
        assert!(pttl > 7_195_000 && pttl <= 7_200_000, "{pttl}");
    }

    pub async fn refresh_only_below_threshold<S: TestStore>(s: S) {
        let config = config()
            .with_idle_timeout(Duration::from_millis(2500))
            .with_refresh_threshold(Duration::from_millis(1000))
            .with_persistent_cookie(true);
        let mut c = Client::new(app_with(s.clone(), config));
        c.post("/set?key=k&value=v").await;
        let k = skey(&c);
        tokio::time::sleep(Duration::from_millis(200)).await;
        // ~2300 ms left: above the threshold (by 1.3 s, room for a loaded TLS cluster),
        // the read writes nothing.
        let before = s.pttl(&k).await.unwrap();
        let r = c.get("/plain").await;
        assert!(r.set_cookie.is_none());
        let r = c.get("/get?key=k").await;
        assert_eq!(r.body, "v");
        assert!(r.set_cookie.is_none(), "no refresh above the threshold");
        let after = s.pttl(&k).await.unwrap();
        assert!(after <= before, "TTL was extended: {before} -> {after}");
        tokio::time::sleep(Duration::from_millis(1400)).await;
        // At most ~900 ms left: below the threshold, the read refreshes once.
        let r = c.get("/get?key=k").await;
        let age = r.set_cookie.expect("persistent cookie re-sent").max_age();
        assert_eq!(age, Some(3), "Max-Age rounds 2500 ms up");
        let refreshed = s.pttl(&k).await.unwrap();
        assert!(refreshed > 2300, "not refreshed: {refreshed}");
        // Right after a refresh the next read is above the threshold again.
        let r = c.get("/get?key=k").await;
        assert!(r.set_cookie.is_none());
    }

    pub async fn ttl_never_passes_deadline<S: TestStore>(s: S) {
        let config = config()
            .with_idle_timeout(Duration::from_secs(10))
            .with_refresh_threshold(Duration::from_secs(10))
            .with_absolute_lifetime(Some(Duration::from_secs(1)));
        let mut c = Client::new(app_with(s.clone(), config));
        c.post("/incr").await;
        let k = skey(&c);
        let start = std::time::Instant::now();
        assert!(s.pttl(&k).await.unwrap() <= 1000);
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.post("/incr").await; // a write resets the TTL: capped at the deadline
            c.get("/read").await; // a read under the threshold would refresh: capped too
            let left = 1000 - start.elapsed().as_millis() as i64;
            let pttl = s.pttl(&k).await.unwrap();
            assert!(
                pttl <= left + 50,
                "TTL {pttl} ms passes the deadline ({left} ms left)"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(c.get("/get?key=counter").await.status, 404);
        assert_eq!(s.count().await, 0);
    }

    pub async fn unknown_and_malformed_cookies_are_no_session<S: TestStore>(s: S) {
        let app = app(s.clone());
        let unknown = {
            let mut c = Client::new(app.clone());
            c.post("/incr").await;
            let v = c.cookie.clone().unwrap();
            // Same format, other secret.
            format!("{}{}", &v[..20], if &v[20..21] == "A" { "B" } else { "A" }) + &v[21..]
        };
        for value in [
            unknown.as_str(),
            "",
            "garbage",
            "*",
            "a.b",
            &"A".repeat(5000),
        ] {
            let mut c = Client::new(app.clone());
            c.cookie = Some(value.to_owned());
            let r = c.get("/get?key=counter").await;
            assert_eq!(r.status, 404, "{value:?}");
            assert!(r.set_cookie.expect("removal").is_removal());
            c.cookie = Some(value.to_owned());
            let r = c.get("/plain").await;
            assert!(r.set_cookie.is_none(), "untouched: no Set-Cookie");
            // Writing with a bad cookie creates a fresh session, never reuses the value.
            c.cookie = Some(value.to_owned());
            let r = c.post("/incr").await;
            assert_eq!(r.body, "1");
            assert_ne!(r.set_cookie.unwrap().value, value);
        }
    }

    pub async fn namespaces_are_isolated<S: TestStore>(s: S) {
        let admin = s.in_namespace(&format!("{}-admin", s.namespace()));
        let mut user = Client::new(app(s.clone()));
        user.post("/login?user=alice").await;
        // A valid user cookie presented to the admin layer (same storage) is unknown.
        let mut intruder = Client::new(app(admin.clone()));
        intruder.cookie = user.cookie.clone();
        assert_eq!(intruder.get("/read").await.status, 401);
        assert_eq!(admin.count().await, 0);
        assert_eq!(user.get("/read").await.body, "alice");
    }

    pub async fn bad_value_is_typed_error_and_kept<S: TestStore>(s: S) {
        let mut c = Client::new(app(s.clone()));
        c.post("/set?key=counter&value=abc").await;
        let r = c.post("/incr").await;
        assert_eq!(r.status, 500, "a string is not a u64");
        assert!(r.set_cookie.is_none());
        assert_eq!(c.get("/get?key=counter").await.body, "abc", "value kept");
    }

    pub async fn signed_cookies_reject_forgery<S: TestStore>(s: S) {
        let key = Key::generate();
        let layer = SessionLayer::new(s.clone(), config())
            .unwrap()
            .with_signed(key);
        let app = routes::routes().layer(layer);
        let mut c = Client::new(app.clone());
        c.post("/login?user=alice").await;
        assert_eq!(c.get("/read").await.body, "alice");
        let signed = c.cookie.clone().unwrap();
        // The unsigned inner value and a tampered signature are both refused.
        let inner = &signed[signed.len() - 60..];
        // Change the first character of the signature to a different one.
        let other = if signed.starts_with('A') { 'B' } else { 'A' };
        let tampered = format!("{other}{}", &signed[1..]);
        assert_ne!(tampered, signed);
        for forged in [inner.to_owned(), tampered] {
            let mut f = Client::new(app.clone());
            f.cookie = Some(forged);
            assert_eq!(f.get("/read").await.status, 401);
        }
    }

    pub async fn clear_and_remove<S: TestStore>(s: S) {
        let mut c = Client::new(app(s.clone()));
        assert_eq!(c.get("/empty").await.body, "true");
        c.post("/set?key=a&value=1").await;
        assert_eq!(c.get("/empty").await.body, "false");
        c.post("/set?key=b&value=2").await;
        assert_eq!(c.post("/remove?key=a").await.body, "1");
        assert_eq!(c.get("/get?key=a").await.status, 404);
        assert_eq!(c.get("/get?key=b").await.body, "2");
        c.post("/clear").await;
        assert_eq!(c.get("/get?key=b").await.status, 404);
        assert_eq!(c.get("/empty").await.body, "true");
        assert_eq!(s.count().await, 1, "clear keeps the session");
    }

    // ---- per-user sessions -------------------------------------------------------

    fn ip_config() -> SessionConfig {
        config().with_client_ip_header(axum::http::HeaderName::from_static("x-forwarded-for"))
    }

    async fn login_as(app: &Router, user: &str, ua: &str, xff: &str) -> Client {
        let mut c = Client::new(app.clone());
        c.headers = vec![
            ("user-agent", ua.to_owned()),
            ("x-forwarded-for", xff.to_owned()),
        ];
        let r = c.post(&format!("/login?user={user}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        c
    }

    pub async fn login_lists_devices_with_metadata<S: TestStore>(s: S) {
        let app = app_with(s.clone(), ip_config());
        // A browser's user agent, and one longer than the 256 bytes kept: Redis stores
        // them in pieces of 64 bytes, listed whole.
        let laptop_ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                         Chrome/131.0.0.0 Safari/537.36";
        let phone_ua = format!("phone/{}", "0123456789".repeat(30));
        let mut laptop = login_as(&app, "alice", laptop_ua, "10.0.0.1").await;
        let mut phone = login_as(&app, "alice", &phone_ua, "203.0.113.9, 10.0.0.2").await;
        login_as(&app, "bob", "other", "10.0.0.3").await;
        let list = sessions(&laptop.get("/sessions").await.body);
        assert_eq!(list.len(), 2, "{list:?}");
        let me = list.iter().find(|s| s.3).expect("current marked");
        assert_eq!((me.1.as_str(), me.2.as_str()), ("10.0.0.1", laptop_ua));
        let other = list.iter().find(|s| !s.3).unwrap();
        assert_eq!(
            other.1, "10.0.0.2",
            "right-most entry of the trusted header"
        );
        assert_eq!(other.2, phone_ua[..256]);
        let from_phone = sessions(&phone.get("/sessions").await.body);
        assert_eq!(from_phone.iter().filter(|s| s.3).count(), 1);
        assert_eq!(phone.get("/read").await.body, "alice");
        // Anonymous sessions have no user sessions to list.
        let mut anon = Client::new(app.clone());
        anon.post("/incr").await;
        assert_eq!(anon.get("/sessions").await.body, "");
    }

    pub async fn revoke_one_by_handle<S: TestStore>(s: S) {
        let app = app_with(s.clone(), ip_config());
        let mut laptop = login_as(&app, "alice", "laptop", "10.0.0.1").await;
        let mut phone = login_as(&app, "alice", "phone", "10.0.0.2").await;
        let list = sessions(&laptop.get("/sessions").await.body);
        let phone_handle = &list.iter().find(|s| !s.3).unwrap().0;
        let r = laptop.post(&format!("/revoke?handle={phone_handle}")).await;
        assert_eq!(r.body, "true");
        let r = phone.get("/read").await;
        assert_eq!(r.status, 401);
        assert!(r.set_cookie.expect("removal").is_removal());
        assert_eq!(laptop.get("/read").await.body, "alice");
        let r = laptop.post(&format!("/revoke?handle={phone_handle}")).await;
        assert_eq!(r.body, "false", "revoking twice is harmless");
        // Revoking the current session ends it like a logout.
        let me = sessions(&laptop.get("/sessions").await.body)[0].0.clone();
        let r = laptop.post(&format!("/revoke?handle={me}")).await;
        assert!(r.set_cookie.expect("removal").is_removal());
        assert_eq!(s.count().await, 0);
    }

    pub async fn revoke_other_sessions_keeps_current<S: TestStore>(s: S) {
        let app = app_with(s.clone(), ip_config());
        let mut me = login_as(&app, "alice", "a", "10.0.0.1").await;
        let mut others = Vec::new();
        for i in 0..3 {
            others.push(login_as(&app, "alice", "b", &format!("10.0.1.{i}")).await);
        }
        assert_eq!(me.post("/revoke_others").await.body, "3");
        for o in &mut others {
            assert_eq!(o.get("/read").await.status, 401);
        }
        assert_eq!(me.get("/read").await.body, "alice");
        assert_eq!(sessions(&me.get("/sessions").await.body).len(), 1);
    }

    pub async fn logout_everywhere_with_requests_in_flight<S: TestStore>(s: S) {
        let (app, gate) = gated_app(s.clone(), ip_config());
        let mut devices = Vec::new();
        for i in 0..4 {
            devices.push(login_as(&app, "alice", "d", &format!("10.0.0.{i}")).await);
        }
        let bystander = login_as(&app, "bob", "d", "10.0.9.9").await;
        let in_flight: Vec<_> = devices[..3]
            .iter()
            .map(|d| {
                let mut d = d.clone();
                tokio::spawn(async move { d.post("/gated_set?key=cart&value=x").await })
            })
            .collect();
        gate.loaded(3).await;
        assert_eq!(devices[3].post("/everywhere").await.body, "4");
        gate.release(3);
        for t in in_flight {
            let r = t.await.unwrap();
            assert!(
                r.set_cookie.is_some_and(|c| c.is_removal()),
                "late write answered with a removal cookie"
            );
        }
        assert_eq!(
            s.count().await,
            1,
            "only bob's session is left: nothing came back"
        );
        for d in &mut devices {
            let r = d.get("/read").await;
            assert_eq!(r.status, 401, "next request is anonymous");
        }
        let mut bob = bystander;
        assert_eq!(bob.get("/read").await.body, "bob");
    }

    async fn concurrent_logins(app: &Router, user: &str, n: usize) -> Vec<(u16, Client)> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let app = app.clone();
                let user = user.to_owned();
                tokio::spawn(async move {
                    let mut c = Client::new(app);
                    c.headers = vec![("user-agent", format!("device-{i}"))];
                    let status = c.post(&format!("/login?user={user}")).await.status.as_u16();
                    (status, c)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    pub async fn limit_reject_under_concurrency<S: TestStore>(s: S) {
        let config = config().with_max_sessions_per_user(5, LimitPolicy::Reject);
        let app = app_with(s.clone(), config.clone());
        let results = concurrent_logins(&app, "bob", 20).await;
        let ok = results.iter().filter(|(st, _)| *st == 200).count();
        let conflict = results.iter().filter(|(st, _)| *st == 409).count();
        assert_eq!(
            (ok, conflict),
            (5, 15),
            "exactly 5 logins, 15 typed rejections"
        );
        assert_eq!(s.count().await, 5);
        assert_eq!(
            users_of(s.clone(), config).list("bob").await.unwrap().len(),
            5
        );
        for (status, mut c) in results {
            let expect = if status == 200 { 200 } else { 401 };
            assert_eq!(c.get("/read").await.status, expect);
        }
    }

    pub async fn limit_evict_under_concurrency<S: TestStore>(s: S) {
        let config = config().with_max_sessions_per_user(5, LimitPolicy::EvictOldest);
        let app = app_with(s.clone(), config.clone());
        let results = concurrent_logins(&app, "bob", 20).await;
        assert!(results.iter().all(|(st, _)| *st == 200));
        assert_eq!(s.count().await, 5, "exactly 5 live sessions");
        let mut live = 0;
        for (_, mut c) in results {
            let r = c.get("/read").await;
            if r.status == 200 {
                live += 1;
            } else {
                assert!(
                    r.set_cookie.expect("removal").is_removal(),
                    "evicted: removal cookie"
                );
            }
        }
        assert_eq!(live, 5);
        assert_eq!(
            users_of(s.clone(), config).list("bob").await.unwrap().len(),
            5
        );
    }

    pub async fn size_limit_holds_where_concurrent_writes_merge<S: TestStore>(s: S) {
        let (app, gate) = gated_app(s.clone(), config().with_max_session_size(1000));
        let mut c = Client::new(app.clone());
        c.post("/set?key=seed&value=x").await;
        let big = "v".repeat(600);
        // The slow request loads the session (seed only), then waits; the fast one
        // adds 600 bytes meanwhile. Each fits the session as it loaded it.
        let mut slow = c.clone();
        let slow_path = format!("/gated_set?key=late&value={big}");
        let slow = tokio::spawn(async move { slow.post(&slow_path).await });
        gate.loaded(1).await;
        let fast = c.post(&format!("/set?key=early&value={big}")).await;
        assert_eq!(fast.status, 200);
        gate.release(1);
        let late = slow.await.unwrap();
        assert_eq!(late.status, 413, "the merged session would pass the limit");
        assert!(late.set_cookie.is_none(), "the cookie is left alone");
        assert_eq!(c.get("/get?key=late").await.status, 404, "nothing written");
        assert_eq!(
            c.get("/get?key=early").await.body.len(),
            600,
            "the other write stands"
        );
        assert_eq!(c.get("/get?key=seed").await.body, "x");
        // Within the limit the merge goes through as before.
        assert_eq!(c.post("/set?key=small&value=y").await.status, 200);
        assert_eq!(c.get("/get?key=small").await.body, "y");
    }

    pub async fn default_limit_is_100_evicting_the_oldest<S: TestStore>(s: S) {
        let app = app_with(s.clone(), SessionConfig::default());
        let mut first = login_as(&app, "dora", "first", "10.0.0.1").await;
        // Last-seen times are in ms: the others are seen strictly later.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        for i in 0..100 {
            login_as(&app, "dora", &format!("d{i}"), "10.0.0.1").await;
        }
        assert_eq!(s.count().await, 100);
        assert_eq!(
            first.get("/read").await.status,
            401,
            "the oldest was evicted"
        );
    }

    pub async fn listing_goes_in_pages<S: TestStore>(s: S) {
        use tower_redis_session::ListCursor;
        let config = config().without_session_limit();
        let app = app_with(s.clone(), config.clone());
        for i in 0..205 {
            login_as(&app, "ed", &format!("d{i}"), "10.0.0.1").await;
        }
        let users = users_of(s.clone(), config);
        let first = users.list_page("ed", ListCursor::default()).await.unwrap();
        assert_eq!(first.sessions.len(), 100);
        let cursor = first.next.expect("more pages");
        assert_eq!(cursor.to_string().parse().ok(), Some(cursor));
        let second = users.list_page("ed", cursor).await.unwrap();
        let third = users.list_page("ed", second.next.unwrap()).await.unwrap();
        assert_eq!((second.sessions.len(), third.sessions.len()), (100, 5));
        assert_eq!(third.next, None);
        let all: std::collections::HashSet<_> = [first, second, third]
            .iter()
            .flat_map(|p| p.sessions.iter().map(|s| s.handle))
            .collect();
        assert_eq!(all.len(), 205, "every session once");
        assert_eq!(users.list("ed").await.unwrap().len(), 100, "the first page");
        assert_eq!(users.revoke_all("ed").await.unwrap(), 205);
        assert_eq!(s.count().await, 0);
    }

    pub async fn limit_evicts_the_least_recently_active<S: TestStore>(s: S) {
        let config = config().with_max_sessions_per_user(5, LimitPolicy::EvictOldest);
        let app = app_with(s.clone(), config);
        let mut clients = Vec::new();
        for i in 0..5 {
            clients.push(login_as(&app, "carol", &format!("d{i}"), "10.0.0.1").await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Device 0 becomes the most recently active; device 1 is now the oldest.
        clients[0].post("/incr").await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        for i in 5..7 {
            clients.push(login_as(&app, "carol", &format!("d{i}"), "10.0.0.1").await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut alive = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            if c.get("/read").await.status == 200 {
                alive.push(i);
            }
        }
        assert_eq!(
            alive,
            [0, 3, 4, 5, 6],
            "devices 1 and 2 were least recently active"
        );
    }

    pub async fn rejected_login_keeps_the_session<S: TestStore>(s: S) {
        let config = config().with_max_sessions_per_user(1, LimitPolicy::Reject);
        let app = app_with(s.clone(), config);
        login_as(&app, "dave", "first", "10.0.0.1").await;
        let mut c = Client::new(app.clone());
        c.post("/set?key=cart&value=book").await;
        let before = c.cookie.clone();
        let r = c.post("/login?user=dave").await;
        assert_eq!(r.status, 409);
        assert!(r.set_cookie.is_none(), "cookie unchanged");
        assert_eq!(c.cookie, before);
        assert_eq!(c.get("/get?key=cart").await.body, "book", "nothing lost");
        assert_eq!(c.get("/read").await.status, 401, "still anonymous");
        assert_eq!(s.count().await, 2);
    }

    // ---- login edges (guarantee 12) ------------------------------------------------

    pub async fn login_as_another_user_starts_clean<S: TestStore>(s: S) {
        let app = app_with(s.clone(), ip_config());
        let mut c = login_as(&app, "alice", "laptop", "10.0.0.1").await;
        c.post("/set?key=mfa_ok&value=yes").await;
        let alice = c.get("/handle").await.body;
        let r = c.post("/login?user=bob").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(c.get("/read").await.body, "bob");
        assert_eq!(
            c.get("/get?key=mfa_ok").await.status,
            404,
            "alice's data stays with alice"
        );
        let bob = c.get("/handle").await.body;
        assert_ne!(bob, alice, "a new handle");
        let list = sessions(&c.get("/sessions").await.body);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].0, bob);
        let users = users_of(s.clone(), config());
        assert!(
            users.list("alice").await.unwrap().is_empty(),
            "alice's session ended"
        );
        assert_eq!(s.count().await, 1);
    }

    pub async fn login_as_the_same_user_keeps_data<S: TestStore>(s: S) {
        let app = app_with(s.clone(), ip_config());
        let mut c = login_as(&app, "alice", "laptop", "10.0.0.1").await;
        c.post("/set?key=cart&value=book").await;
        let handle = c.get("/handle").await.body;
        let before = c.cookie.clone();
        let r = c.post("/login?user=alice").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_ne!(c.cookie, before, "the id rotates");
        assert_eq!(c.get("/get?key=cart").await.body, "book");
        assert_eq!(
            c.get("/handle").await.body,
            handle,
            "same session, same handle"
        );
        assert_eq!(sessions(&c.get("/sessions").await.body).len(), 1);
        assert_eq!(s.count().await, 1);
    }

    pub async fn login_restarts_the_lifetime<S: TestStore>(s: S) {
        let lifetime = Duration::from_secs(3);
        let app = app_with(s.clone(), config().with_absolute_lifetime(Some(lifetime)));
        let mut c = Client::new(app);
        c.post("/set?key=cart&value=book").await;
        // Browsing before the login does not count against the logged-in lifetime.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let before = now();
        assert_eq!(c.post("/login?user=alice").await.status, 200);
        let record = s.load(&skey(&c)).await.unwrap().expect("logged in");
        let created: i64 = record.get("m:c").unwrap().parse().unwrap();
        let deadline: i64 = record.get("m:d").unwrap().parse().unwrap();
        assert!(created >= before, "signed in now: {created} < {before}");
        assert!(
            deadline >= before + lifetime.as_millis() as i64,
            "the lifetime counts from the login: {deadline} < {before} + 3000"
        );
        assert_eq!(c.get("/get?key=cart").await.body, "book");
    }

    /// "Sudo mode": the login time is kept through id rotation and reset by a new login;
    /// a guard refuses an action when it is older than allowed, or when not logged in.
    pub async fn recent_authentication<S: TestStore>(s: S) {
        let guarded = Router::new()
            .route(
                "/sudo",
                post(|session: Session| async move {
                    session
                        .require_recent_auth(Duration::from_millis(800))
                        .await?;
                    Ok::<_, SessionError>("allowed")
                }),
            )
            .route(
                "/auth_at",
                get(|session: Session| async move {
                    let at = session.authenticated_at().await?;
                    Ok::<_, SessionError>(format!(
                        "{:?}",
                        at.map(|t| {
                            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                        })
                    ))
                }),
            )
            .route(
                "/cycle",
                post(|session: Session| async move {
                    session.cycle_id().await?;
                    Ok::<_, SessionError>("cycled")
                }),
            );
        let app = routes::routes()
            .merge(guarded)
            .layer(SessionLayer::new(s, config()).unwrap());
        let mut c = Client::new(app);
        c.post("/set?key=a&value=1").await;
        assert_eq!(c.get("/auth_at").await.body, "None");
        assert_eq!(c.post("/sudo").await.status, 401, "not logged in");
        c.post("/login?user=alice").await;
        let first = c.get("/auth_at").await.body;
        assert_ne!(first, "None");
        assert_eq!(c.post("/sudo").await.body, "allowed");
        tokio::time::sleep(Duration::from_millis(400)).await;
        c.post("/cycle").await;
        assert_eq!(
            c.get("/auth_at").await.body,
            first,
            "kept through id rotation"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stale = c.post("/sudo").await;
        assert_eq!(stale.status, 401, "{}", stale.body);
        assert_eq!(stale.body, "re-authentication required");
        c.post("/login?user=alice").await;
        assert_ne!(c.get("/auth_at").await.body, first, "a new login resets it");
        assert_eq!(c.post("/sudo").await.body, "allowed");
    }

    pub async fn failed_login_never_resurrects<S: TestStore>(s: S) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let gate = Gate::new();
        let armed = Arc::new(AtomicBool::new(false));
        let (held, on) = (gate.clone(), armed.clone());
        let config = config().with_max_sessions_per_user(1, LimitPolicy::Reject);
        let layer = SessionLayer::new(s.clone(), config)
            .unwrap()
            .with_login_pause(move || {
                let (held, on) = (held.clone(), on.clone());
                async move {
                    if on.load(Ordering::SeqCst) {
                        held.hold().await;
                    }
                }
            });
        let users = layer.admin();
        let app = routes::routes()
            .merge(common::session_routes::per_user())
            .layer(layer);
        login_as(&app, "bob", "phone", "10.0.0.9").await;
        let mut c = login_as(&app, "alice", "laptop", "10.0.0.1").await;
        c.post("/set?key=cart&value=book").await;
        armed.store(true, Ordering::SeqCst);
        let mut switching = c.clone();
        let login = tokio::spawn(async move { switching.post("/login?user=bob").await });
        gate.loaded(1).await;
        // While the login is between its steps, alice's sessions are revoked.
        assert_eq!(
            users.revoke_all("alice").await.unwrap(),
            1,
            "revoked what it found"
        );
        gate.release(1);
        let r = login.await.unwrap();
        assert_eq!(r.status, 409, "bob is at his limit: {}", r.body);
        assert_eq!(
            c.get("/read").await.status,
            401,
            "the revoked session stays gone"
        );
        assert_eq!(c.get("/get?key=cart").await.status, 404);
        assert!(users.list("alice").await.unwrap().is_empty());
        assert_eq!(s.count().await, 1, "only bob's session");
    }

    pub async fn too_many_fields_lose_nothing<S: TestStore>(s: S) {
        let fill = Router::new().route(
            "/fill",
            post(
                |session: Session, Query(q): Query<routes::KeyValue>| async move {
                    let from: usize = q.key.parse().unwrap();
                    let n: usize = q.value.parse().unwrap();
                    for i in from..from + n {
                        session.insert(&i.to_string(), "1").await?;
                    }
                    Ok::<_, SessionError>("ok")
                },
            ),
        );
        let app = routes::routes()
            .merge(fill)
            .layer(SessionLayer::new(s.clone(), config()).unwrap());
        let mut c = Client::new(app);
        let mut refused = false;
        for step in 0..5 {
            let r = c.post(&format!("/fill?key={}&value=820", step * 820)).await;
            if r.status != 200 {
                assert_eq!(r.status, 413, "a typed refusal: {}", r.body);
                refused = true;
                break;
            }
        }
        assert!(refused, "4,100 fields are more than a session may hold");
        assert_eq!(
            c.get("/get?key=0").await.body,
            "1",
            "what was stored is kept"
        );
        let r = c.post("/login?user=alice").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(c.get("/read").await.body, "alice");
        assert_eq!(
            c.get("/get?key=0").await.body,
            "1",
            "login carried the data"
        );
    }

    pub async fn invalid_user_ids_are_refused_and_lose_nothing<S: TestStore>(s: S) {
        let app = app_with(s.clone(), config());
        let mut c = Client::new(app.clone());
        c.post("/set?key=cart&value=book").await;
        let before = c.cookie.clone();
        let long = "u".repeat(257);
        for bad in [
            "",
            "a%00b",
            "line%0Abreak",
            "del%7F",
            "c1%C2%85",
            long.as_str(),
        ] {
            let r = c.post(&format!("/login?user={bad}")).await;
            assert_eq!(r.status, 400, "{bad:?}");
            assert!(r.set_cookie.is_none(), "cookie unchanged for {bad:?}");
            assert_eq!(c.cookie, before);
        }
        assert_eq!(c.get("/get?key=cart").await.body, "book", "nothing lost");
        assert_eq!(c.get("/read").await.status, 401, "still anonymous");
        // The longest accepted id, and any printable Unicode.
        let longest = "u".repeat(256);
        for good in [longest.as_str(), "J%C3%BCrgen%20M%C3%BCller"] {
            assert_eq!(
                Client::new(app.clone())
                    .post(&format!("/login?user={good}"))
                    .await
                    .status,
                200
            );
        }
        assert_eq!(s.count().await, 3);
    }

    pub async fn user_tag_hides_the_user_id<S: TestStore>(s: S) {
        use base64::Engine as _;
        use sha2::Digest as _;
        let app = app_with(s.clone(), ip_config());
        let user = "erin@example.com";
        let a = login_as(&app, user, "a", "10.0.0.1").await;
        let b = login_as(&app, user, "b", "10.0.0.1").await;
        let other = login_as(&app, "frank@example.com", "c", "10.0.0.1").await;
        let tag = |c: &Client| {
            c.cookie
                .clone()
                .unwrap()
                .split('.')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(tag(&a), tag(&b), "one slot per user");
        assert_ne!(tag(&a), tag(&other));
        let cookie = a.cookie.clone().unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Whole strings only: a random cookie may contain "erin" by chance
        // (about once in 10^5 runs), which is not a leak.
        assert!(!cookie.contains(user) && !cookie.contains("erin%40"));
        assert!(!cookie.contains(&b64.encode(user.as_bytes())[..12]));
        let unsalted = b64.encode(sha2::Sha256::digest(user.as_bytes()));
        assert!(
            !unsalted.starts_with(&tag(&a)),
            "the tag is keyed, not a plain hash"
        );
        // Another namespace has its own key: the same user gets another tag there.
        let elsewhere = app_with(s.in_namespace(&format!("{}-2", s.namespace())), ip_config());
        let c = login_as(&elsewhere, user, "a", "10.0.0.1").await;
        assert_ne!(tag(&c), tag(&a));
    }

    pub async fn user_namespaces_are_independent<S: TestStore>(s: S) {
        let admin = s.in_namespace(&format!("{}-admin", s.namespace()));
        let limited = config().with_max_sessions_per_user(1, LimitPolicy::Reject);
        let user_app = app_with(s.clone(), limited.clone());
        let admin_app = app_with(admin.clone(), limited.clone());
        login_as(&user_app, "gail", "u", "10.0.0.1").await;
        // The user namespace is full for gail; the admin namespace is not.
        let mut c = login_as(&admin_app, "gail", "a", "10.0.0.1").await;
        assert_eq!(sessions(&c.get("/sessions").await.body).len(), 1);
        let mut again = Client::new(user_app.clone());
        assert_eq!(again.post("/login?user=gail").await.status, 409);
        assert_eq!(
            users_of(s.clone(), limited.clone())
                .list("gail")
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            users_of(admin, limited).list("gail").await.unwrap().len(),
            1
        );
    }

    pub async fn users_api_without_a_request<S: TestStore>(s: S) {
        let app = app_with(s.clone(), ip_config());
        let mut a = login_as(&app, "hana", "a", "10.0.0.1").await;
        let mut b = login_as(&app, "hana", "b", "10.0.0.2").await;
        let users = users_of(s.clone(), ip_config());
        let list = users.list("hana").await.unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.iter().all(|s| !s.current));
        assert!(list[0].created <= list[1].created);
        assert!(users.revoke("hana", list[0].handle).await.unwrap());
        assert_eq!(users.list("hana").await.unwrap().len(), 1);
        assert_eq!(users.revoke_all("hana").await.unwrap(), 1);
        assert_eq!(a.get("/read").await.status, 401);
        assert_eq!(b.get("/read").await.status, 401);
        assert!(users.list("nobody").await.unwrap().is_empty());
        assert_eq!(users.revoke_all("nobody").await.unwrap(), 0);
    }
}
