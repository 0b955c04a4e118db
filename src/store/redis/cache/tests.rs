use super::*;

fn record(expires: i64, data: &str) -> Record {
    Record::from_fields(
        [
            ("m:t", format!("{expires},1,0,3")),
            ("m:n", format!("1,{HANDLE}")),
            ("d:a", data.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    )
}

const HANDLE: &str = "0190b5d2-8e4c-7c3e-9a4b-2f1d3c5e7a90";

/// The entry at `key` as its fields, if a fresh one holds it.
fn get(c: &Cache, key: &str, now_ms: i64) -> Option<Record> {
    c.get(key, now_ms, |fields, _| Record::from_fields(fields.clone()))
}

/// The entry at `key` as the session layer gets it: the shared parsed copy.
fn parsed(c: &Cache, key: &str) -> Option<Arc<Loaded>> {
    c.get(key, 0, |_, parsed| parsed.clone())
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
    assert!(get(&c, "k", 0).is_none(), "already too old when it arrived");
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
    assert!(get(&c, "ns:{b}:s:0", 0).is_some());
    // A change of b's handle map drops b's sessions too.
    c.on_push(&invalidate(&["ns:{b}:uh"]));
    assert_eq!(c.stats().entries, 0);
    assert_eq!(c.stats().bytes, 0);
    // A guard forgets again when dropped: a read sent before it cannot fill.
    let t = c.reserve("ns:{a}:s:0").unwrap();
    drop(c.forgetting(Forget::Key("ns:{a}:s:9".to_owned())));
    c.fill("ns:{a}:s:0", t, Some(&record(i64::MAX, "1")));
    assert!(get(&c, "ns:{a}:s:0", 0).is_none());
}

#[test]
fn an_invalidation_before_the_reply_wins() {
    let c = Cache::new(LocalCache::default());
    let t = c.reserve("k").unwrap();
    c.on_push(&invalidate(&["k"]));
    c.fill("k", t, Some(&record(i64::MAX, "1")));
    assert!(get(&c, "k", 0).is_none(), "the older reply is not kept");
    let t = c.reserve("k").unwrap();
    c.fill("k", t, Some(&record(i64::MAX, "1")));
    assert_eq!(get(&c, "k", 0).unwrap().get("d:a"), Some("1"));
    c.on_push(&invalidate(&["k"]));
    assert!(get(&c, "k", 0).is_none());
}

#[test]
fn entries_end_at_expiry_staleness_and_disconnection() {
    let c = Cache::new(LocalCache::default().with_max_staleness(Duration::from_millis(30)));
    let t = c.reserve("k").unwrap();
    c.fill("k", t, Some(&record(1_000, "1")));
    assert!(get(&c, "k", 999).is_some());
    assert!(get(&c, "k", 1_000).is_none(), "expired by its own time");
    let t = c.reserve("k").unwrap();
    c.fill("k", t, Some(&record(i64::MAX, "1")));
    std::thread::sleep(Duration::from_millis(40));
    assert!(get(&c, "k", 0).is_none(), "too old");
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
    let r = get(&c, "k", 0).unwrap();
    assert_eq!((r.get("d:a"), r.get("d:b")), (Some("1"), Some("2")));
    assert_eq!(r.get("m:e"), Some("15"));
    // Version 6 confirmed before 5: held until 5 arrives, then both, in order.
    c.updated("k", &set("d:a", "six"), 7, ttl, 6);
    assert_eq!(get(&c, "k", 0).unwrap().get("d:a"), Some("1"));
    c.updated("k", &set("d:a", "five"), 6, ttl, 5);
    let r = get(&c, "k", 0).unwrap();
    assert_eq!((r.get("d:a"), r.get("m:e")), (Some("six"), Some("17")));
    // A write the entry's read already saw changes nothing.
    c.updated("k", &set("d:a", "old"), 8, ttl, 6);
    assert_eq!(get(&c, "k", 0).unwrap().get("d:a"), Some("six"));
    // Confirmed while the read was in flight: applied to its reply if it is newer.
    let t = c.reserve("k").unwrap();
    c.updated("k", &set("d:c", "x"), 9, ttl, 4);
    c.fill("k", t, Some(&record(i64::MAX, "1"))); // version 3: 4 comes next
    assert_eq!(get(&c, "k", 0).unwrap().get("d:c"), Some("x"));
}

#[test]
fn bounded_by_entries_and_bytes() {
    let c = Cache::new(
        LocalCache::default()
            .with_max_entries(20)
            .with_max_bytes(24 << 10),
    );
    let mut fewer = false;
    for i in 0..100 {
        let k = format!("k{i}");
        let t = c.reserve(&k).unwrap();
        c.fill(&k, t, Some(&record(i64::MAX, &"x".repeat(i * 8))));
        let s = c.stats();
        assert!(s.entries <= 20 && s.bytes <= 24 << 10, "{s:?}");
        fewer |= i > 20 && s.entries < 20;
    }
    assert!(fewer, "the byte bound took entries before the entry bound");
    assert!(get(&c, "k99", 0).is_some(), "the newest stay");
    assert!(get(&c, "k0", 0).is_none(), "the oldest went first");
    let t = c.reserve("big").unwrap();
    c.fill("big", t, Some(&record(i64::MAX, &"x".repeat(1600))));
    assert!(
        get(&c, "big", 0).is_none(),
        "larger than an eighth of the bytes"
    );
}

/// A hit hands out the entry's one parsed copy, without copying it; an own update
/// makes a new one with the update, and the copy handed out before stays as it was.
#[test]
fn hits_share_one_parsed_copy_until_an_update() {
    let c = Cache::new(LocalCache::default());
    let t = c.reserve("k").unwrap();
    let filled = c.fill("k", t, Some(&record(i64::MAX, "1"))).unwrap();
    let (a, b) = (parsed(&c, "k").unwrap(), parsed(&c, "k").unwrap());
    assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &filled));
    assert_eq!(a.data.get("a").map(String::as_str), Some("1"));
    assert_eq!(a.handle.to_string(), HANDLE);
    let mut p = Patch::default();
    p.set_fields([("d:a".to_owned(), "2".to_owned())]);
    c.updated("k", &p, 5, Duration::from_millis(10), 4);
    let after = parsed(&c, "k").unwrap();
    assert!(!Arc::ptr_eq(&a, &after));
    assert_eq!(after.data.get("a").map(String::as_str), Some("2"));
    assert_eq!(after.expires_ms, 15);
    assert_eq!(a.data.get("a").map(String::as_str), Some("1"));
    // A record the session layer cannot parse is not kept.
    let t = c.reserve("bad").unwrap();
    let mut fields = record(i64::MAX, "1").into_fields();
    fields.insert("m:n".to_owned(), "1,not-a-handle".to_owned());
    assert!(
        c.fill("bad", t, Some(&Record::from_fields(fields)))
            .is_none()
    );
    assert!(get(&c, "bad", 0).is_none());
}
