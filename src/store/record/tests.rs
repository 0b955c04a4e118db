use super::*;

#[test]
fn ttl_is_capped_at_deadline() {
    let mut f = HashMap::new();
    f.insert(DEADLINE.to_owned(), "10500".to_owned());
    let clock = Clock {
        now_ms: 10_000,
        default_idle_ms: 1_800_000,
    };
    assert_eq!(stamp_ttl(&mut f, clock), Some(500));
    assert_eq!(f[EXPIRES], "10500");
    let late = Clock {
        now_ms: 10_500,
        ..clock
    };
    assert_eq!(stamp_ttl(&mut f, late), None);
}

#[test]
fn idle_override_wins_over_default() {
    let mut f = HashMap::new();
    f.insert(IDLE.to_owned(), "7000".to_owned());
    let clock = Clock {
        now_ms: 0,
        default_idle_ms: 1000,
    };
    assert_eq!(stamp_ttl(&mut f, clock), Some(7000));
}

#[test]
fn packed_metadata_reads_like_separate_fields() {
    let handle = SessionHandle::generate().to_string();
    let packed: HashMap<String, String> = [
        (TIMES_FIELD, "2000,1000,12,7".to_owned()),
        (LIMITS_FIELD, "3000,,5000,1".to_owned()),
        (IDENTITY_FIELD, format!("900,{handle}")),
        (USER, "alice".to_owned()),
        ("d:k", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(meta(&packed, EXPIRES), Some("2000"));
    assert_eq!(meta(&packed, LAST_SEEN), Some("1000"));
    assert_eq!(meta(&packed, IDLE), None);
    assert_eq!(meta(&packed, DEADLINE), Some("5000"));
    assert_eq!(meta(&packed, HANDLE), Some(handle.as_str()));
    assert_eq!(meta(&packed, USER), Some("alice"));
    let loaded = Loaded::parse(Record::from_fields(packed.clone())).expect("parses");
    assert_eq!(
        (loaded.created_ms, loaded.expires_ms, loaded.deadline_ms),
        (900, 2000, Some(5000))
    );
    assert_eq!((loaded.idle_ms, loaded.persistent), (None, Some(true)));
    assert_eq!(loaded.data["k"], "1");

    let mut fields = packed;
    unpack(&mut fields);
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    // The store's own size, index score and version stay behind.
    assert_eq!(
        names,
        [
            "d:k", CREATED, DEADLINE, EXPIRES, HANDLE, PERSISTENT, LAST_SEEN, USER
        ]
    );
    assert_eq!(fields[HANDLE], handle);
}

#[test]
fn clear_keeps_metadata() {
    let mut f: HashMap<_, _> = [("d:a", "1"), ("m:h", "x")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let p = Patch {
        clear_data: true,
        set: vec![("d:b".into(), "2".into())],
        ..Patch::default()
    };
    p.apply_to(&mut f);
    assert!(!f.contains_key("d:a"));
    assert_eq!(f["d:b"], "2");
    assert_eq!(f["m:h"], "x");
}

/// One name per meaning: a packed record's details (`m:x`, a field of its own) are not
/// the index score packed in `m:l`, so `Record::get(DETAILS)` answers the same on both
/// stores, and unpacking keeps the details.
#[test]
fn details_are_not_the_packed_index_score() {
    let details = r#"{"device":"laptop"}"#;
    let packed: HashMap<String, String> = [
        (TIMES_FIELD, "2000,1000,12,7".to_owned()),
        (LIMITS_FIELD, "3000,,5000,1".to_owned()),
        (DETAILS, details.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let record = Record::from_fields(packed);
    assert_eq!(record.get(DETAILS), Some(details));
    assert_eq!(
        record.unpacked().get(DETAILS).map(String::as_str),
        Some(details)
    );
}

/// Redis stores a user agent in pieces of at most 64 bytes, cut at character
/// boundaries; the pieces a shorter one leaves unused are deleted, and unpacking joins
/// them again.
#[test]
fn a_user_agent_is_stored_in_pieces() {
    let mut patch = Patch::default();
    let ua = format!("{}é{}", "a".repeat(63), "b".repeat(70));
    patch.set_fields([
        (USER_AGENT.to_owned(), ua.clone()),
        ("d:k".into(), "1".into()),
    ]);
    let stored = split_user_agent(&patch);
    let pieces: Vec<&(String, String)> = stored
        .set
        .iter()
        .filter(|(f, _)| f.starts_with(USER_AGENT))
        .collect();
    assert_eq!(pieces.len(), 3);
    assert_eq!(pieces[0], &(USER_AGENT.to_owned(), "a".repeat(63)));
    assert!(pieces.iter().all(|(_, v)| v.len() <= PIECE));
    assert_eq!(stored.delete, [USER_AGENT_PIECES[3]]);
    let mut fields: HashMap<String, String> = stored.set.iter().cloned().collect();
    unpack(&mut fields);
    assert_eq!(fields[USER_AGENT], ua);
    assert!(!fields.contains_key(USER_AGENT_PIECES[1]));

    let mut short = Patch::default();
    short.set_fields([(USER_AGENT.to_owned(), "curl/8".to_owned())]);
    assert_eq!(split_user_agent(&short).delete, &USER_AGENT_PIECES[1..]);
    let untouched = Patch::default();
    assert!(matches!(
        split_user_agent(&untouched),
        std::borrow::Cow::Borrowed(_)
    ));
}
