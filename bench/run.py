#!/usr/bin/env python3
"""Load benchmark: tower-redis-session against tower-sessions (+ its Redis store) and
the one-GET floor, on one Redis, same routes, contenders alternating.

    python3 bench/run.py                 # 10 s per measurement, 5 rounds, 16 connections
    DURATION=5 ROUNDS=1 python3 bench/run.py

Needs wrk and redis-server (apt-get install -y wrk redis-server); builds everything in
release mode. Prints req/s, latency p50/p99 and Redis commands per request (from
INFO commandstats deltas; commands a Lua script runs inside Redis are listed after '+'),
Redis CPU per request (commandstats time, and the redis-server process's CPU, which
includes its network I/O), the server's CPU per request, and Redis memory per session;
figures are medians over the rounds. Then the ratios the performance targets name,
each with its target and whether it is met.
"""
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION = int(os.environ.get("DURATION", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
CONNS = int(os.environ.get("CONNS", "16"))
THREADS = int(os.environ.get("THREADS", "2"))
# Commands that only ever run inside our Lua scripts (reported separately).
SCRIPT_INTERNAL = {"time", "exists", "hset", "hmget", "pexpire", "zadd", "pttl", "hdel", "hkeys",
                   "renamenx", "zrem", "zremrangebyscore", "zrange", "hget", "zrangebyscore", "del",
                   "xadd"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(tool, package):
    if shutil.which(tool) is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True)
        else:
            sys.exit(f"{tool} is missing: apt-get install -y {package}")


def redis_cmd(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True)
    return out.stdout


def commandstats(port):
    """calls per command, plus '__usec': microseconds Redis spent serving the commands
    clients sent. In Redis 7 a script's usec (evalsha) already includes the commands it
    runs, so those (SCRIPT_INTERNAL) are not added again."""
    stats = {"__usec": 0}
    for line in redis_cmd(port, "INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_([^:]+):calls=(\d+),usec=(\d+)", line)
        if m and m.group(1) != "info":
            stats[m.group(1)] = int(m.group(2))
            if m.group(1) not in SCRIPT_INTERNAL:
                stats["__usec"] += int(m.group(3))
    return stats


def start_redis():
    """A redis-server of its own on a free port, without persistence, once it listens:
    (its process, its port, its directory, which the caller removes)."""
    port = free_port()
    rdir = tempfile.mkdtemp()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                              "--dir", rdir], stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    return redis, port, rdir


def run_example_on_own_redis(example):
    """Builds `example` in release mode and runs it with REDIS_URL pointing at a
    redis-server of its own, removed afterwards."""
    need("redis-server", "redis-server")
    # The examples run by themselves (refresh_chain, user_bounds) use tokens.
    subprocess.run(["cargo", "build", "--release", "-q", "--features", "tokens", "--example", example],
                   cwd=ROOT, check=True)
    redis, port, rdir = start_redis()
    try:
        binary = os.path.join(ROOT, "target", "release", "examples", example)
        subprocess.run([binary], env={**os.environ, "REDIS_URL": f"redis://127.0.0.1:{port}"}, check=True)
    finally:
        redis.kill()
        shutil.rmtree(rdir, ignore_errors=True)


def start(cmd, env, cwd):
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on"):
        proc.kill()
        sys.exit(f"{cmd} did not start: {line!r}")
    return proc


def cpu_seconds(pid):
    """utime + stime of a process so far, in seconds (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cookie_of(port, path="/login?user=bench"):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", path)
    r = c.getresponse()
    r.read()
    for k, v in r.getheaders():
        if k.lower() == "set-cookie":
            return v.split(";")[0]
    return None


def check(port, path, cookie, method):
    """One request first: a contender that errors must not be measured."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request(method, path, headers={"Cookie": cookie} if cookie else {})
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"{method} {path} on port {port} answered {r.status}: {body[:200]!r}")


def wrk(port, path, cookie, method):
    """`cookie`: one cookie for every request, or a list the requests take in turn."""
    script = None
    args = ["wrk", f"-t{THREADS}", f"-c{CONNS}", f"-d{DURATION}s", "--latency"]
    if isinstance(cookie, str):
        args += ["-H", f"Cookie: {cookie}"]
    if method == "POST" or isinstance(cookie, list):
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(f'wrk.method = "{method}"\n')
        if isinstance(cookie, list):
            # Each thread starts at its own offset, so concurrent requests of the
            # threads do not walk the list in step on the same sessions.
            script.write("local cookies = {" + ",".join(f'"{c}"' for c in cookie) + "}\n")
            script.write("local threads = 0\n"
                         "function setup(thread)\n  thread:set('offset', threads * 7919)\n"
                         "  threads = threads + 1\nend\n")
            script.write("local i = 0\n")
            script.write("request = function()\n  i = i + 1\n"
                         "  return wrk.format(nil, nil, {Cookie = cookies[(offset + i) % #cookies + 1]})\nend\n")
        script.close()
        args += ["-s", script.name]
    args.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(args, capture_output=True, text=True).stdout
    if script:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return rps, total, lat.get("50", "?"), lat.get("99", "?"), int(non2xx.group(1)) if non2xx else 0


def per_request(before, after, total):
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    usec = delta.pop("__usec", 0) / total
    delta = {k: v for k, v in delta.items() if v > 0 and k != "info"}
    sent = {k: v for k, v in delta.items() if k not in SCRIPT_INTERNAL}
    inner = {k: v for k, v in delta.items() if k in SCRIPT_INTERNAL}
    fmt = lambda d: " ".join(f"{k}:{v / total:.2f}" for k, v in sorted(d.items()))
    n_sent = sum(sent.values()) / total
    return n_sent, usec, fmt(sent) + (f" + [{fmt(inner)}]" if inner else "")


def measure(port, path, cookie, method, pid, rport, redis_pid):
    """One wrk run against the server `pid` on `port`, whose Redis is `redis_pid` on
    `rport`: (req/s, p50, p99, commands sent/req, detail, non-2xx, Redis commandstats
    µs/req, server CPU µs/req, Redis process CPU µs/req)."""
    before = commandstats(rport)
    cpu, rcpu = cpu_seconds(pid), cpu_seconds(redis_pid)
    rps, total, p50, p99, bad = wrk(port, path, cookie, method)
    cpu = (cpu_seconds(pid) - cpu) * 1e6 / max(total, 1)
    rcpu = (cpu_seconds(redis_pid) - rcpu) * 1e6 / max(total, 1)
    sent, usec, detail = per_request(before, commandstats(rport), total)
    return rps, p50, p99, sent, detail, bad, usec, cpu, rcpu


BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")


def memory(port, rport):
    """Bytes Redis holds per session (MEMORY USAGE of its hash, and of the user's index
    and handle map), for sessions made through bench_server's routes."""
    import http.client

    def request(method, path, headers):
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request(method, path, headers=headers)
        r = c.getresponse()
        r.read()
        cookie = [v for k, v in r.getheaders() if k.lower() == "set-cookie"]
        return cookie[0].split(";")[0] if cookie else None

    def keys(pattern):
        return redis_cmd(rport, "--scan", "--pattern", pattern).split()

    def usage(key):
        return int(redis_cmd(rport, "MEMORY", "USAGE", key).strip() or 0)

    cases = [
        ("anonymous, one small value, no user agent", {}, False),
        ("anonymous, one small value, short user agent (curl/8.5.0)", {"User-Agent": "curl/8.5.0"}, False),
        ("anonymous, one small value, browser user agent (111 bytes)", {"User-Agent": BROWSER_UA}, False),
        ("logged in, one small value, browser user agent", {"User-Agent": BROWSER_UA}, True),
    ]
    rows = []
    for title, headers, login in cases:
        before = set(keys("session:*"))
        cookie = request("POST", "/set?key=cart&value=3-items", headers)
        if login:
            headers = {**headers, "Cookie": cookie}
            cookie = request("POST", f"/login?user=memory-{len(rows)}", headers) or cookie
        new = [k for k in keys("session:*") if k not in before]
        session = [k for k in new if ":s:" in k]
        index = [k for k in new if k.endswith(":u") or k.endswith(":uh")]
        encoding = redis_cmd(rport, "OBJECT", "ENCODING", session[0]).strip()
        rows.append((title, usage(session[0]), sum(usage(k) for k in index), encoding))
    print("| session | bytes (MEMORY USAGE) | user index + handle map | encoding |")
    print("|---|---|---|---|")
    for title, session, index, encoding in rows:
        print(f"| {title} | {session} | {index or ''} | {encoding} |")


def main():
    need("wrk", "wrk")
    need("redis-server", "redis-server")
    print("building (release)...", flush=True)
    subprocess.run(["cargo", "build", "--release", "-q", "--features", "local-cache", "--example", "bench_server"],
                   cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=os.path.join(ROOT, "bench"), check=True)
    redis, rport, rdir = start_redis()
    url = f"redis://127.0.0.1:{rport}"
    ours_bin = os.path.join(ROOT, "target", "release", "examples", "bench_server")
    other_bin = os.path.join(ROOT, "bench", "target", "release", "tower-redis-session-bench")
    servers = {}
    procs = []
    try:
        for name, cmd, env in [
            ("tower-redis-session", [ours_bin], {}),
            ("tower-redis-session + local cache", [ours_bin], {"LOCAL_CACHE": "1"}),
            ("tower-sessions", [other_bin], {"CONTENDER": "tower-sessions"}),
            ("tower-sessions always_save", [other_bin], {"CONTENDER": "tower-sessions-always-save"}),
            ("floor (1 GET)", [other_bin], {"CONTENDER": "floor"}),
        ]:
            port = free_port()
            procs.append(start(cmd, {**env, "PORT": str(port), "REDIS_URL": url, "RUST_LOG": "error"}, ROOT))
            servers[name] = (port, procs[-1].pid)
        scenarios = [
            ("bare handler (/plain)", "GET", "/plain", ["tower-redis-session", "tower-sessions"]),
            ("read", "GET", "/read", ["tower-redis-session", "tower-redis-session + local cache",
                                      "tower-sessions", "floor (1 GET)"]),
            ("read, sliding expiry", "GET", "/read", ["tower-redis-session", "tower-redis-session + local cache",
                                                      "tower-sessions always_save"]),
            ("read-modify-write", "POST", "/incr", ["tower-redis-session", "tower-redis-session + local cache",
                                                    "tower-sessions"]),
            # Each request on one of 1000 sessions in turn: concurrent requests rarely
            # share a session, as with real users (the row above puts all 16
            # connections on one session).
            ("read-modify-write, 1000 sessions", "POST", "/incr",
             ["tower-redis-session", "tower-redis-session + local cache", "tower-sessions"]),
        ]
        # ONLY=<text>: just the scenarios whose title contains it (ratios need them all).
        only = os.environ.get("ONLY")
        if only:
            scenarios = [s for s in scenarios if only in s[0]]
        many = {}
        results = {}
        for rnd in range(ROUNDS):
            for title, method, path, names in scenarios:
                # Alternate the order every round.
                for name in (names if rnd % 2 == 0 else list(reversed(names))):
                    port, pid = servers[name]
                    if name.startswith("floor"):
                        cookie = None
                    elif "1000 sessions" in title:
                        if name not in many:
                            many[name] = [cookie_of(port, f"/login?user=bench{i}") for i in range(1000)]
                        cookie = many[name]
                    else:
                        cookie = cookie_of(port)
                    check(port, path, cookie if isinstance(cookie, str) or cookie is None else cookie[0], method)
                    results.setdefault((title, name), []).append(
                        measure(port, path, cookie, method, pid, rport, redis.pid))
                    rps = results[(title, name)][-1][0]
                    print(f"  round {rnd + 1} {title:22} {name:28} {rps:9.0f} req/s", flush=True)
        print()
        print(f"wrk -t{THREADS} -c{CONNS} -d{DURATION}s, {ROUNDS} round(s), alternating; Redis "
              f"{redis_cmd(rport, 'INFO', 'server').split('redis_version:')[1].split()[0]}; "
              f"{os.cpu_count()} cores")
        print(f"| scenario | contender | req/s (median) | p50 | p99 | Redis commands sent/req | Redis CPU µs/req | Redis process CPU µs/req | server CPU µs/req | detail per request | non-2xx |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        med = {}
        for (title, name), runs in results.items():
            # Medians over the rounds: runs on a shared VM vary too much for a mean.
            m = lambda i: statistics.median(r[i] for r in runs)
            med[(title, name)] = {"rps": m(0), "usec": m(6), "cpu": m(7), "rcpu": m(8)}
            last = runs[-1]
            print(f"| {title} | {name} | {m(0):.0f} | {last[1]} | {last[2]} | {last[3]:.2f} | {m(6):.1f} | {m(8):.1f} | {m(7):.1f} | {last[4]} | {last[5]} |")
        print()
        memory(servers["tower-redis-session"][0], rport)
        print()
        if only:
            return
        ours = "tower-redis-session"
        cached = "tower-redis-session + local cache"
        ts = "tower-sessions"
        floor = "floor (1 GET)"
        rmw, many = "read-modify-write", "read-modify-write, 1000 sessions"
        bare = "bare handler (/plain)"
        ratio = lambda key, a, b: med[a][key] / med[b][key]
        # (label, measured, target as text, met?)
        rows = []

        def at_least(label, a, b, target, key="rps"):
            r = ratio(key, a, b)
            rows.append((label, f"{r:.2f}x", f">= {target}x" if target else "", r >= target if target else None))

        def at_most(label, a, b, target, key):
            r = ratio(key, a, b)
            rows.append((label, f"{r:.2f}x", f"<= {target}x", r <= target))

        at_least("read: ours / floor (1 GET)", ("read", ours), ("read", floor), 0.9)
        at_least("read-modify-write, hot session: ours / tower-sessions", (rmw, ours), (rmw, ts), 1.1)
        at_least("read-modify-write, 1000 sessions: ours / tower-sessions", (many, ours), (many, ts), 1.1)
        at_least("read, local cache: ours / tower-sessions", ("read", cached), ("read", ts), 2.0)
        at_least("read, local cache: ours / bare handler", ("read", cached), (bare, ours), 0.95)
        at_least("read-modify-write, hot session, local cache: ours / tower-sessions", (rmw, cached), (rmw, ts), 1.3)
        at_least("read-modify-write, 1000 sessions, local cache: ours / tower-sessions", (many, cached), (many, ts), 1.3)
        for title in (rmw, many):
            at_most(f"Redis process CPU per {title}: ours / tower-sessions", (title, ours), (title, ts), 1.0, "rcpu")
            at_most(f"Redis process CPU per {title}, local cache: ours / tower-sessions", (title, cached),
                    (title, ts), 0.8, "rcpu")
        for title in (rmw, many):
            usec = med[(title, ours)]["usec"]
            rows.append((f"Redis CPU (commandstats) per {title}, ours", f"{usec:.1f} µs", "<= 4 µs", usec <= 4))
        gap = med[("read", ours)]["cpu"] - med[("read", floor)]["cpu"]
        rows.append(("server CPU per read: ours - floor", f"{gap:.1f} µs", "<= 2 µs", gap <= 2))
        at_least("read: ours / tower-sessions", ("read", ours), ("read", ts), 0)
        at_least("read with sliding expiry: ours / tower-sessions always_save", ("read, sliding expiry", ours),
                 ("read, sliding expiry", "tower-sessions always_save"), 0)
        print("| ratio | measured | target | met |")
        print("|---|---|---|---|")
        for label, measured, target, met in rows:
            print(f"| {label} | {measured} | {target} | {'' if met is None else ('yes' if met else 'no')} |")
    finally:
        for p in procs:
            p.kill()
        redis.kill()
        shutil.rmtree(rdir, ignore_errors=True)


if __name__ == "__main__":
    main()
