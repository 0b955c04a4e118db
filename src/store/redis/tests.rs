use super::scripts::EVENTS_LIB;
use super::*;

#[test]
fn scripts_read_as_many_index_entries_as_the_store_says() {
    let line = format!("local USER_BATCH = {USER_BATCH}\n");
    assert!(
        EVENTS_LIB.contains(&line),
        "events_lib.lua must say {line:?}"
    );
    const { assert!(PAGE_SIZE <= USER_BATCH, "a listing page is one script call") };
}

#[test]
fn cluster_masters_skips_replicas_and_failed_nodes() {
    let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383
a4 127.0.0.1:7003@17003 master,fail? - 0 0 4 connected
a5 127.0.0.1:7004@17004 slave a1 0 0 5 connected
";
    assert_eq!(
        cluster_masters(nodes),
        [
            ("127.0.0.1".to_owned(), 7000),
            ("127.0.0.1".to_owned(), 7001)
        ]
    );
}

#[test]
fn debug_never_shows_credentials() {
    for builder in [
        RedisStore::builder("redis://alice:hunter2-pw@127.0.0.1:6379/0"),
        RedisStore::builder("rediss://:hunter2-pw@cache.example:6380"),
        RedisStore::builder("redis+unix:///run/redis.sock?pass=hunter2-pw"),
        RedisStore::cluster_builder(["redis://alice:hunter2-pw@127.0.0.1:7000"]),
    ] {
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("alice"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    let plain = format!("{:?}", RedisStore::builder("redis://127.0.0.1:6379"));
    assert!(plain.contains("redis://127.0.0.1:6379"), "{plain}");
}

/// A store operation's future is boxed (and moved) on every request, so its size is
/// a per-request cost: a pool checkout awaited inline made `load` ~14 KB, a large
/// allocation plus a 14 KB copy per read. Below 1 KB, glibc serves it from its small
/// bins without consolidating its free lists.
#[test]
fn read_futures_stay_small() {
    let store = RedisStore::from_url("redis://127.0.0.1:1").unwrap();
    let key = SessionKey::from_parts("t".into(), "h".into());
    let load = SessionStore::load(&store, &key);
    assert!(
        size_of_val(&load) < 1024,
        "load: {} bytes",
        size_of_val(&load)
    );
    let cmd = redis::cmd("GET");
    let command = store.command::<String>(&cmd);
    assert!(
        size_of_val(&command) < 1024,
        "command: {} bytes",
        size_of_val(&command)
    );
}

/// `recent_events` reads at most 1000 entries, as documented.
#[test]
fn recent_events_are_bounded_as_documented() {
    assert_eq!(RedisStore::RECENT_EVENTS_MAX, 1000);
}
