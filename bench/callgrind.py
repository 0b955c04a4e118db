#!/usr/bin/env python3
"""Instructions per request, by step, under valgrind's callgrind: our server's read
(`GET /read` on a logged-in session, plain and with the local cache) against the bare
handler, tower-sessions and the floor (one `GET` on a shared connection), and the
read-modify-write (`POST /incr`) against tower-sessions'. Callgrind counts instructions,
so the figures are stable on a noisy machine, where CPU time is not.

    python3 bench/callgrind.py          # REQUESTS=2000 by default

Needs valgrind and redis-server (apt-get install -y valgrind redis-server); builds the
servers in release mode. Each server runs under callgrind, gets 200 requests to warm
up, has its counters zeroed, gets REQUESTS requests on one keep-alive connection, and
is dumped; the script prints, per contender, instructions per request in all, then by
step: the functions' own instructions (not their callees'), each function counted for
the first step that names it, so the steps add up to the total.
"""
import glob
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402

ROOT = bench.ROOT
REQUESTS = int(os.environ.get("REQUESTS", "2000"))

# (step, regex on the demangled function name): each function's own instructions (not
# its callees') count for the first step whose regex matches, so the steps add up to the
# total ("everything else" takes the rest).
STEPS = [
    ("HTTP (hyper, axum, tower)", r"hyper::|axum::|tower::|tower_http::|http::|httparse::"),
    ("cookie: parse, verify, hash (sha2, base64)", r"tower_redis_session::cookie::|sha2::|base64::|hmac::|cookie::"),
    ("timeouts (tokio timers)", r"tokio::time::|tokio::runtime::time::|tokio::util::linked_list"),
    ("spans and metrics", r"tracing::|tracing_core::|tracing_subscriber::|tower_redis_session::metrics::"),
    ("Redis client: commands, pipeline, connection", r"redis::cmd::|redis::pipeline::|redis::aio::|redis::connection::|redis::script::|redis::cluster"),
    ("Redis client: reply parsing and decoding", r"redis::parser::|combine::|redis::types::|FromRedisValue|redis::"),
    ("our store: pool, keys, read", r"tower_redis_session::store::redis::"),
    ("record parse (fields into the session)", r"tower_redis_session::store::record::|tower_redis_session::store::values::"),
    ("session layer: service, session state, handler", r"tower_redis_session::"),
    ("tokio: scheduler, I/O driver, tasks", r"tokio::|mio::"),
    ("futures (polling glue)", r"futures_util::|futures_core::|futures::|core::future::|pin_project"),
    ("hashing and maps (SipHash, HashMap)", r"hashbrown::|core::hash::|std::collections::hash|std::hash::"),
    ("allocation (malloc, free, realloc)", r"^(malloc|free|realloc|cfree|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|unlink_chunk.*|__libc_malloc|__libc_free)$|alloc::alloc::|__rust_(alloc|dealloc|realloc)"),
    ("memory copies and compares (libc)", r"^__mem|^mem(cpy|move|cmp|set)|^__str|^str"),
    ("system calls (user side)", r"^__GI___|^__libc_|^syscall|^epoll|^write|^read|^__vdso"),
]


def drive(port, method, path, cookie, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Cookie": cookie} if cookie else {}
    for _ in range(n):
        c.request(method, path, headers=headers)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit(f"{method} {path} answered {r.status}")
    c.close()


def own_costs(out_file):
    """{function: its own Ir} and the total Ir of a callgrind dump, read from the file
    itself: under `fn=` each cost line counts for the function, except the line after a
    `calls=` line (the call's inclusive cost)."""
    names, funcs, fn, after_call, total = {}, {}, None, False, 0
    with open(out_file) as f:
        for line in f:
            if line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.strip())
                if m:
                    if m.group(2):
                        names[m.group(1)] = m.group(2)
                    fn = names.get(m.group(1), m.group(1))
                else:
                    fn = line[3:].strip()
                after_call = False
            elif line.startswith("calls="):
                after_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) >= 2 and fn is not None:
                    if not after_call:
                        ir = int(parts[1])
                        funcs[fn] = funcs.get(fn, 0) + ir
                        total += ir
                after_call = False
            elif re.match(r"c?fn=|c?f[ile]=|cob=|ob=", line):
                # cfn/cfi/cob name the call's target: keep the function; name
                # compression may define an id here too.
                m = re.match(r"c?fn=\((\d+)\) (.*)", line.strip())
                if m:
                    names[m.group(1)] = m.group(2)
    return total, funcs


def steps(total, funcs):
    """Per step, the own instructions of the functions it names; the rest last."""
    rx = [(step, re.compile(pattern)) for step, pattern in STEPS]
    out = {step: 0 for step, _ in STEPS}
    for name, ir in funcs.items():
        for step, r in rx:
            if r.search(name):
                out[step] += ir
                break
    counted = sum(out.values())
    return [(step, out[step]) for step, _ in STEPS] + [("everything else", total - counted)]


def profile(title, cmd, env, method, path, login):
    port = bench.free_port()
    tmp = tempfile.mkdtemp()
    out = os.path.join(tmp, "callgrind.out")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                            env={**os.environ, **env, "PORT": str(port), "RUST_LOG": "error"},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    proc.stdout.readline()  # "listening on ..."
    cookie = bench.cookie_of(port) if login else None
    drive(port, method, path, cookie, 200)
    subprocess.run(["callgrind_control", "--zero", str(proc.pid)], capture_output=True, check=True)
    drive(port, method, path, cookie, REQUESTS)
    subprocess.run(["callgrind_control", "--dump", str(proc.pid)], capture_output=True, check=True)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    # The dump made after --zero: the newest file (the kill makes none).
    dump = max(glob.glob(out + "*"), key=os.path.getmtime)
    total, funcs = own_costs(dump)
    return title, total / REQUESTS, [(s, ir / REQUESTS) for s, ir in steps(total, funcs)]


def main():
    bench.need("valgrind", "valgrind")
    bench.need("redis-server", "redis-server")
    print("building (release)...", flush=True)
    subprocess.run(["cargo", "build", "--release", "-q", "--features", "local-cache", "--example", "bench_server"],
                   cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=os.path.join(ROOT, "bench"), check=True)
    ours = os.path.join(ROOT, "target", "release", "examples", "bench_server")
    other = os.path.join(ROOT, "bench", "target", "release", "tower-redis-session-bench")
    redis, rport, rdir = bench.start_redis()
    url = f"redis://127.0.0.1:{rport}"
    try:
        cache = {"REDIS_URL": url, "LOCAL_CACHE": "1"}
        tables = [
            ("read (`GET /read`)", [
                profile("ours", [ours], {"REDIS_URL": url}, "GET", "/read", True),
                profile("ours + local cache", [ours], cache, "GET", "/read", True),
                profile("ours, bare handler", [ours], {"REDIS_URL": url}, "GET", "/plain", True),
                profile("tower-sessions", [other], {"REDIS_URL": url, "CONTENDER": "tower-sessions"}, "GET",
                        "/read", True),
                profile("floor (1 GET)", [other], {"REDIS_URL": url, "CONTENDER": "floor"}, "GET", "/read", False),
            ]),
            ("read-modify-write (`POST /incr`)", [
                profile("ours", [ours], {"REDIS_URL": url}, "POST", "/incr", True),
                profile("ours + local cache", [ours], cache, "POST", "/incr", True),
                profile("tower-sessions", [other], {"REDIS_URL": url, "CONTENDER": "tower-sessions"}, "POST",
                        "/incr", True),
            ]),
        ]
    finally:
        redis.kill()
    names = [s for s, _ in STEPS] + ["everything else"]
    for title, rows in tables:
        print(f"\n{title}: callgrind, {REQUESTS} requests on one keep-alive connection; instructions per request")
        print("| step | " + " | ".join(r[0] for r in rows) + " |")
        print("|---|" + "---|" * len(rows))
        print("| total | " + " | ".join(f"{r[1]:,.0f}" for r in rows) + " |")
        for i, name in enumerate(names):
            print(f"| {name} | " + " | ".join(f"{r[2][i][1]:,.0f}" for r in rows) + " |")


if __name__ == "__main__":
    main()
