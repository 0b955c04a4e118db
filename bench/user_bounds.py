#!/usr/bin/env python3
"""Slowest single Redis command per per-user operation, on a redis-server of its own.

    python3 bench/user_bounds.py                          # 20,000 sessions, 2,000 families
    SESSIONS=2000 FAMILIES=200 python3 bench/user_bounds.py

Prints, for login, list (first page), revoke one, token issue, revoke others and log
out everywhere, the number of commands Redis ran and the slowest one (SLOWLOG with
every command logged). Target: every command under 2 ms.
"""
from run import run_example_on_own_redis

if __name__ == "__main__":
    run_example_on_own_redis("user_bounds")
