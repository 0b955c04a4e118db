#!/usr/bin/env python3
"""Token refresh cost along one long rotation chain, on a redis-server of its own.

    python3 bench/refresh_chain.py            # 20,000 refreshes in batches of 1,000
    CHAIN=2000 python3 bench/refresh_chain.py

Prints the Redis time of the refresh script (evalsha usec from INFO commandstats) per
refresh for every batch, and the last batch against the first (target: <= 1.5x).
"""
from run import run_example_on_own_redis

if __name__ == "__main__":
    run_example_on_own_redis("refresh_chain")
