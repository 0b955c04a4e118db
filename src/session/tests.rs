//! Transitions of a request's session, driven through the handle against an in-process
//! store, without HTTP: what each sequence of calls leaves in the store and what the
//! response's cookie becomes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::state::{Health, State};
use super::{Commit, CookieAction, Session};
use crate::config::SessionConfig;
use crate::context::{LayerState, RequestMeta};
use crate::cookie::Incoming;
use crate::error::{SessionError, StoreError};
use crate::id::SessionId;
use crate::store::{MemoryStore, SessionStore};

fn context(store: &MemoryStore, config: SessionConfig) -> Arc<LayerState> {
    Arc::new(LayerState {
        store: Arc::new(store.clone()),
        config,
        rejected: Arc::new(AtomicU64::new(0)),
        events: Arc::new(crate::events::EventHub::default()),
        values: Default::default(),
        #[cfg(feature = "store-internals")]
        login_pause: None,
    })
}

/// A request's session: with the cookie `id` (as a verified cookie would give it) or
/// none.
fn request(ctx: &Arc<LayerState>, id: Option<&SessionId>) -> Session {
    let incoming = match id {
        Some(id) => Incoming::Valid(id.clone()),
        None => Incoming::Absent,
    };
    Session::new(ctx.clone(), incoming, RequestMeta::default())
}

/// The id a commit sent in its cookie.
fn set_id(commit: Commit) -> SessionId {
    match commit {
        Commit::Cookie(CookieAction::Set { id, .. }) => id,
        other => panic!("expected a new cookie, got {other:?}"),
    }
}

fn is(commit: &Commit, expected: &str) -> bool {
    matches!(
        (commit, expected),
        (Commit::Cookie(CookieAction::Keep), "keep")
            | (Commit::Cookie(CookieAction::Remove), "remove")
            | (Commit::Cookie(CookieAction::Set { .. }), "set")
            | (Commit::TooLarge, "too large")
            | (Commit::Failed(_), "failed")
    )
}

#[tokio::test]
async fn untouched_anonymous_session_writes_nothing() {
    let store = MemoryStore::new();
    let ctx = context(&store, SessionConfig::default());
    let s = request(&ctx, None);
    assert!(is(&s.commit().await, "keep"));
    // Read but not changed: still nothing.
    let s = request(&ctx, None);
    assert_eq!(s.get::<String>("k").await.unwrap(), None);
    assert!(is(&s.commit().await, "keep"));
    assert_eq!(store.live_sessions(), 0);
}

#[tokio::test]
async fn a_change_creates_the_session_and_later_requests_see_it() {
    let store = MemoryStore::new();
    let ctx = context(&store, SessionConfig::default());
    let s = request(&ctx, None);
    s.insert("k", "v").await.unwrap();
    let id = set_id(s.commit().await);
    assert_eq!(store.live_sessions(), 1);
    let s = request(&ctx, Some(&id));
    assert_eq!(s.get::<String>("k").await.unwrap().as_deref(), Some("v"));
    // A read well above the refresh threshold writes nothing and keeps the cookie.
    assert!(is(&s.commit().await, "keep"));
}

#[tokio::test]
async fn removing_the_last_key_keeps_an_empty_session() {
    let store = MemoryStore::new();
    let ctx = context(&store, SessionConfig::default());
    let s = request(&ctx, None);
    s.insert("k", 1).await.unwrap();
    let id = set_id(s.commit().await);
    let s = request(&ctx, Some(&id));
    assert_eq!(s.remove::<i32>("k").await.unwrap(), Some(1));
    assert!(s.is_empty().await.unwrap());
    assert!(is(&s.commit().await, "keep"));
    assert_eq!(store.live_sessions(), 1);
}

#[tokio::test]
async fn destroy_removes_the_cookie_and_a_later_change_starts_anew() {
    let store = MemoryStore::new();
    let ctx = context(&store, SessionConfig::default());
    let s = request(&ctx, None);
    s.insert("k", "v").await.unwrap();
    let id = set_id(s.commit().await);

    let s = request(&ctx, Some(&id));
    s.destroy().await.unwrap();
    assert_eq!(s.get::<String>("k").await.unwrap(), None, "gone at once");
    assert!(is(&s.commit().await, "remove"));
    assert_eq!(store.live_sessions(), 0);

    // Destroy, then a change in the same request: a new session with a new id.
    let s = request(&ctx, None);
    s.insert("a", 1).await.unwrap();
    let first = set_id(s.commit().await);
    let s = request(&ctx, Some(&first));
    s.destroy().await.unwrap();
    s.insert("b", 2).await.unwrap();
    let second = set_id(s.commit().await);
    assert_ne!(first.key(), second.key());
    assert_eq!(store.live_sessions(), 1);
    let s = request(&ctx, Some(&second));
    assert_eq!(
        s.get::<i32>("a").await.unwrap(),
        None,
        "nothing carried over"
    );
    assert_eq!(s.get::<i32>("b").await.unwrap(), Some(2));
}

#[tokio::test]
async fn a_cookie_without_a_session_is_removed_once_read() {
    let store = MemoryStore::new();
    let ctx = context(&store, SessionConfig::default());
    let unknown = SessionId::generate().unwrap();
    // Not read: the cookie is left alone (no store call at all).
    assert!(is(&request(&ctx, Some(&unknown)).commit().await, "keep"));
    let s = request(&ctx, Some(&unknown));
    assert_eq!(s.get::<i32>("k").await.unwrap(), None);
    assert!(is(&s.commit().await, "remove"));
}

#[tokio::test]
async fn cycle_id_moves_the_data_to_a_new_id() {
    let store = MemoryStore::new();
    let ctx = context(&store, SessionConfig::default());
    let s = request(&ctx, None);
    s.insert("k", "v").await.unwrap();
    let old = set_id(s.commit().await);
    let s = request(&ctx, Some(&old));
    s.cycle_id().await.unwrap();
    let new = set_id(s.commit().await);
    assert_ne!(old.key(), new.key());
    assert!(
        store.load(&old.key()).await.unwrap().is_none(),
        "old id gone"
    );
    let s = request(&ctx, Some(&new));
    assert_eq!(s.get::<String>("k").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn login_moves_the_session_and_keeps_its_data() {
    let store = MemoryStore::new();
    let ctx = context(&store, SessionConfig::default());
    let s = request(&ctx, None);
    s.insert("cart", 3).await.unwrap();
    let anonymous = set_id(s.commit().await);
    let s = request(&ctx, Some(&anonymous));
    s.login("ada").await.unwrap();
    assert_eq!(s.user_id().await.unwrap().as_deref(), Some("ada"));
    let logged_in = set_id(s.commit().await);
    assert_ne!(anonymous.key(), logged_in.key(), "a login rotates the id");
    assert!(store.load(&anonymous.key()).await.unwrap().is_none());
    let s = request(&ctx, Some(&logged_in));
    assert_eq!(s.get::<i32>("cart").await.unwrap(), Some(3));
    assert_eq!(s.user_sessions().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_invalid_user_id_changes_nothing() {
    let store = MemoryStore::new();
    let ctx = context(&store, SessionConfig::default());
    let s = request(&ctx, None);
    s.insert("k", 1).await.unwrap();
    let id = set_id(s.commit().await);
    let s = request(&ctx, Some(&id));
    assert!(matches!(
        s.login("").await,
        Err(SessionError::InvalidUserId(_))
    ));
    assert!(is(&s.commit().await, "keep"));
    assert_eq!(
        request(&ctx, Some(&id)).get::<i32>("k").await.unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn a_change_past_the_size_limit_is_refused_and_nothing_is_written() {
    let store = MemoryStore::new();
    let ctx = context(&store, SessionConfig::default().with_max_session_size(100));
    let s = request(&ctx, None);
    assert!(matches!(
        s.insert("k", "x".repeat(200)).await,
        Err(SessionError::TooLarge { .. })
    ));
    assert!(is(&s.commit().await, "keep"));
    assert_eq!(store.live_sessions(), 0);
}

#[test]
fn a_failure_outranks_a_degraded_load_and_a_login_clears_only_degraded() {
    let mut st = State::default();
    st.degrade();
    assert!(matches!(st.health, Health::Degraded));
    st.recovered();
    assert!(matches!(st.health, Health::Ok));

    st.degrade();
    let _ = st.fail(StoreError::Protocol("test"), "test");
    assert!(matches!(st.health, Health::Failed(_)));
    st.degrade();
    st.recovered();
    assert!(
        matches!(st.health, Health::Failed(_)),
        "a failure stays until the request ends"
    );
    st.ended();
    assert!(
        matches!(st.health, Health::Ok),
        "a destroyed session starts clean"
    );
}

#[test]
fn the_deadline_rule() {
    use super::commit::deadline_ms;
    use std::time::Duration;
    let (created, hour) = (1_000_000, Some(Duration::from_secs(3600)));
    // A new session: the configured lifetime from its creation, or none.
    assert_eq!(
        deadline_ms(None, created, None, hour),
        Some(created + 3_600_000)
    );
    assert_eq!(deadline_ms(None, created, None, None), None);
    // An existing session keeps its own, whatever the configuration says now.
    assert_eq!(deadline_ms(None, created, Some(Some(42)), hour), Some(42));
    assert_eq!(deadline_ms(None, created, Some(None), hour), None);
    // An override counts from creation, or lifts the cap.
    let day = Some(Some(Duration::from_secs(86_400)));
    assert_eq!(
        deadline_ms(day, created, Some(Some(42)), hour),
        Some(created + 86_400_000)
    );
    assert_eq!(deadline_ms(Some(None), created, Some(Some(42)), hour), None);
}

#[tokio::test]
async fn a_destroyed_session_is_not_rotated_and_a_later_change_starts_anew() {
    let store = MemoryStore::new();
    let ctx = context(&store, SessionConfig::default());
    let s = request(&ctx, None);
    s.insert("k", 1).await.unwrap();
    let id = set_id(s.commit().await);
    // destroy, then cycle_id: still ended.
    let s = request(&ctx, Some(&id));
    s.destroy().await.unwrap();
    s.cycle_id().await.unwrap();
    assert!(is(&s.commit().await, "remove"));
    assert_eq!(store.live_sessions(), 0);
}
