"""Recipe calls in forked children (cpl._runner, cpl._slots): a child made
by ``os.fork``, multiprocessing's 'fork' or a ProcessPoolExecutor after the
parent called recipes gets servers and slots of its own, while the parent
goes on calling on its servers, and neither disturbs the other, at the
child's exit neither."""
from __future__ import annotations

import ast
import atexit
import concurrent.futures
import gc
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import threading

import numpy as np
import psutil

import cpl
from cpl import _runner
from cpl.parallel import Workflow

#: Rounds of forking while the parent's own calls go on: each round forks
#: one child of each kind, each making CHILD_CALLS calls.
FORK_ROUNDS = 8
CHILD_CALLS = 2
#: How long a child may take for its calls before it counts as hung.
CHILD_SECONDS = 60

fork_context = multiprocessing.get_context('fork')


def copied_value(raw_images, i: int, env=None) -> float:
    """Runs rtest_copy on image i (filled with i) and gives what came back;
    an error as its text."""
    try:
        res = cpl.Recipe('rtest_copy')(raw_images[i % len(raw_images)],
                                        timeout=60, env=env)
        return float(np.unique(res.PRODUCT[0].data)[0])
    except Exception as exc:        # reported to the parent as a value
        return '%s: %s' % (type(exc).__name__, exc)


def child_calls(raw_images, first: int) -> list:
    """CHILD_CALLS calls in a child, and the pid of its server."""
    values = [copied_value(raw_images, first + k) for k in range(CHILD_CALLS)]
    env = cpl.Recipe('rtest_copy')._run_env(None)
    return values + [_runner.pool.get(env).pid]


def expected(raw_images, first: int) -> list:
    return [float((first + k) % len(raw_images)) for k in range(CHILD_CALLS)]


def in_os_fork_child(raw_images, first: int) -> list:
    """child_calls in a child made by os.fork, which then runs its exit
    handlers and collects its garbage before it ends (os._exit: pytest's
    own must not run in the copy)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            values = child_calls(raw_images, first)
            os.write(write_end, repr(values).encode())
            os.close(write_end)
            gc.collect()
            atexit._run_exitfuncs()
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, 'rb') as f:
        if not select.select([f], [], [], CHILD_SECONDS)[0]:
            os.kill(pid, signal.SIGKILL)        # hung: fail, do not hang
        text = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and text, 'the os.fork child failed (%s)' % status
    return ast.literal_eval(text)       # floats or error texts, a pid


def in_process_child(raw_images, first: int, results) -> None:
    results.put(child_calls(raw_images, first))


def kill_forked_children() -> None:
    """Kills the children of this process that are copies of it (not the
    recipe servers)."""
    for child in psutil.Process().children():
        try:
            if 'cplrun-runner' not in ' '.join(child.cmdline()):
                child.kill()
        except psutil.Error:
            pass


def parent_calls(raw_images, stop: threading.Event, problems: list) -> None:
    """The parent's own calls, one after another until stop."""
    i = 0
    while not stop.is_set():
        value = copied_value(raw_images, i)
        if value != float(i % len(raw_images)):
            problems.append(('parent', i, value))
        i += 1


def test_forked_children_call_recipes_while_the_parent_does(raw_images):
    copied_value(raw_images, 0)             # the parent has a server
    env = cpl.Recipe('rtest_copy')._run_env(None)
    parent_server = _runner.pool.get(env)
    stop = threading.Event()
    problems: list = []
    callers = [threading.Thread(target=parent_calls,
                                args=(raw_images, stop, problems))
               for _ in range(2)]
    for t in callers:
        t.start()
    child_servers = set()
    executor = concurrent.futures.ProcessPoolExecutor(
        2, mp_context=fork_context)
    try:
        for n in range(FORK_ROUNDS):
            first = 3 * n
            results = fork_context.Queue()
            process = fork_context.Process(
                target=in_process_child, args=(raw_images, first, results))
            process.start()
            pooled = executor.submit(child_calls, raw_images, first + 1)
            forked = in_os_fork_child(raw_images, first + 2)
            got = [results.get(timeout=CHILD_SECONDS),
                   pooled.result(timeout=CHILD_SECONDS), forked]
            process.join(30)
            assert process.exitcode == 0
            for offset, values in enumerate(got):
                assert values[:-1] == expected(raw_images, first + offset)
                child_servers.add(values[-1])
    except BaseException:
        kill_forked_children()      # hung ones must not hang the suite
        raise
    finally:
        stop.set()
        executor.shutdown()
        for t in callers:
            t.join(90)
    assert problems == []
    # the children used servers of their own, and left the parent's alone
    assert parent_server.pid not in child_servers
    assert _runner.pool.get(env) is parent_server
    assert not parent_server.closed
    assert copied_value(raw_images, 5) == 5.0


def test_a_workflow_on_a_process_pool_after_a_call(raw_images, tmp_path):
    env = {'OMP_NUM_THREADS': '1'}      # the workflow's runs' too: one server
    copied_value(raw_images, 0, env)
    w = Workflow()
    for i in range(4):
        w.add('rtest_copy', raw_images[i], name='copy%d' % i, env=env)
    with concurrent.futures.ProcessPoolExecutor(
            2, mp_context=fork_context) as executor:
        report = w.run(output_dir=str(tmp_path / 'out'), progress=False,
                       executor=executor, timeout=60)
    assert [r.status for r in report.runs] == ['success'] * 4
    assert copied_value(raw_images, 3) == 3.0


def test_slots_in_a_forked_child_are_its_own(raw_images):
    """The parent's runs hold every slot at the fork: the child's own
    calls still run (they would wait for ever on the parent's count)."""
    cpl.Recipe.set_maxthreads(1)
    hang = cpl.Recipe('rtest_hang')
    running = hang(raw_images[0], tag='RAW', param={'seconds': 30.0},
                   threaded=True)
    waiting = hang(raw_images[0], tag='RAW', param={'seconds': 30.0},
                   threaded=True)
    try:
        assert in_os_fork_child(raw_images, 4)[:-1] == expected(raw_images, 4)
        assert waiting.running() is False
    finally:
        waiting.cancel()
        running.cancel()


EXIT_SCRIPT = r'''
import os, sys
import cpl
from cpl import _runner
cpl.Recipe.path = [sys.argv[1]]
copy = cpl.Recipe('rtest_copy')
copy(sys.argv[2])
server = _runner.pool.get(copy._run_env(None))
pid = os.fork()
if pid == 0:
    copy(sys.argv[2])
    sys.exit(0)         # a whole interpreter exit: atexit, collection
_, status = os.waitpid(pid, 0)
assert status == 0, status
assert _runner.pool.get(copy._run_env(None)) is server and not server.closed
copy(sys.argv[2])
print('ok', server.pid)
'''


def test_a_forked_child_that_exits_leaves_the_parents_server(
        recipe_dir, raw, tmp_path):
    proc = subprocess.run(
        [sys.executable, '-c', EXIT_SCRIPT, recipe_dir, raw],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=90,
        env=dict(os.environ, TMPDIR=str(tmp_path)))
    out = proc.stdout.decode(errors='replace')
    assert proc.returncode == 0 and out.startswith('ok '), out


def test_a_child_forked_while_the_parents_locks_are_held(raw_images):
    """As when another thread of the parent looks a recipe up, takes a
    server or a slot at the moment of the fork."""
    from cpl import _index, _slots
    copied_value(raw_images, 0)
    with _index._lock, _runner.pool._lock, _slots.slots._lock:
        values = in_os_fork_child(raw_images, 6)
    assert values[:-1] == expected(raw_images, 6)
