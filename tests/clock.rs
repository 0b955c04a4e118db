//! One clock: the scripts take "now" from Redis, so an application instance whose
//! clock is off cannot stretch a session past its absolute deadline. (Its own test
//! binary: the clock hook is process-wide.)

mod common;
#[path = "../examples/shared/routes.rs"]
mod routes;

use std::time::Duration;

use common::Client;
use tower_redis_session::testing::set_clock_skew;
use tower_redis_session::{SessionConfig, SessionKey, SessionLayer, SessionStore as _};

const HOUR: i64 = 3_600_000;

fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_instance_cannot_stretch_a_deadline() {
    let store = common::stores::redis_store("clock");
    let config = SessionConfig::default().with_absolute_lifetime(Some(Duration::from_secs(3)));
    let app = routes::routes().layer(SessionLayer::new(store.clone(), config).unwrap());
    let mut c = Client::new(app);
    // An instance an hour ahead logs the user in...
    set_clock_skew(HOUR);
    assert_eq!(c.post("/login?user=alice").await.status, 200);
    set_clock_skew(0);
    let key = SessionKey::from_cookie_value(c.cookie.as_deref().unwrap()).unwrap();
    let record = store.load(&key).await.unwrap().expect("logged in");
    let deadline: i64 = record.get("m:d").unwrap().parse().unwrap();
    assert!(
        deadline <= real_now() + 3_000,
        "the deadline counts from Redis's now: {} ms ahead",
        deadline - real_now()
    );
    // ...then instances with a right clock and one an hour behind write to it: the TTL
    // never passes the 3 s lifetime.
    for skew in [0, -HOUR] {
        set_clock_skew(skew);
        assert_eq!(c.post("/incr").await.status, 200);
        set_clock_skew(0);
        let pttl = common::TestStore::pttl(&store, &key).await.unwrap();
        assert!(pttl <= 3_000, "skew {skew}: TTL {pttl} ms");
    }
    // A session created by a skewed instance is stamped in Redis's time too.
    set_clock_skew(HOUR);
    let mut fresh = Client::new(c.app.clone());
    assert_eq!(fresh.post("/incr").await.status, 200);
    set_clock_skew(0);
    let key = SessionKey::from_cookie_value(fresh.cookie.as_deref().unwrap()).unwrap();
    let created: i64 = store
        .load(&key)
        .await
        .unwrap()
        .unwrap()
        .get("m:c")
        .unwrap()
        .parse()
        .unwrap();
    assert!((created - real_now()).abs() < 5_000, "created {created}");
}
