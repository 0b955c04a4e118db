use super::*;

fn record(expires: i64, data: &str) -> Record {
    Record::from_fields(
        [
            ("m:t", format!("{expires},1,0,3")),
            ("m:n", "1,h".to_owned()),
            ("d:a", data.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    )
}

fn invalidate(keys: &[&str]) -> PushInfo {
    PushInfo {
        kind: PushKind::Invalidate,
        data: vec![Value::Array(
            keys.iter()
                .map(|k| Value::BulkString(k.as_bytes().to_vec()))
                .collect(),
        )],
    }
}

/// The staleness bound counts from when the read was sent: a slow reply may show
/// Redis as it was when the read left.
#[test]
fn staleness_counts_from_the_send() {
    let c = Cache::new(LocalCache::default().with_max_staleness(Duration::from_millis(30)));
    let t = c.reserve("k").unwrap();
    std::thread::sleep(Duration::from_millis(40)); // the reply takes its time
    c.fill("k", t, Some(&record(i64::MAX, "1")));
    assert!(c.get("k", 0).is_none(), "already too old when it arrived");
}

/// Confirmed updates waiting for an earlier version are memory too: counted, and a
/// slot they make too large goes.
#[test]
fn waiting_updates_count_against_the_byte_bound() {
    let limits = LocalCache::default().with_max_bytes(64 * 1024);
    let c = Cache::new(limits);
    let t = c.reserve("ns:{t}:s:k").unwrap();
    c.fill("ns:{t}:s:k", t, Some(&record(i64::MAX, "1"))); // version 3
    let big = "x".repeat(1000);
    let mut p = Patch::default();
    p.set_fields([("d:b".to_owned(), big)]);
    // Versions 5.. arrive while 4 is still on its way: they wait.
    c.updated("ns:{t}:s:k", &p, 1, Duration::from_secs(1), 5);
    assert!(c.stats().bytes > 1000, "counted: {}", c.stats().bytes);
    for v in 6..14 {
        c.updated("ns:{t}:s:k", &p, 1, Duration::from_secs(1), v);
    }
    // More than an eighth of the bound waits in one slot: it goes.
    assert_eq!(c.stats().entries, 0);
    assert_eq!(c.stats().bytes, 0, "nothing left counted");
}

/// Forgetting a slot drops its sessions and no others, through the slot index.
#[test]
fn forgetting_a_slot_touches_only_its_entries() {
    let c = Cache::new(LocalCache::default());
    for (tag, n) in [("a", 3), ("b", 2)] {
        for i in 0..n {
            let k = format!("ns:{{{tag}}}:s:{i}");
            let t = c.reserve(&k).unwrap();
            c.fill(&k, t, Some(&record(i64::MAX, "1")));
        }
    }
    assert_eq!(c.stats().entries, 5);
    c.forget_slot("ns:{a}:s:");
    assert_eq!(c.stats().entries, 2);
    assert!(c.get("ns:{b}:s:0", 0).is_some());
    // A change of b's handle map drops b's sessions too.
    c.on_push(&invalidate(&["ns:{b}:uh"]));
    assert_eq!(c.stats().entries, 0);
    assert_eq!(c.stats().bytes, 0);
    // A guard forgets again when dropped: a read sent before it cannot fill.
    let t = c.reserve("ns:{a}:s:0").unwrap();
    drop(c.forgetting(Forget::Key("ns:{a}:s:9".to_owned())));
    c.fill("ns:{a}:s:0", t, Some(&record(i64::MAX, "1")));
    assert!(c.get("ns:{a}:s:0", 0).is_none());
}

#[test]
fn an_invalidation_before_the_reply_wins() {
    let c = Cache::new(LocalCache::default());
    let t = c.reserve("k").unwrap();
    c.on_push(&invalidate(&["k"]));
    c.fill("k", t, Some(&record(i64::MAX, "1")));
    assert!(c.get("k", 0).is_none(), "the older reply is not kept");
    let t = c.reserve("k").unwrap();
    c.fill("k", t, Some(&record(i64::MAX, "1")));
    assert_eq!(c.get("k", 0).unwrap().get("d:a"), Some("1"));
    c.on_push(&invalidate(&["k"]));
    assert!(c.get("k", 0).is_none());
}

#[test]
fn entries_end_at_expiry_staleness_and_disconnection() {
    let c = Cache::new(LocalCache::default().with_max_staleness(Duration::from_millis(30)));
    let t = c.reserve("k").unwrap();
    c.fill("k", t, Some(&record(1_000, "1")));
    assert!(c.get("k", 999).is_some());
    assert!(c.get("k", 1_000).is_none(), "expired by its own time");
    let t = c.reserve("k").unwrap();
    c.fill("k", t, Some(&record(i64::MAX, "1")));
    std::thread::sleep(Duration::from_millis(40));
    assert!(c.get("k", 0).is_none(), "too old");
    let t = c.reserve("k").unwrap();
    c.fill("k", t, Some(&record(i64::MAX, "1")));
    c.on_push(&PushInfo {
        kind: PushKind::Disconnection,
        data: Vec::new(),
    });
    assert_eq!(c.stats().entries, 0);
}

#[test]
fn own_updates_apply_in_the_order_redis_ran_them() {
    let c = Cache::new(LocalCache::default());
    let t = c.reserve("k").unwrap();
    c.fill("k", t, Some(&record(i64::MAX, "1"))); // version 3
    let set = |k: &str, v: &str| {
        let mut p = Patch::default();
        p.set_fields([(k.to_owned(), v.to_owned())]);
        p
    };
    let ttl = Duration::from_millis(10);
    c.updated("k", &set("d:b", "2"), 5, ttl, 4);
    let r = c.get("k", 0).unwrap();
    assert_eq!((r.get("d:a"), r.get("d:b")), (Some("1"), Some("2")));
    assert_eq!(r.get("m:e"), Some("15"));
    // Version 6 confirmed before 5: held until 5 arrives, then both, in order.
    c.updated("k", &set("d:a", "six"), 7, ttl, 6);
    assert_eq!(c.get("k", 0).unwrap().get("d:a"), Some("1"));
    c.updated("k", &set("d:a", "five"), 6, ttl, 5);
    let r = c.get("k", 0).unwrap();
    assert_eq!((r.get("d:a"), r.get("m:e")), (Some("six"), Some("17")));
    // A write the entry's read already saw changes nothing.
    c.updated("k", &set("d:a", "old"), 8, ttl, 6);
    assert_eq!(c.get("k", 0).unwrap().get("d:a"), Some("six"));
    // Confirmed while the read was in flight: applied to its reply if it is newer.
    let t = c.reserve("k").unwrap();
    c.updated("k", &set("d:c", "x"), 9, ttl, 4);
    c.fill("k", t, Some(&record(i64::MAX, "1"))); // version 3: 4 comes next
    assert_eq!(c.get("k", 0).unwrap().get("d:c"), Some("x"));
}

#[test]
fn bounded_by_entries_and_bytes() {
    let c = Cache::new(
        LocalCache::default()
            .with_max_entries(10)
            .with_max_bytes(16 << 10),
    );
    for i in 0..100 {
        let k = format!("k{i}");
        let t = c.reserve(&k).unwrap();
        c.fill(&k, t, Some(&record(i64::MAX, &"x".repeat(i * 16))));
        let s = c.stats();
        assert!(s.entries <= 10 && s.bytes <= 16 << 10, "{s:?}");
    }
    assert!(c.get("k99", 0).is_some(), "the newest stay");
    assert!(c.get("k0", 0).is_none(), "the oldest went first");
    let t = c.reserve("big").unwrap();
    c.fill("big", t, Some(&record(i64::MAX, &"x".repeat(3000))));
    assert!(
        c.get("big", 0).is_none(),
        "larger than an eighth of the bytes"
    );
}
