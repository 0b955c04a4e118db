//! Cookie keys and their rotation ([`KeyRing`]), and session-cookie parsing.
//!
//! Every `Cookie` header is read. The session cookie is accepted only if exactly one is
//! present, it is at most 256 bytes, its signature or encryption checks
//! out, and its value has the exact `<tag>.<secret>` format. Anything else is "no
//! session": logged as suspicious without the value, and the store is never asked.

use std::fmt;

#[doc(no_inline)]
pub use cookie::Key;
use cookie::{Cookie, CookieJar};
use http::{HeaderMap, HeaderValue, header};

use crate::config::CookieConfig;
use crate::id::SessionId;

/// Longest session cookie value looked at; longer ones are rejected unread.
pub(crate) const MAX_VALUE_LEN: usize = 256;

/// Whether a cookie was opened with the newest key of its [`KeyRing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Newest {
    /// The newest key (or no key at all, for plain cookies).
    Yes,
    /// An older key still accepted: the cookie is re-issued under the newest one.
    No,
}

/// The keys of signed or private cookies, for rotation without logging anyone out: new
/// cookies are sealed with the newest key; cookies under the older keys are still
/// accepted, and re-issued under the newest key on the next response for a live
/// session (any request that reads the session). Remove an old key once the
/// sessions it sealed have been re-issued or have expired (the idle timeout, or the
/// absolute lifetime for "remember me" sessions); a cookie under a removed key is "no
/// session", refused without asking the store.
///
/// ```rust
/// use tower_redis_session::cookie::{Key, KeyRing};
/// # let (new_key, old_key) = (Key::generate(), Key::generate());
/// let keys = KeyRing::from(new_key).with_older(old_key);
/// # let _ = keys;
/// ```
///
/// A single [`Key`] converts into a ring of one.
#[derive(Clone)]
pub struct KeyRing {
    /// Newest first; never empty.
    keys: Vec<Key>,
}

impl KeyRing {
    /// A ring that seals with `newest`.
    fn new(newest: Key) -> Self {
        Self { keys: vec![newest] }
    }

    /// Also accepts cookies sealed with `older` (call it once per older key, newest
    /// first; each is tried in that order).
    #[must_use]
    pub fn with_older(mut self, older: Key) -> Self {
        self.keys.push(older);
        self
    }

    /// The keys, newest first.
    #[cfg(feature = "value-encryption")]
    pub(crate) fn keys(&self) -> &[Key] {
        &self.keys
    }

    fn newest(&self) -> &Key {
        &self.keys[0]
    }

    /// The first key that opens the cookie, and whether it is the newest.
    fn open_with(&self, open: impl Fn(&Key) -> Option<String>) -> Option<(String, Newest)> {
        self.keys.iter().enumerate().find_map(|(i, key)| {
            let newest = if i == 0 { Newest::Yes } else { Newest::No };
            open(key).map(|value| (value, newest))
        })
    }
}

impl From<Key> for KeyRing {
    fn from(key: Key) -> Self {
        Self::new(key)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRing({} keys, redacted)", self.keys.len())
    }
}

/// `<namespace>:<value>`: a namespace never contains `:`.
fn bind(namespace: &str, value: String) -> String {
    let mut s = String::with_capacity(namespace.len() + 1 + value.len());
    s.push_str(namespace);
    s.push(':');
    s.push_str(&value);
    s
}

fn unbind(namespace: &str, payload: String) -> Option<String> {
    payload
        .strip_prefix(namespace)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(str::to_owned)
}

/// How the session id is carried in the cookie value, chosen with
/// [`SessionLayer::with_signed`](crate::SessionLayer::with_signed) and
/// [`SessionLayer::with_private`](crate::SessionLayer::with_private).
///
/// Signed and private cookies also carry the store's namespace inside the signature or
/// encryption, so a genuine cookie of another namespace (e.g. a user cookie sent to the
/// admin layer with the same key and name) is refused without asking the store.
#[derive(Clone)]
pub(crate) enum Codec {
    /// The id as is: 256 random bits need no signature to be unguessable.
    Plain,
    /// The id signed with HMAC-SHA256 (the `cookie` crate's signed jar): forged cookies
    /// are rejected without asking the store.
    Signed(KeyRing),
    /// The id encrypted and authenticated with AES-256-GCM (the `cookie` crate's
    /// private jar).
    Private(KeyRing),
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain => "Plain",
            Self::Signed(_) => "Signed(<key redacted>)",
            Self::Private(_) => "Private(<key redacted>)",
        })
    }
}

fn jar_with(name: &str, value: &str) -> CookieJar {
    let mut jar = CookieJar::new();
    jar.add_original(Cookie::new(name.to_owned(), value.to_owned()));
    jar
}

impl Codec {
    /// Wraps a value for the cookie `name` of `namespace`.
    pub(crate) fn seal(&self, name: &str, namespace: &str, value: String) -> Option<String> {
        let mut jar = CookieJar::new();
        match self {
            Self::Plain => return Some(value),
            Self::Signed(keys) => jar
                .signed_mut(keys.newest())
                .add(Cookie::new(name.to_owned(), bind(namespace, value))),
            Self::Private(keys) => jar
                .private_mut(keys.newest())
                .add(Cookie::new(name.to_owned(), bind(namespace, value))),
        }
        jar.get(name).map(|c| c.value().to_owned())
    }

    /// Unwraps a cookie value; `None` if the signature, encryption or namespace does not
    /// check out under any key. The flag says whether the newest key opened it.
    fn open(&self, name: &str, namespace: &str, value: &str) -> Option<(String, Newest)> {
        let jar = jar_with(name, value);
        match self {
            Self::Plain => Some((value.to_owned(), Newest::Yes)),
            Self::Signed(keys) => keys
                .open_with(|key| unbind(namespace, jar.signed(key).get(name)?.value().to_owned())),
            Self::Private(keys) => keys
                .open_with(|key| unbind(namespace, jar.private(key).get(name)?.value().to_owned())),
        }
    }
}

/// What the request's cookies say about the session.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// No session cookie.
    Absent,
    /// A session cookie that is not ours (reason for the log; the value is never kept).
    Invalid(&'static str),
    /// A well-formed, verified id (the session may still not exist).
    Valid(SessionId),
    /// As `Valid`, sealed under an older key of the ring: re-issued under the newest.
    OldKey(SessionId),
}

/// Reads the session cookie from every `Cookie` header. No I/O.
pub(crate) fn extract(headers: &HeaderMap, name: &str, namespace: &str, codec: &Codec) -> Incoming {
    let mut found: Option<String> = None;
    let mut count = 0usize;
    for header in headers.get_all(header::COOKIE) {
        let text = String::from_utf8_lossy(header.as_bytes());
        for cookie in Cookie::split_parse(text.as_ref()).flatten() {
            if cookie.name() == name {
                count += 1;
                if count == 1 {
                    found = Some(cookie.value().to_owned());
                }
            }
        }
    }
    let Some(raw) = found else {
        return Incoming::Absent;
    };
    if count > 1 {
        return Incoming::Invalid("duplicate session cookies");
    }
    if raw.len() > MAX_VALUE_LEN {
        return Incoming::Invalid("oversized session cookie");
    }
    let Some((opened, newest)) = codec.open(name, namespace, &raw) else {
        return Incoming::Invalid("signature, decryption or namespace check failed");
    };
    match (SessionId::parse(&opened), newest) {
        (Some(id), Newest::Yes) => Incoming::Valid(id),
        (Some(id), Newest::No) => Incoming::OldKey(id),
        (None, _) => Incoming::Invalid("malformed session cookie"),
    }
}

fn base(config: &CookieConfig, value: String) -> Cookie<'static> {
    let mut c = Cookie::new(config.name.clone(), value);
    c.set_path(config.path.clone());
    if let Some(d) = &config.domain {
        c.set_domain(d.clone());
    }
    c.set_secure(config.secure);
    c.set_http_only(config.http_only);
    c.set_same_site(config.same_site);
    c
}

/// `Set-Cookie` for a session; `max_age` makes it persistent.
pub(crate) fn session_cookie(
    config: &CookieConfig,
    value: String,
    max_age: Option<std::time::Duration>,
) -> Option<HeaderValue> {
    let mut c = base(config, value);
    if let Some(age) = max_age {
        // Round up: the cookie must not die before the session does.
        let secs = i64::try_from(age.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
        c.set_max_age(cookie::time::Duration::seconds(secs));
    }
    HeaderValue::from_str(&c.to_string()).ok()
}

/// `Set-Cookie` that removes the session cookie, repeating Path, Domain, Secure,
/// HttpOnly and SameSite so the browser matches and drops it.
pub(crate) fn removal_cookie(config: &CookieConfig) -> Option<HeaderValue> {
    let mut c = base(config, String::new());
    c.make_removal();
    HeaderValue::from_str(&c.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_cookie_among_others_and_headers() {
        let id = SessionId::generate().unwrap();
        let v = format!("a=1; id={}; b=2", id.encode());
        let h = headers(&[b"x=y", v.as_bytes()]);
        assert!(
            matches!(extract(&h, "id", "ns", &Codec::Plain), Incoming::Valid(got) if got == id)
        );
    }

    #[test]
    fn hostile_values_are_invalid_or_absent() {
        let id = SessionId::generate().unwrap().encode();
        let dup = format!("id={id}; id={id}");
        let huge = format!("id={}", "A".repeat(9000));
        let cases: Vec<Vec<u8>> = vec![
            b"id=".to_vec(),
            huge.into_bytes(),
            b"id=\xff\xfe".to_vec(),
            b"id=*?[".to_vec(),
            dup.into_bytes(),
            format!("id={}", &id[1..]).into_bytes(),
        ];
        for c in cases {
            let h = headers(&[&c]);
            assert!(
                matches!(extract(&h, "id", "ns", &Codec::Plain), Incoming::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(&c)
            );
        }
        assert!(matches!(
            extract(&headers(&[b"other=1"]), "id", "ns", &Codec::Plain),
            Incoming::Absent
        ));
    }

    #[test]
    fn the_length_limit_is_exactly_max_value_len() {
        // Refused as oversized one byte past the limit, before any codec runs; at the
        // limit the value reaches the codec (and fails there as malformed).
        let reason = |len: usize| {
            let v = format!("id={}", "A".repeat(len));
            match extract(&headers(&[v.as_bytes()]), "id", "ns", &Codec::Plain) {
                Incoming::Invalid(reason) => reason,
                _ => "accepted",
            }
        };
        // 256 bytes, the documented limit (a literal, so raising the constant fails).
        assert_eq!(reason(257), "oversized session cookie");
        assert_eq!(reason(256), "malformed session cookie");
        // The limit leaves room for the longest genuine value (a private cookie).
        let longest_namespace = "n".repeat(64);
        let sealed = Codec::Private(Key::generate().into())
            .seal(
                "id",
                &longest_namespace,
                SessionId::generate().unwrap().encode(),
            )
            .unwrap();
        assert!(sealed.len() <= MAX_VALUE_LEN, "{}", sealed.len());
    }

    fn roundtrip_and_reject_tampering(codec: Codec) {
        let check = |v: &str| {
            extract(
                &headers(&[format!("id={v}").as_bytes()]),
                "id",
                "ns",
                &codec,
            )
        };
        let id = SessionId::generate().unwrap();
        let sealed = codec.seal("id", "ns", id.encode()).unwrap();
        assert!(sealed.len() <= MAX_VALUE_LEN);
        assert!(matches!(check(&sealed), Incoming::Valid(ref got) if *got == id));
        // Flip one character in the middle.
        let mut bytes = sealed.into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(matches!(check(&tampered), Incoming::Invalid(_)));
        // A plain, unsigned id is refused too.
        assert!(matches!(check(&id.encode()), Incoming::Invalid(_)));
        // A genuine cookie of another namespace (same key, same name) is refused.
        let other = codec.seal("id", "admin", id.encode()).unwrap();
        assert!(matches!(check(&other), Incoming::Invalid(_)));
        let prefix = codec.seal("id", "n", id.encode()).unwrap();
        assert!(
            matches!(check(&prefix), Incoming::Invalid(_)),
            "prefix of the namespace"
        );
    }

    #[test]
    fn signed_roundtrip_and_reject_tampering() {
        roundtrip_and_reject_tampering(Codec::Signed(Key::generate().into()));
    }

    #[test]
    fn private_roundtrip_and_reject_tampering() {
        roundtrip_and_reject_tampering(Codec::Private(Key::generate().into()));
    }

    #[test]
    fn removal_repeats_attributes() {
        let cfg = crate::SessionConfig::default()
            .with_domain("example.com")
            .with_path("/app");
        let v = removal_cookie(&cfg.cookie).unwrap();
        let s = v.to_str().unwrap();
        for part in [
            "id=",
            "Path=/app",
            "Domain=example.com",
            "Secure",
            "HttpOnly",
            "Max-Age=0",
        ] {
            assert!(s.contains(part), "{s}");
        }
    }
}
