#!/usr/bin/env python3
"""A/B of two builds of bench_server on one Redis: read and read-modify-write, the
builds alternating every round, medians reported (runs on a shared VM vary too much
for one round to decide).

    python3 bench/ab.py OLD_BIN NEW_BIN          # ROUNDS=5 DURATION=5 by default

Build each side with `cargo build --release --example bench_server` (for an older
commit: `git worktree add /tmp/old <commit>` and `CARGO_TARGET_DIR=/tmp/oldtarget`).
Prints, per route and build, the median req/s, the Redis CPU per request by `INFO
commandstats` and the redis-server process's CPU per request (`/proc/<pid>/stat`).
"""
import os
import shutil
import statistics
import sys

os.environ.setdefault("DURATION", "5")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the shared helpers; DURATION is read at import)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    bench.need("wrk", "wrk")
    bench.need("redis-server", "redis-server")
    rounds = int(os.environ.get("ROUNDS", "5"))
    redis, rport, rdir = bench.start_redis()
    url = f"redis://127.0.0.1:{rport}"
    servers = {}
    try:
        for name, path in (("A", sys.argv[1]), ("B", sys.argv[2])):
            port = bench.free_port()
            proc = bench.start([path], {"PORT": str(port), "REDIS_URL": url, "RUST_LOG": "error"},
                               os.getcwd())
            servers[name] = (port, proc)
        results = {}
        for rnd in range(rounds):
            for path, method in (("/read", "GET"), ("/incr", "POST")):
                for name in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                    port, proc = servers[name]
                    cookie = bench.cookie_of(port)
                    bench.check(port, path, cookie, method)
                    rps, _, _, _, _, _, usec, _, rcpu = bench.measure(
                        port, path, cookie, method, proc.pid, rport, redis.pid)
                    results.setdefault((path, name), []).append((rps, usec, rcpu))
                    print(f"  round {rnd + 1} {path:6} {name} {rps:9.0f} req/s", flush=True)
        print()
        print(f"wrk -t{bench.THREADS} -c{bench.CONNS} -d{bench.DURATION}s, {rounds} rounds, alternating; "
              f"A = {sys.argv[1]}, B = {sys.argv[2]}")
        print("| route | build | req/s (median) | Redis CPU µs/req (commandstats) | Redis process CPU µs/req |")
        print("|---|---|---|---|---|")
        for (path, name), runs in sorted(results.items()):
            med = lambda i: statistics.median(r[i] for r in runs)
            print(f"| {path} | {name} | {med(0):.0f} | {med(1):.1f} | {med(2):.1f} |")
    finally:
        for _, proc in servers.values():
            proc.kill()
        redis.kill()
        shutil.rmtree(rdir, ignore_errors=True)


if __name__ == "__main__":
    main()
