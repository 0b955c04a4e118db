//! The cache's bounded map: entries by key and by user slot, oldest first, with their
//! byte accounting.

use super::*;

/// Bytes counted per field besides its name and value (map and string overhead).
const FIELD_OVERHEAD: usize = 48;

/// A reservation for the reply of one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(pub(super) u64);

pub(super) enum State {
    /// A read is in flight; its reply may fill the slot if no other operation of this
    /// process changed a session since it was sent (same epoch).
    Pending {
        epoch: u64,
        /// When the read was sent: the staleness bound counts from here, as Redis may
        /// have answered from a state this old.
        sent: Instant,
    },
    Ready {
        /// In the per-field layout, so a patch applies as in `MemoryStore`.
        fields: HashMap<String, String>,
        /// `fields` parsed for the session layer, shared by every read until the
        /// fields change (then parsed again); its `expires_ms` ends the entry.
        parsed: Arc<Loaded>,
        fetched: Instant,
        /// The record's version (writes it has had) that `fields` shows.
        version: u64,
    },
}

/// An update of this process that Redis confirmed, waiting to be applied.
pub(super) struct Written {
    pub(super) patch: Patch,
    pub(super) now_ms: i64,
    pub(super) ttl: Duration,
}

/// Most confirmed updates a slot keeps while an earlier version is still on its way.
pub(super) const MAX_EARLY: usize = 32;

pub(super) struct Slot {
    pub(super) id: u64,
    pub(super) state: State,
    /// Bytes counted against the bound: the fields once ready, plus the early updates.
    pub(super) bytes: usize,
    /// Confirmed updates by the version they made, not yet applied: they arrived before
    /// an update Redis ran earlier, or while the read was in flight.
    pub(super) early: BTreeMap<u64, Written>,
}

#[derive(Default)]
pub(super) struct Entries {
    pub(super) map: HashMap<String, Slot>,
    /// The keys of `map` by their slot's key prefix (`<ns>:{<tag>}:s:`), so forgetting
    /// a user's slot touches only its own entries.
    pub(super) by_slot: HashMap<String, HashSet<String>>,
    /// Keys in the order they were reserved, with the slot id then: the eviction order.
    pub(super) order: VecDeque<(String, u64)>,
    pub(super) bytes: usize,
    pub(super) next: u64,
    /// Bumped before and after every store operation other than a load or an update.
    pub(super) epoch: u64,
}

/// The prefix shared by the keys of one slot's sessions: `<ns>:{<tag>}:s:`.
pub(super) fn slot_of(key: &str) -> &str {
    key.rfind(":s:").map_or(key, |i| &key[..i + 3])
}

impl Entries {
    pub(super) fn insert(&mut self, key: String, slot: Slot) {
        self.bytes += slot.bytes;
        self.by_slot
            .entry(slot_of(&key).to_owned())
            .or_default()
            .insert(key.clone());
        if let Some(old) = self.map.insert(key, slot) {
            self.bytes -= old.bytes;
        }
    }

    pub(super) fn remove(&mut self, key: &str) -> bool {
        match self.map.remove(key) {
            Some(slot) => {
                self.bytes -= slot.bytes;
                let prefix = slot_of(key);
                if let Some(keys) = self.by_slot.get_mut(prefix) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.by_slot.remove(prefix);
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Removes every entry of the slot `prefix`; whether there was one.
    pub(super) fn remove_slot(&mut self, prefix: &str) -> bool {
        let Some(keys) = self.by_slot.remove(prefix) else {
            return false;
        };
        for k in &keys {
            if let Some(slot) = self.map.remove(k) {
                self.bytes -= slot.bytes;
            }
        }
        true
    }

    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.by_slot.clear();
        self.order.clear();
        self.bytes = 0;
        self.epoch += 1;
    }

    /// Applies the slot's early updates that now come next, then settles its size; a
    /// slot too large goes.
    pub(super) fn catch_up(&mut self, key: &str, limits: &LocalCache) {
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        let mut held = key.len();
        if let State::Ready {
            fields,
            parsed,
            version,
            ..
        } = &mut slot.state
        {
            let before = *version;
            while let Some(w) = slot.early.remove(&(*version + 1)) {
                w.patch.apply_to(fields);
                let expires = w.now_ms.saturating_add(crate::time::millis(w.ttl));
                fields.insert(record::LAST_SEEN.to_owned(), w.now_ms.to_string());
                fields.insert(record::EXPIRES.to_owned(), expires.to_string());
                *version += 1;
            }
            if *version != before {
                match parse(fields) {
                    Some(p) => *parsed = p,
                    None => {
                        self.remove(key);
                        return;
                    }
                }
            }
            held = size_of(key, fields);
        }
        // Updates still waiting count too: they are memory a client's writes make.
        held += slot
            .early
            .values()
            .map(|w| patch_size(&w.patch))
            .sum::<usize>();
        let old = std::mem::replace(&mut slot.bytes, held);
        let too_big = held > limits.max_bytes / 8 || slot.early.len() > MAX_EARLY;
        self.bytes = self.bytes - old + held;
        if too_big {
            self.remove(key);
            return;
        }
        self.shrink(limits);
    }

    /// Drops the oldest entries until both bounds hold.
    pub(super) fn shrink(&mut self, limits: &LocalCache) {
        while self.map.len() > limits.max_entries || self.bytes > limits.max_bytes {
            let Some((key, id)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&key).is_some_and(|s| s.id == id) {
                self.remove(&key);
            }
        }
        // Order records of keys that were removed or re-reserved pile up otherwise.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, id)| map.get(k).is_some_and(|s| s.id == *id));
        }
    }
}

/// The bytes an entry of `fields` holds: the fields, and their parsed copy, which holds
/// about as much again.
pub(super) fn size_of(key: &str, fields: &HashMap<String, String>) -> usize {
    key.len()
        + 2 * fields
            .iter()
            .map(|(k, v)| k.len() + v.len() + FIELD_OVERHEAD)
            .sum::<usize>()
}

/// `fields` parsed for the session layer; `None` if they are no session.
pub(super) fn parse(fields: &HashMap<String, String>) -> Option<Arc<Loaded>> {
    Loaded::parse(Record::from_fields(fields.clone())).map(Arc::new)
}

pub(super) fn patch_size(patch: &Patch) -> usize {
    patch
        .set()
        .iter()
        .map(|(k, v)| k.len() + v.len() + FIELD_OVERHEAD)
        .sum::<usize>()
        + patch
            .delete()
            .iter()
            .map(|k| k.len() + FIELD_OVERHEAD)
            .sum::<usize>()
}
