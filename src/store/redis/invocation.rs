//! A call of one of the store's scripts, written straight into its `EVALSHA` command.
//!
//! redis-rs's `ScriptInvocation` keeps one `Vec` per key and argument and copies them
//! into a new command on every call: 18 of a read-modify-write's ~130 heap allocations
//! (tests/allocations.rs, callgrind). A [`redis::Cmd`] keeps every argument in one
//! buffer, so this one builds that command as the arguments come.

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind, ToRedisArgs};

/// `EVALSHA <sha> <number of keys> <keys> <arguments>` of `script`; sent with
/// [`invoke_async`](Self::invoke_async), which loads the script once if Redis does not
/// have it (`NOSCRIPT`), as redis-rs does.
pub(super) struct Invocation<'s> {
    script: &'s Script,
    cmd: Cmd,
}

impl<'s> Invocation<'s> {
    /// The call with its keys (every script here knows how many it takes); arguments
    /// follow with [`arg`](Self::arg).
    pub(super) fn new(script: &'s Script, keys: &[&str]) -> Self {
        let mut cmd = Cmd::with_capacity(24, 512);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        Self { script, cmd }
    }

    /// Appends an argument (`ARGV[n]`, in order).
    pub(super) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Runs the script, loading it first if this Redis does not have it yet.
    pub(super) async fn invoke_async<T: FromRedisValue>(
        &self,
        con: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        match self.cmd.query_async(con).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(con).await?;
                self.cmd.query_async(con).await
            }
            reply => reply,
        }
    }
}

impl std::fmt::Debug for Invocation<'_> {
    /// The script's hash only: keys and arguments may carry secrets (token hashes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocation")
            .field("script", &self.script.get_hash())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes redis-rs's own invocation sends: EVALSHA, the hash, the key count,
    /// the keys, then the arguments.
    #[test]
    fn the_command_is_evalsha_with_keys_then_arguments() {
        let script = Script::new("return KEYS[1]");
        let mut inv = Invocation::new(&script, &["k1", "k2"]);
        inv.arg("a").arg(42_i64);
        let expected = format!(
            "*7\r\n$7\r\nEVALSHA\r\n$40\r\n{}\r\n$1\r\n2\r\n$2\r\nk1\r\n$2\r\nk2\r\n$1\r\na\r\n$2\r\n42\r\n",
            script.get_hash()
        );
        assert_eq!(
            String::from_utf8(inv.cmd.get_packed_command()).unwrap(),
            expected
        );
    }
}
