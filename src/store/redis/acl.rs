//! The least privilege a store needs: the commands it sends and the commands its
//! scripts call (Redis checks both against the user's ACL), on its namespace's keys.

use super::RedisStore;

/// Commands the store sends itself.
const DIRECT: &[&str] = &[
    // Connection set-up: the version check.
    "info",
    // Scripts: run by SHA, loaded once per server.
    "evalsha",
    "script|load",
    // Session reads (the record and its handle-map check), token checks.
    "hgetall",
    "hmget",
    "hexists",
    // The event stream sink, and reading it back (`recent_events`).
    "xadd",
    "xrevrange",
    // The expiry watcher's subscription.
    "psubscribe",
];

/// The user-tag salt kept in Redis (not needed with a `UserKey`): read, created once,
/// and the safety scan that refuses to mint a new one over existing data.
const SALT: &[&str] = &["get", "set", "scan"];

/// Commands the Lua scripts call (`scripts/*.lua`; a unit test keeps this complete).
const IN_SCRIPTS: &[&str] = &[
    "del",
    "exists",
    "hdel",
    "hexists",
    "hget",
    "hgetall",
    "hkeys",
    "hmget",
    "hset",
    "pexpire",
    "pexpireat",
    "pttl",
    "renamenx",
    "time",
    "xadd",
    "zadd",
    "zcard",
    "zrange",
    "zrangebyscore",
    "zrem",
];

/// A cluster client also reads the slot map; the watcher and the salt check read the
/// node list.
const CLUSTER: &[&str] = &["cluster|slots", "cluster|nodes"];

impl RedisStore {
    /// The ACL rules a Redis user needs for this store (sessions, tokens, events and
    /// the expiry watcher) and nothing more: its namespace's keys, the keyspace
    /// notification channel, and the commands the store sends or its scripts call.
    /// Use it as `ACL SETUSER <name> reset on ><password> <rules>` (`reset` first, so no
    /// older rule of that user survives). On a Cluster, give it to
    /// the user on every node; behind Sentinel, on the master and every replica (any
    /// of them may become the master).
    ///
    /// The watcher cannot then enable `notify-keyspace-events` itself (`CONFIG SET`):
    /// set `notify-keyspace-events Ex` in the server's configuration.
    pub fn acl_rules(&self) -> String {
        let mut commands: Vec<&str> = DIRECT.iter().chain(IN_SCRIPTS).copied().collect();
        if self.user_key.is_none() {
            commands.extend(SALT);
        }
        if self.cluster {
            commands.extend(CLUSTER);
        }
        if self.cache.is_some() {
            // The local cache: RESP3 (for invalidation pushes) and tracking.
            commands.extend(["hello", "client|tracking"]);
        }
        if self.durability.is_some() {
            // Revocations wait for replicas.
            commands.push("wait");
        }
        if self.sentinel {
            // Each new connection checks that the node Sentinel named is a master.
            commands.push("role");
        }
        commands.sort_unstable();
        commands.dedup();
        // The namespace cannot hold glob characters (`validate_namespace`), so the key
        // pattern is exactly the namespace's keys; the channel is the expiry events of
        // the store's own database.
        let mut rules = format!(
            "resetkeys ~{}:* resetchannels &{} -@all",
            self.namespace,
            super::watch::expired_channel(self.db())
        );
        for c in commands {
            rules.push_str(" +");
            rules.push_str(c);
        }
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `redis.call`/`redis.pcall` in the scripts names a command in the list.
    #[test]
    fn the_list_covers_every_command_the_scripts_call() {
        let scripts = [
            include_str!("scripts/delete.lua"),
            include_str!("scripts/events_lib.lua"),
            include_str!("scripts/expired.lua"),
            include_str!("scripts/list.lua"),
            include_str!("scripts/revoke.lua"),
            include_str!("scripts/take.lua"),
            include_str!("scripts/token_lib.lua"),
            include_str!("scripts/tokens.lua"),
            include_str!("scripts/update.lua"),
            include_str!("scripts/write.lua"),
            include_str!("scripts/write_lib.lua"),
            include_str!("scripts/rules.lua"),
        ];
        let mut called = Vec::new();
        let prelude = super::super::protocol::PRELUDE.as_str();
        for script in scripts.into_iter().chain([prelude]) {
            for part in script.split("redis.").skip(1) {
                let Some(rest) = part
                    .strip_prefix("call(")
                    .or_else(|| part.strip_prefix("pcall("))
                else {
                    continue;
                };
                let quoted = rest.trim_start();
                let quote = quoted.chars().next();
                assert!(
                    matches!(quote, Some('\'' | '"')),
                    "a script calls a command it computes: {}",
                    &quoted[..quoted.len().min(40)]
                );
                let name: String = quoted[1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                called.push(name.to_ascii_lowercase());
            }
        }
        assert!(called.len() > 50, "found {} calls", called.len());
        for c in &called {
            assert!(
                IN_SCRIPTS.contains(&c.as_str()),
                "{c} is missing from IN_SCRIPTS"
            );
        }
        for c in IN_SCRIPTS {
            assert!(
                called.iter().any(|x| x == c),
                "{c} is listed but never called"
            );
        }
    }

    #[test]
    fn rules_name_the_namespace() {
        let store = RedisStore::from_url("redis://127.0.0.1:1")
            .unwrap()
            .with_namespace("app")
            .unwrap();
        let rules = store.acl_rules();
        assert!(
            rules.starts_with("resetkeys ~app:* resetchannels"),
            "{rules}"
        );
        assert!(
            rules.contains(" +evalsha") && !rules.contains("cluster"),
            "{rules}"
        );
    }

    /// Least privilege: only the store's database's expiry channel, and the salt's
    /// commands only when the salt lives in Redis.
    #[test]
    fn rules_are_least_privilege() {
        let store = RedisStore::from_url("redis://127.0.0.1:1/3")
            .unwrap()
            .with_namespace("app")
            .unwrap();
        let rules = store.acl_rules();
        assert!(rules.contains(" &__keyevent@3__:expired "), "{rules}");
        assert!(
            !rules.contains('*') || rules.matches('*').count() == 1,
            "{rules}"
        );
        for salt in [" +get", " +set", " +scan"] {
            assert!(rules.contains(salt), "{rules}");
        }
        let keyed = store.with_user_key(crate::UserKey::try_from(&[7; 32][..]).unwrap());
        let rules = keyed.acl_rules();
        for salt in [" +get", " +set", " +scan"] {
            assert!(
                !rules.contains(salt),
                "{salt} without a salt in Redis: {rules}"
            );
        }
        let cluster = RedisStore::cluster_builder(["redis://127.0.0.1:1"])
            .build()
            .unwrap();
        assert!(cluster.acl_rules().contains("&__keyevent@0__:expired"));
        // A glob in the namespace would widen ~<ns>:* to other namespaces.
        for ns in ["a*", "a?", "a[b]", "a\\b"] {
            assert!(
                RedisStore::from_url("redis://127.0.0.1:1")
                    .unwrap()
                    .with_namespace(ns)
                    .is_err(),
                "{ns}"
            );
        }
    }
}
