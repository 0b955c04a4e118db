//! Without the `local-cache` feature: a cache that cannot exist. `Cache` has no values,
//! so a store's `Option<Arc<Cache>>` is always `None` and every call site below is dead
//! code the compiler removes; the store's read and write paths keep one shape with and
//! without the feature.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::PushInfo;

use crate::store::record::{Loaded, Patch, Record};

/// The cache of one store: none without the feature.
#[derive(Debug)]
pub(crate) enum Cache {}

/// A reservation for the reply of one read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket;

/// What an operation drops from the cache before and after it runs.
#[expect(
    dead_code,
    reason = "the operations name their keys; no cache reads them"
)]
pub(crate) enum Forget {
    Key(String),
    Slot(String),
    Keys(String, String),
}

/// Drops the keys again when the operation ends.
pub(crate) struct ForgetGuard;

impl Cache {
    pub(crate) fn enabled(&self) -> bool {
        match *self {}
    }

    pub(crate) fn disable(&self, _why: &str) {
        match *self {}
    }

    pub(crate) fn get<T>(
        &self,
        _key: &str,
        _now_ms: i64,
        _view: impl FnOnce(&HashMap<String, String>, &Arc<Loaded>) -> T,
    ) -> Option<T> {
        match *self {}
    }

    pub(crate) fn reserve(&self, _key: &str) -> Option<Ticket> {
        match *self {}
    }

    pub(crate) fn fill(
        &self,
        _key: &str,
        _ticket: Ticket,
        _record: Option<&Record>,
    ) -> Option<Arc<Loaded>> {
        match *self {}
    }

    pub(crate) fn updated(
        &self,
        _key: &str,
        _patch: &Patch,
        _now_ms: i64,
        _ttl: Duration,
        _version: u64,
    ) {
        match *self {}
    }

    pub(crate) fn evict(&self, _key: &str) {
        match *self {}
    }

    pub(crate) fn forget(&self, _key: &str) {
        match *self {}
    }

    pub(crate) fn lost_connection(&self) {
        match *self {}
    }

    pub(crate) fn forgetting(&self, _what: Forget) -> ForgetGuard {
        match *self {}
    }

    pub(crate) fn on_push(&self, _push: &PushInfo) {
        match *self {}
    }
}
