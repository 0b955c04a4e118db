//! Flash messages (feature `messages`): one-time notices that survive a redirect ("Saved",
//! "Wrong password"), kept in the session until a request reads them. The shape is
//! axum-messages': an extractor with one method per level, read by iterating.
//!
//! ```
//! use axum::response::{IntoResponse, Redirect};
//! use tower_redis_session::messages::Messages;
//!
//! async fn save(messages: Messages) -> impl IntoResponse {
//!     messages.success("Saved");
//!     Redirect::to("/")
//! }
//!
//! async fn page(messages: Messages) -> String {
//!     messages
//!         .into_iter()
//!         .map(|m| format!("{}: {}", m.level, m.message))
//!         .collect::<Vec<_>>()
//!         .join("\n")
//! }
//! ```
//!
//! Messages added in a request are written with the session when the request ends, in
//! the same single store write as the request's other changes. Iterating yields the
//! messages stored before this request, oldest first; each one yielded is gone for the
//! next request, and those not yielded stay. A message added after
//! [`Session::destroy`](crate::Session::destroy) ("You have been signed out") goes into
//! the new, anonymous session that the response starts.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use serde::{Deserialize, Serialize};

use crate::error::SessionError;
use crate::session::Session;

/// The session key that holds the messages (JSON: a list of messages).
const KEY: &str = "__messages";

/// Most messages kept: a message added beyond it drops the oldest, so a page that never
/// shows them cannot grow the session without bound.
const MAX_KEPT: usize = 32;

/// How important a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// For developers.
    Debug,
    /// Informational.
    Info,
    /// An action succeeded.
    Success,
    /// Something to look at.
    Warning,
    /// An action failed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Success => "success",
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

/// Extra data a message carries (a field name, a link), as JSON values.
pub type Metadata = HashMap<String, serde_json::Value>;

/// One message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Its level.
    pub level: Level,
    /// Its text.
    pub message: String,
    /// Its extra data, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// The message's text, so a template renders `{{ message }}` as axum-messages' does.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Default)]
struct Flash {
    /// Stored before this request, not yet yielded.
    unread: VecDeque<Message>,
    /// Added in this request.
    added: Vec<Message>,
    /// Whether the stored list must be rewritten.
    changed: bool,
}

impl Flash {
    /// What the session holds for the next request: the unread, then the added ones,
    /// the newest [`MAX_KEPT`].
    fn kept(&mut self) -> Vec<Message> {
        let mut all: Vec<Message> = self.unread.drain(..).collect();
        all.append(&mut self.added);
        let drop = all.len().saturating_sub(MAX_KEPT);
        all.drain(..drop);
        all
    }
}

/// This request's flash messages: an extractor (needs the
/// [`SessionLayer`](crate::SessionLayer)). Clones share the same messages; extracting
/// it twice in one request gives the same messages too.
#[derive(Clone)]
pub struct Messages {
    flash: Arc<Mutex<Flash>>,
}

impl fmt::Debug for Messages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Messages").finish_non_exhaustive()
    }
}

impl Messages {
    fn flash(&self) -> std::sync::MutexGuard<'_, Flash> {
        self.flash.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a message for a later request (the next one that reads them).
    pub fn push(
        self,
        level: Level,
        message: impl Into<String>,
        metadata: Option<Metadata>,
    ) -> Self {
        {
            let mut f = self.flash();
            f.added.push(Message {
                level,
                message: message.into(),
                metadata,
            });
            f.changed = true;
        }
        self
    }

    /// Adds a [`Level::Debug`] message.
    pub fn debug(self, message: impl Into<String>) -> Self {
        self.push(Level::Debug, message, None)
    }

    /// Adds a [`Level::Info`] message.
    pub fn info(self, message: impl Into<String>) -> Self {
        self.push(Level::Info, message, None)
    }

    /// Adds a [`Level::Success`] message.
    pub fn success(self, message: impl Into<String>) -> Self {
        self.push(Level::Success, message, None)
    }

    /// Adds a [`Level::Warning`] message.
    pub fn warning(self, message: impl Into<String>) -> Self {
        self.push(Level::Warning, message, None)
    }

    /// Adds a [`Level::Error`] message.
    pub fn error(self, message: impl Into<String>) -> Self {
        self.push(Level::Error, message, None)
    }
}

/// Yields the messages stored before this request, oldest first; each one yielded is
/// removed from the session when the request ends.
impl Iterator for Messages {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        let mut f = self.flash();
        let m = f.unread.pop_front()?;
        f.changed = true;
        Some(m)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Messages {
    /// [`SessionError::MissingLayer`] without the session layer; a store failure while
    /// loading the session.
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(m) = parts.extensions.get::<Messages>() {
            return Ok(m.clone());
        }
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(SessionError::MissingLayer)?;
        // A stored list that does not read as messages (written by something else) is
        // replaced rather than failing every page.
        let (unread, changed) = match session.get::<VecDeque<Message>>(KEY).await {
            Ok(stored) => (stored.unwrap_or_default(), false),
            Err(SessionError::Deserialize { .. }) => (VecDeque::new(), true),
            Err(e) => return Err(e),
        };
        let had = !unread.is_empty() || changed;
        let messages = Self {
            flash: Arc::new(Mutex::new(Flash {
                unread,
                added: Vec::new(),
                changed,
            })),
        };
        let flash = messages.flash.clone();
        session.before_commit(Box::new(move || {
            let mut f = flash.lock().unwrap_or_else(PoisonError::into_inner);
            if !f.changed {
                return None;
            }
            let kept = f.kept();
            if kept.is_empty() {
                return had.then(|| (KEY.to_owned(), None));
            }
            let json = serde_json::to_string(&kept).ok()?;
            Some((KEY.to_owned(), Some(json)))
        }));
        parts.extensions.insert(messages.clone());
        Ok(messages)
    }
}
