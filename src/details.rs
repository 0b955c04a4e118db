//! Display details an application attaches to a session ([`SessionDetails`]): a device
//! name, a coarse location it resolved. Shown in session listings and events; never used
//! for any decision this crate makes.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::SessionError;

/// A small, bounded set of display fields of a session (at most
/// 8 names of up to 32 bytes
/// of ASCII letters, digits, `_`, `-` and `.`, each with a value of 1 to
/// 128 bytes of text without control characters).
///
/// Set with [`Session::set_details`](crate::Session::set_details) at login or later;
/// shown by [`SessionInfo::details`](crate::SessionInfo::details) and in
/// [`SessionEvent::details`](crate::events::SessionEvent::details). They are whatever
/// the application says: display them, never trust them.
///
/// ```
/// use tower_redis_session::SessionDetails;
/// let mut d = SessionDetails::default();
/// d.insert("device", "Alice's phone")?;
/// d.insert("city", "Lyon")?;
/// assert_eq!(d.get("device"), Some("Alice's phone"));
/// # Ok::<(), tower_redis_session::SessionError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct SessionDetails {
    fields: BTreeMap<String, String>,
}

/// Why a detail is refused (the text of [`SessionError::InvalidDetails`]).
const TOO_MANY: &str = "more than 8 fields";
const BAD_NAME: &str = "a name must be 1 to 32 bytes of ASCII letters, digits, '_', '-' and '.'";
const BAD_VALUE: &str = "a value must be 1 to 128 bytes without control characters";

impl SessionDetails {
    /// Most fields.
    const MAX_FIELDS: usize = 8;
    /// Longest name, in bytes.
    const MAX_NAME: usize = 32;
    /// Longest value, in bytes.
    const MAX_VALUE: usize = 128;

    /// Sets `name` to `value`.
    ///
    /// # Errors
    /// [`SessionError::InvalidDetails`] if the name or value breaks the limits, or there
    /// would be more than 8 fields; the details are unchanged on error.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), SessionError> {
        let (name, value) = (name.into(), value.into());
        check(&name, &value).map_err(SessionError::InvalidDetails)?;
        if self.fields.len() >= Self::MAX_FIELDS && !self.fields.contains_key(&name) {
            return Err(SessionError::InvalidDetails(TOO_MANY));
        }
        self.fields.insert(name, value);
        Ok(())
    }

    /// Removes `name`; returns its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.fields.remove(name)
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The fields, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// As stored: a JSON object.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&self.fields).unwrap_or_default()
    }

    /// From the stored JSON; anything that breaks the limits (a record written by
    /// something else) is dropped rather than shown.
    pub(crate) fn from_json(raw: &str) -> Self {
        let fields: BTreeMap<String, String> = serde_json::from_str(raw).unwrap_or_default();
        let mut d = Self::default();
        for (k, v) in fields {
            if d.insert(k, v).is_err() {
                return Self::default();
            }
        }
        d
    }
}

fn check(name: &str, value: &str) -> Result<(), &'static str> {
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b"_-.".contains(&b);
    if name.is_empty() || name.len() > SessionDetails::MAX_NAME || !name.bytes().all(name_char) {
        return Err(BAD_NAME);
    }
    if value.is_empty()
        || value.len() > SessionDetails::MAX_VALUE
        || value.chars().any(char::is_control)
    {
        return Err(BAD_VALUE);
    }
    Ok(())
}

impl fmt::Debug for SessionDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let refused = |r: Result<(), SessionError>| match r {
            Err(SessionError::InvalidDetails(why)) => why,
            other => panic!("{other:?}"),
        };
        let mut d = SessionDetails::default();
        for i in 0..SessionDetails::MAX_FIELDS {
            d.insert(format!("k{i}"), "v").unwrap();
        }
        assert_eq!(refused(d.insert("one-more", "v")), TOO_MANY);
        d.insert("k0", "replaced").unwrap();
        assert_eq!(d.get("k0"), Some("replaced"));
        for (name, value, err) in [
            ("", "v", BAD_NAME),
            ("a b", "v", BAD_NAME),
            ("é", "v", BAD_NAME),
            (&"n".repeat(33), "v", BAD_NAME),
            ("n", "", BAD_VALUE),
            ("n", "a\nb", BAD_VALUE),
            ("n", &"v".repeat(129), BAD_VALUE),
        ] {
            let r = SessionDetails::default().insert(name, value);
            assert_eq!(refused(r), err, "{name:?}");
        }
        let mut ok = SessionDetails::default();
        ok.insert("city", "Zürich").unwrap();
        assert_eq!(SessionDetails::from_json(&ok.to_json()), ok);
        assert!(SessionDetails::from_json("not json").is_empty());
        assert!(SessionDetails::from_json(r#"{"a b":"x"}"#).is_empty());
    }
}
