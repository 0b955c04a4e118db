#!/usr/bin/env python3
"""Slowest single Redis command per per-user operation, on a redis-server of its own.

    python3 bench/user_bounds.py                          # 20,000 sessions, 2,000 families
    SESSIONS=2000 FAMILIES=200 python3 bench/user_bounds.py

Prints, for login, list (first page), revoke one, token issue, revoke others and log
out everywhere, the number of commands Redis ran and the slowest one (SLOWLOG with
every command logged). Target: every command under 2 ms.
"""
import os
import shutil
import subprocess
import tempfile
import time

from run import ROOT, free_port, need


def main():
    need("redis-server", "redis-server")
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "user_bounds"], cwd=ROOT, check=True)
    port = free_port()
    rdir = tempfile.mkdtemp()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                              "--dir", rdir], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        binary = os.path.join(ROOT, "target", "release", "examples", "user_bounds")
        subprocess.run([binary], env={**os.environ, "REDIS_URL": f"redis://127.0.0.1:{port}"}, check=True)
    finally:
        redis.kill()
        shutil.rmtree(rdir, ignore_errors=True)


if __name__ == "__main__":
    main()
