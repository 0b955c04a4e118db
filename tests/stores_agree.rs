//! `MemoryStore` and `RedisStore` keep one contract: random sequences of store
//! operations (create, update, rotate, login with a cap, delete, take, load, list,
//! revoke) run on both, and every answer and every record must agree. Both stores get
//! the same user key, so user tags, and so keys, are the same on both.

mod common;

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use tower_redis_session::store::{Clock, Patch, Revoke, WriteMode, WriteOutcome, rules};
use tower_redis_session::{
    LimitPolicy, ListCursor, SessionHandle, SessionKey, SessionLimit, SessionStore,
};

const USERS: [&str; 2] = ["ann", "bob"];
/// Secrets of the logical sessions: a key is (a tag, one of these).
const SECRETS: usize = 3;

#[derive(Clone, Copy, Debug)]
enum Tag {
    /// The anonymous tag shared by every anonymous key of a case.
    Anon,
    User(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Create(Tag, usize, Vec<(u8, u8)>),
    Update(Tag, usize, Vec<(u8, u8)>, Vec<u8>, bool),
    Rotate(Tag, usize, usize),
    Login(usize, usize, Option<(usize, bool)>),
    Delete(Tag, usize),
    Take(Tag, usize),
    Load(Tag, usize),
    List(usize),
    RevokeAll(usize),
    RevokeOthers(usize, usize),
    RevokeHandle(usize, usize),
}

fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![Just(Tag::Anon), (0..USERS.len()).prop_map(Tag::User)]
}

fn data() -> impl Strategy<Value = Vec<(u8, u8)>> {
    prop::collection::vec((0u8..3, 0u8..4), 0..3)
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SECRETS;
    let u = 0..USERS.len();
    prop_oneof![
        3 => (tag(), s.clone(), data()).prop_map(|(t, i, d)| Op::Create(t, i, d)),
        4 => (
            tag(),
            s.clone(),
            data(),
            prop::collection::vec(0u8..3, 0..3),
            prop::bool::weighted(0.2)
        )
            .prop_map(|(t, i, d, del, clear)| Op::Update(t, i, d, del, clear)),
        1 => (tag(), s.clone(), s.clone()).prop_map(|(t, a, b)| Op::Rotate(t, a, b)),
        3 => (
            u.clone(),
            s.clone(),
            prop::option::of((1usize..3, any::<bool>()))
        )
            .prop_map(|(u, i, l)| Op::Login(u, i, l)),
        1 => (tag(), s.clone()).prop_map(|(t, i)| Op::Delete(t, i)),
        1 => (tag(), s.clone()).prop_map(|(t, i)| Op::Take(t, i)),
        1 => (tag(), s.clone()).prop_map(|(t, i)| Op::Load(t, i)),
        1 => u.clone().prop_map(Op::List),
        1 => u.clone().prop_map(Op::RevokeAll),
        1 => (u.clone(), s.clone()).prop_map(|(u, i)| Op::RevokeOthers(u, i)),
        1 => (u, s).prop_map(|(u, i)| Op::RevokeHandle(u, i)),
    ]
}

/// One store with the names a case needs.
struct World<S> {
    store: S,
    anon: String,
    user_tags: Vec<String>,
}

/// The secret of logical session `i` (the same on both stores).
fn secret(case: u64, i: usize) -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&case.to_le_bytes());
    bytes[8] = i as u8;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The handle a session created (or logged in) at logical index `i` by step `step` gets:
/// unique per write, as the library's random handles are. (A handle reused by two live
/// sessions, which the library never makes, is where the stores may differ: Redis
/// revokes the one its handle map names, the memory store every match.)
fn handle(case: u64, i: usize, step: usize) -> SessionHandle {
    <SessionHandle as std::str::FromStr>::from_str(&format!(
        "00000000-0000-4000-8000-{:06x}{:02x}{:04x}",
        case % 0xff_ffff,
        i,
        step
    ))
    .unwrap()
}

impl<S: SessionStore> World<S> {
    async fn new(store: S, case: u64) -> Self {
        let mut user_tags = Vec::new();
        for u in USERS {
            user_tags.push(store.user_tag(u).await.unwrap());
        }
        // A random-looking anonymous tag of 16 characters, distinct per case.
        let anon = format!("anon{:012x}", case);
        Self {
            store,
            anon,
            user_tags,
        }
    }

    fn key(&self, tag: Tag, case: u64, i: usize) -> SessionKey {
        let tag = match tag {
            Tag::Anon => &self.anon,
            Tag::User(u) => &self.user_tags[u],
        };
        SessionKey::from_cookie_value(&format!("{tag}.{}", secret(case, i))).unwrap()
    }

    /// Every logical session's record and both users' listings: the whole state.
    async fn snapshot(&self, case: u64, now_ms: i64) -> String {
        let mut out = String::new();
        for t in [Tag::Anon, Tag::User(0), Tag::User(1)] {
            for i in 0..SECRETS {
                let r = self.store.load(&self.key(t, case, i)).await.unwrap();
                out.push_str(&format!("{t:?}/{i}: {}\n", record(r)));
            }
        }
        for u in 0..USERS.len() {
            out.push_str(
                &self
                    .run(
                        &Op::List(u),
                        case,
                        Clock {
                            now_ms,
                            default_idle_ms: 0,
                        },
                        handle(case, 0, 0),
                    )
                    .await,
            );
            out.push('\n');
        }
        out
    }

    /// Runs `op` and describes its answer (store-specific details normalized away). `h`
    /// is the handle a create or login writes, or the one a revocation by handle names.
    async fn run(&self, op: &Op, case: u64, clock: Clock, h: SessionHandle) -> String {
        let s = &self.store;
        let data_patch = |d: &[(u8, u8)]| {
            let mut p = Patch::default();
            p.set_fields(
                d.iter()
                    .map(|(k, v)| (format!("d:k{k}"), format!("\"v{v}\""))),
            );
            p
        };
        match op {
            Op::Create(t, i, d) => {
                let mut p = data_patch(d);
                p.set_fields([
                    ("m:h".to_owned(), h.to_string()),
                    ("m:c".to_owned(), clock.now_ms.to_string()),
                ]);
                outcome(
                    s.write(&self.key(*t, case, *i), WriteMode::Create, &p, clock)
                        .await,
                )
            }
            Op::Update(t, i, d, del, clear) => {
                let mut p = data_patch(d);
                p.delete_fields(del.iter().map(|k| format!("d:k{k}")));
                if *clear {
                    p.clear_all_data();
                }
                outcome(
                    s.write(&self.key(*t, case, *i), WriteMode::Update, &p, clock)
                        .await,
                )
            }
            Op::Rotate(t, a, b) => {
                let from = self.key(*t, case, *a);
                let to = self.key(*t, case, *b);
                outcome(
                    s.write(
                        &to,
                        WriteMode::Rotate { from: &from },
                        &Patch::default(),
                        clock,
                    )
                    .await,
                )
            }
            Op::Login(u, i, limit) => {
                let mut p = Patch::default();
                p.set_fields([
                    ("m:h".to_owned(), h.to_string()),
                    ("m:c".to_owned(), clock.now_ms.to_string()),
                    ("m:u".to_owned(), USERS[*u].to_owned()),
                ]);
                let limit = limit.map(|(max, evict)| SessionLimit {
                    max,
                    policy: if evict {
                        LimitPolicy::EvictOldest
                    } else {
                        LimitPolicy::Reject
                    },
                });
                let key = self.key(Tag::User(*u), case, *i);
                outcome(s.write(&key, WriteMode::Login { limit }, &p, clock).await)
            }
            Op::Delete(t, i) => {
                let r = s.delete(&self.key(*t, case, *i)).await.unwrap();
                // A logout reports the handle and user; Redis returns only those.
                format!(
                    "{:?}",
                    r.map(|r| (
                        r.get("m:h").map(str::to_owned),
                        r.get("m:u").map(str::to_owned)
                    ))
                )
            }
            Op::Take(t, i) => record(s.take(&self.key(*t, case, *i)).await.unwrap()),
            Op::Load(t, i) => record(s.load(&self.key(*t, case, *i)).await.unwrap()),
            Op::List(u) => {
                let page = s
                    .list_user(
                        &self.user_tags[*u],
                        USERS[*u],
                        ListCursor::default(),
                        clock.now_ms,
                    )
                    .await
                    .unwrap();
                let mut handles: Vec<String> =
                    page.sessions.iter().map(|i| i.handle.to_string()).collect();
                handles.sort();
                format!("{handles:?}")
            }
            Op::RevokeAll(u) => revoked(
                s.revoke_user(&self.user_tags[*u], USERS[*u], Revoke::All, clock.now_ms)
                    .await,
            ),
            Op::RevokeOthers(u, i) => {
                let keep = self.key(Tag::User(*u), case, *i);
                revoked(
                    s.revoke_user(
                        &self.user_tags[*u],
                        USERS[*u],
                        Revoke::AllExcept(&keep),
                        clock.now_ms,
                    )
                    .await,
                )
            }
            Op::RevokeHandle(u, _) => revoked(
                s.revoke_user(
                    &self.user_tags[*u],
                    USERS[*u],
                    Revoke::Handle(h),
                    clock.now_ms,
                )
                .await,
            ),
        }
    }
}

fn outcome(w: Result<WriteOutcome, tower_redis_session::StoreError>) -> String {
    match w.unwrap() {
        WriteOutcome::Written { ttl, mut evicted } => {
            evicted.sort();
            format!("written {ttl:?} evicted {evicted:?}")
        }
        other => format!("{other:?}"),
    }
}

/// A record's fields, without the two Redis keeps for itself (index score, data size).
fn record(r: Option<tower_redis_session::store::Record>) -> String {
    match r {
        None => "none".into(),
        Some(r) => {
            let fields: BTreeMap<_, _> = r.unpacked().into_iter().collect();
            format!("{fields:?}")
        }
    }
}

fn revoked(r: Result<Vec<SessionHandle>, tower_redis_session::StoreError>) -> String {
    let mut handles = r.unwrap();
    handles.sort();
    format!("{handles:?}")
}

/// Runs `ops` on both stores, checking every answer and the whole state after each.
fn check(ops: &[Op]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (case, memory, redis) = common::stores::twin_stores("agree", 9);
    rt.block_on(async {
        let (m, r) = (
            World::new(memory, case).await,
            World::new(redis, case).await,
        );
        assert_eq!(m.user_tags, r.user_tags, "one user key, one tag");
        let mut now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // The handle last written at each logical index, for revocations by handle.
        let mut written: std::collections::HashMap<usize, SessionHandle> = Default::default();
        for (step, op) in ops.iter().enumerate() {
            // Distinct times, so "least recently active" has no ties.
            now += 3;
            let clock = Clock {
                now_ms: now,
                default_idle_ms: 600_000,
            };
            let h = match op {
                Op::Create(_, i, _) | Op::Login(_, i, _) => {
                    let h = handle(case, *i, step + 1);
                    written.insert(*i, h);
                    h
                }
                Op::RevokeHandle(_, i) => written.get(i).copied().unwrap_or(handle(case, *i, 0)),
                _ => handle(case, 0, 0),
            };
            let (a, b) = (
                m.run(op, case, clock, h).await,
                r.run(op, case, clock, h).await,
            );
            assert_eq!(
                a, b,
                "step {step}: {op:?} (memory left, redis right) in {ops:?}"
            );
            let (a, b) = (m.snapshot(case, now).await, r.snapshot(case, now).await);
            assert_eq!(
                a, b,
                "after step {step}: {op:?} (memory left, redis right) in {ops:?}"
            );
        }
    });
}

#[test]
fn the_least_recently_active_is_evicted_on_both() {
    check(&[
        Op::Login(0, 0, None),
        Op::Login(0, 1, None),
        Op::Update(Tag::User(0), 0, vec![(0, 1)], vec![], false),
        Op::Login(0, 2, Some((2, true))),
        Op::Login(1, 0, None),
        Op::Login(1, 1, None),
        Op::Login(1, 2, Some((2, true))),
    ]);
}

#[test]
fn a_deleted_field_is_gone_on_both() {
    check(&[
        Op::Create(Tag::Anon, 0, vec![(0, 0), (1, 1)]),
        Op::Update(Tag::Anon, 0, vec![], vec![0], false),
        Op::Login(0, 1, Some((1, true))),
        Op::Login(0, 2, Some((1, true))),
        Op::Update(Tag::User(0), 2, vec![(2, 3)], vec![], true),
    ]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn memory_and_redis_agree(ops in prop::collection::vec(op(), 1..40)) {
        check(&ops);
    }
}

/// The rules as the scripts run them (`rules.lua`, evaluated in the test's Redis) and as
/// Rust does (`store::rules`): `[ttl, merged size, slack]` for one case.
fn lua_rules(conn: &mut redis::Connection, case: &RulesCase) -> Vec<i64> {
    // The tail: the case's TTL, then the size a write computes incrementally from the
    // stored size and the fields the patch touches, then the slack of the TTL.
    let script = format!(
        "{}\n{}",
        rules::RULES_LUA,
        r#"
local now = tonumber(ARGV[1])
local ttl = ttl_of(ARGV[2], ARGV[3], ARGV[4], now)
local n, at = tonumber(ARGV[7]), 8
local names, olds = {}, {}
for k = 1, n do
  names[k] = ARGV[at]
  olds[k] = ARGV[at + 1] == '1' and ARGV[at + 2]
  at = at + 3
end
local set = set_bytes(ARGV, at, #ARGV)
return {ttl, merged_size(ARGV[5], set, ARGV[6], names, 1, olds, 1, n), slack_of(math.max(ttl, 0))}
"#
    );
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(0).arg(case.now);
    cmd.arg(case.idle.map(|i| i.to_string()).unwrap_or_default());
    cmd.arg(case.deadline.map(|d| d.to_string()).unwrap_or_default());
    cmd.arg(case.default_idle);
    let stored: HashMap<String, String> = case.stored.iter().cloned().collect();
    cmd.arg(rules::data_size(&stored));
    cmd.arg(if case.clear { "1" } else { "0" });
    let touched = case.touched();
    cmd.arg(touched.len());
    for f in &touched {
        let old = stored.get(f.as_str());
        cmd.arg(f).arg(if old.is_some() { "1" } else { "0" });
        cmd.arg(old.map_or("", String::as_str));
    }
    for (f, v) in &case.set {
        cmd.arg(f).arg(v);
    }
    cmd.query(conn).unwrap()
}

#[derive(Clone, Debug)]
struct RulesCase {
    now: i64,
    idle: Option<i64>,
    default_idle: i64,
    deadline: Option<i64>,
    /// The stored fields (data ones `d:…`, plus metadata the size ignores).
    stored: Vec<(String, String)>,
    clear: bool,
    set: Vec<(String, String)>,
    delete: Vec<String>,
}

impl RulesCase {
    /// The data fields the patch sets or deletes, each once.
    fn touched(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let fields = self.set.iter().map(|(f, _)| f).chain(&self.delete);
        for f in fields.filter(|f| f.starts_with("d:")) {
            if !names.contains(f) {
                names.push(f.clone());
            }
        }
        names
    }

    /// What Rust says: the TTL rule, the size of the merged record counted from scratch,
    /// and the documented slack (half the TTL).
    fn rust(&self) -> Vec<i64> {
        let ttl = rules::ttl(
            self.idle.unwrap_or(self.default_idle),
            self.deadline,
            self.now,
        );
        let mut merged: HashMap<String, String> = self.stored.iter().cloned().collect();
        if self.clear {
            merged.retain(|k, _| !k.starts_with("d:"));
        }
        for f in &self.delete {
            merged.remove(f);
        }
        merged.extend(self.set.iter().cloned());
        let size = rules::data_size(&merged) as i64;
        vec![ttl, size, ttl.max(0) / 2]
    }
}

fn rules_case() -> impl Strategy<Value = RulesCase> {
    // Keys from a small set, so patches meet stored fields; values with multi-byte
    // characters, so bytes and characters differ.
    let field = prop_oneof![
        4 => (0u8..4).prop_map(|k| format!("d:k{k}")),
        1 => Just("m:u".to_owned()),
    ];
    let value = "[a-zé€]{0,12}";
    let pairs = prop::collection::vec((field.clone(), value), 0..5);
    (
        1_600_000_000_000i64..1_900_000_000_000,
        prop::option::of(1i64..10_000_000_000),
        1i64..10_000_000_000,
        prop::option::of(-1_000_000i64..20_000_000_000),
        pairs.clone(),
        prop::bool::weighted(0.2),
        pairs,
        prop::collection::vec(field, 0..3),
    )
        .prop_map(
            |(now, idle, default_idle, deadline, stored, clear, set, delete)| {
                // A patch sets each field once (the session's changes are a map).
                let mut once: Vec<(String, String)> = Vec::new();
                for (f, v) in set {
                    if !once.iter().any(|(g, _)| *g == f) {
                        once.push((f, v));
                    }
                }
                RulesCase {
                    now,
                    idle,
                    default_idle,
                    deadline: deadline.map(|d| now + d),
                    stored,
                    clear,
                    set: once,
                    delete,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// One copy of each rule: the TTL with its deadline cap, the size limit's count
    /// (kept incrementally by the scripts, counted from scratch by Rust) and the index
    /// slack agree between `store/rules.rs` and `scripts/rules.lua`.
    #[test]
    fn rust_and_lua_rules_agree(case in rules_case()) {
        let mut conn = redis::Client::open(common::RedisServer::shared().url())
            .unwrap()
            .get_connection()
            .unwrap();
        prop_assert_eq!(lua_rules(&mut conn, &case), case.rust());
    }
}
