#!/usr/bin/env python3
"""Where the update script's Redis time goes: the `update.lua` call of a `POST /incr` on a
logged-in session, run by `redis-benchmark` on an idle Redis, whole and cut short after
each step (the script up to that step, then `return {1}`), each timed by `INFO
commandstats` (`usec_per_call` of `EVALSHA`, medians of 3 runs).

    python3 bench/update_script.py        # CALLS=200000 per run by default
    BIN=/tmp/old/bench_server python3 bench/update_script.py   # another build's script

A build whose script lacks a step's line (an older one) gets only the rows it has.

Needs redis-server and redis-benchmark (apt-get install -y redis-server); builds
`examples/bench_server` in release mode. The script's source and arguments are the ones
the server sends: taken from `MONITOR` while it serves one login and two requests.
"""
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402

CALLS = int(os.environ.get("CALLS", "200000"))
# (step, the first line of update.lua after it): the script is cut before that line.
CUTS = [
    ("+ the prelude and rules (constants, 6 closures)", "local now = clock(1)"),
    ("+ TIME (Redis's clock)", "local touched = 16"),
    ("+ HMGET of m:t, m:l, m:u and the touched field", "local times = {string.match"),
    ("+ m:t and m:l parsed", "local user = stored[3]"),
    ("+ HEXISTS (the handle-map check of a logged-in session)", "local relimit ="),
    ("+ TTL and size rules", "if ARGV[3] == '1' or dels"),
    ("+ HSET of m:t and the value", "redis.call('PEXPIRE', key, ttl)"),
    ("+ PEXPIRE: the whole script", None),
]


def unquote(arg):
    """A MONITOR argument (C-style escapes) as the bytes it stands for, as text."""
    return bytes(arg, "latin1").decode("unicode_escape")


def capture(rport, port):
    """The update script's source and its EVALSHA arguments, from MONITOR."""
    mon = subprocess.Popen(["redis-cli", "-p", str(rport), "MONITOR"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    cookie = bench.cookie_of(port)
    bench.check(port, "/incr", cookie, "POST")
    bench.check(port, "/incr", cookie, "POST")
    time.sleep(0.3)
    mon.terminate()
    lines = mon.communicate()[0].splitlines()
    quoted = lambda line: [unquote(a) for a in re.findall(r'"((?:[^"\\]|\\.)*)"', line)]
    sources = [quoted(l)[2] for l in lines if '"SCRIPT" "LOAD"' in l]
    source = next(s for s in sources if "ARGV[13] '1': read the key once written" in s)
    call = [quoted(l) for l in lines if '"EVALSHA"' in l][-1]
    return source, call[2:]  # after EVALSHA and the sha


def usec_per_call(rport, source, args):
    sha = bench.redis_cmd(rport, "SCRIPT", "LOAD", source).strip()
    runs = []
    for _ in range(3):
        bench.redis_cmd(rport, "CONFIG", "RESETSTAT")
        subprocess.run(["redis-benchmark", "-p", str(rport), "-c", "4", "-P", "16", "-n", str(CALLS), "-q",
                        "EVALSHA", sha, *args], capture_output=True, check=True)
        stats = bench.redis_cmd(rport, "INFO", "commandstats")
        runs.append(float(re.search(r"cmdstat_evalsha:.*usec_per_call=([\d.]+)", stats).group(1)))
    return statistics.median(runs)


def main():
    bench.need("redis-server", "redis-server")
    ours = os.environ.get("BIN")
    if not ours:
        subprocess.run(["cargo", "build", "--release", "-q", "--features", "local-cache", "--example",
                        "bench_server"], cwd=bench.ROOT, check=True)
        ours = os.path.join(bench.ROOT, "target", "release", "examples", "bench_server")
    redis, rport, rdir = bench.start_redis()
    port = bench.free_port()
    server = bench.start([ours], {"PORT": str(port), "REDIS_URL": f"redis://127.0.0.1:{rport}", "RUST_LOG": "error"},
                         bench.ROOT)
    try:
        source, args = capture(rport, port)
        server.kill()
        # The caller's now, so the script's clock check keeps it: refreshed per run.
        now_at = 2  # KEYS count, 2 keys, then ARGV[1]
        print(f"update.lua on Redis {bench.redis_cmd(rport, 'INFO', 'server').split('redis_version:')[1].split()[0]}, "
              f"redis-benchmark -c 4 -P 16 -n {CALLS}, idle; µs per call (commandstats, median of 3)")
        print("| the script up to | µs per call | this step |")
        print("|---|---|---|")
        base = usec_per_call(rport, "return 1", ["0"])
        print(f"| `return 1`, no keys or arguments | {base:.1f} | |")
        bare_args = list(args)
        with_args = usec_per_call(rport, "return 1", bare_args)
        print(f"| `return 1` with the update's 2 keys and 18 arguments | {with_args:.1f} | {with_args - base:+.1f} |")
        before = with_args
        for step, cut in CUTS:
            if cut is not None and cut not in source:
                continue
            body = source if cut is None else source[:source.index(cut)] + "return {1}\n"
            run_args = list(args)
            run_args[1 + now_at] = str(int(time.time() * 1000))
            us = usec_per_call(rport, body, run_args)
            print(f"| {step} | {us:.1f} | {us - before:+.1f} |")
            before = us
    finally:
        server.kill()
        redis.kill()


if __name__ == "__main__":
    main()
