#!/usr/bin/env python3
"""Token refresh cost along one long rotation chain, on a redis-server of its own.

    python3 bench/refresh_chain.py            # 20,000 refreshes in batches of 1,000
    CHAIN=2000 python3 bench/refresh_chain.py

Prints the Redis time of the refresh script (evalsha usec from INFO commandstats) per
refresh for every batch, and the last batch against the first (target: <= 1.5x).
"""
import os
import shutil
import subprocess
import tempfile
import time

from run import ROOT, free_port, need


def main():
    need("redis-server", "redis-server")
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "refresh_chain"], cwd=ROOT, check=True)
    port = free_port()
    rdir = tempfile.mkdtemp()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                              "--dir", rdir], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        binary = os.path.join(ROOT, "target", "release", "examples", "refresh_chain")
        subprocess.run([binary], env={**os.environ, "REDIS_URL": f"redis://127.0.0.1:{port}"}, check=True)
    finally:
        redis.kill()
        shutil.rmtree(rdir, ignore_errors=True)


if __name__ == "__main__":
    main()
