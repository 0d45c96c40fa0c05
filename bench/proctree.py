"""The processes below this one, read from /proc (Linux only).

bench/soak.py and tests/test_faults.py both need it, to find recipe
processes (and what they forked or detached) that outlived their run.  It
is a checking aid rather than part of cplrun's API, so it stays out of
cpl/; and it lives here rather than in tests/ so that the bench does not
depend on the test suite.  The standard library is all it needs, so both
can load it without anything else from bench/: soak.py imports it from
its own folder, the tests load it by file path.
"""
from __future__ import annotations

import os


def descendants() -> list[int]:
    """pids of the live processes below this one (zombies excluded)."""
    parent = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                # comm, in parentheses, may itself hold ')' or spaces
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue        # gone since the listing
        if fields[0] not in ('Z', 'X'):
            parent[int(entry)] = int(fields[1])
    me, found = os.getpid(), []
    for pid in parent:
        p, hops = parent.get(pid), 0
        # hops: a pid reused while we read could make the map cyclic
        while p is not None and p > 1 and hops < 64:
            if p == me:
                found.append(pid)
                break
            p, hops = parent.get(p), hops + 1
    return found


#: What a recipe server names the process it keeps forked ahead, waiting
#: for the next run (src_c/runner.h); it lives as long as its server.
SPARE_NAME = 'cplrun-spare'


def is_spare(pid: int) -> bool:
    try:
        with open('/proc/%d/comm' % pid) as f:
            return f.read().strip() == SPARE_NAME
    except OSError:
        return False


def leftovers(keep: set[int]) -> list[int]:
    """The processes below this one that outlived their run: all but
    those in keep (the servers) and the servers' waiting spares."""
    return [pid for pid in descendants()
            if pid not in keep and not is_spare(pid)]
