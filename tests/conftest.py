"""Fixtures of the cplrun test suite.

* Every test runs with its own ``XDG_CACHE_HOME`` (the recipe index) and
  its own temporary folder (``TMPDIR`` / :data:`tempfile.tempdir`, where
  run folders go), made once per session, so that nothing depends on, or
  litters, the user's cache and ``/tmp``; tests that look for leftover run
  folders look in :func:`work_tmp`, which only this session writes.
* ``recipe_dir``: the test recipe library (``tests/recipes``) compiled into
  a temporary folder once per session; :attr:`cpl.Recipe.path` points at it
  for every test (restored afterwards).
* ``data_dir``: synthetic raw data and SOFs for the real pipelines, made by
  the project's own :mod:`cpl.synthetic`: the suite needs nothing outside
  the repository.
* ``raw`` & co: small FITS files for the test recipes.
* A watchdog fails a test that hangs instead of hanging the suite.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import numpy as np
import pytest
from astropy.io import fits

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def load_module(name, path):
    """The module in file path, loaded under name (one no installed package
    has): putting its folder on sys.path would make every script there a
    top-level module for the session."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recipe_build = load_module('cplrun_recipe_build',
                           os.path.join(HERE, 'recipes', 'build.py'))

#: Seconds after which a test counts as hung (the whole suite takes < 1 min).
TEST_WATCHDOG_SECONDS = 120

# Before cpl is used at all: a private cache and temporary folder.
_SESSION_TOP = tempfile.mkdtemp(prefix='cplrun-tests-')
_SAVED_ENV = {k: os.environ.get(k) for k in ('XDG_CACHE_HOME', 'TMPDIR')}
os.environ['XDG_CACHE_HOME'] = os.path.join(_SESSION_TOP, 'cache')
os.environ['TMPDIR'] = os.path.join(_SESSION_TOP, 'tmp')
os.makedirs(os.environ['XDG_CACHE_HOME'])
os.makedirs(os.environ['TMPDIR'])
_SAVED_TEMPDIR = tempfile.tempdir
tempfile.tempdir = os.environ['TMPDIR']

import cpl  # noqa: E402
from cpl import _runner, synthetic  # noqa: E402

# A suite started in the background by a non-interactive shell (as CI may
# start it) inherits SIGINT ignored, and so would every process it starts:
# the tests of Ctrl-C need it delivered.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SYSTEM_PATH = cpl.Recipe.path


def pytest_unconfigure(config):
    _runner.pool.close()
    tempfile.tempdir = _SAVED_TEMPDIR
    for key, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if os.environ.get('CPLRUN_KEEP_TEST_TMP'):
        sys.stderr.write('\ntest files kept in %s\n' % _SESSION_TOP)
    else:
        shutil.rmtree(_SESSION_TOP, ignore_errors=True)


# --- watchdog ---------------------------------------------------------------
class TestHung(Exception):
    """A test ran longer than TEST_WATCHDOG_SECONDS."""


@pytest.fixture(autouse=True)
def _watchdog():
    def on_alarm(signum, frame):
        raise TestHung('test still running after %d s'
                       % TEST_WATCHDOG_SECONDS)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_WATCHDOG_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# --- the test recipes -------------------------------------------------------
def _built(build, name, what):
    """The session's folder name, with a library of recipes built by build."""
    outdir = os.path.join(_SESSION_TOP, name)
    try:
        build(outdir)
    except recipe_build.BuildError as exc:
        pytest.fail('cannot build the %s: %s' % (what, exc))
    return outdir


@pytest.fixture(scope='session')
def recipe_dir():
    """Folder holding only the compiled test recipe library."""
    return _built(recipe_build.build, 'recipes', 'test recipes')


@pytest.fixture(scope='session')
def recipe_lib(recipe_dir):
    return os.path.join(recipe_dir, recipe_build.LIBNAME)


@pytest.fixture(scope='session')
def fault_dir():
    """Folder holding only the misbehaving recipes (tests/recipes/faults):
    rtest_product, rtest_chatter, rtest_spawn."""
    return _built(recipe_build.build_faults, 'fault-recipes', 'fault recipes')


@pytest.fixture
def fault_recipes(recipe_dir, fault_dir):
    """The test recipes and the misbehaving ones on the recipe path."""
    cpl.Recipe.path = [recipe_dir, fault_dir]
    return fault_dir


@pytest.fixture(scope='session', autouse=True)
def _session_recipe_path(recipe_dir):
    saved = cpl.Recipe.path
    cpl.Recipe.path = [recipe_dir]
    yield
    cpl.Recipe.path = saved


@pytest.fixture(autouse=True)
def _recipe_path(recipe_dir):
    """Each test starts with the test recipes as the only path, default
    process-wide settings, and leaves them so."""
    cpl.Recipe.path = [recipe_dir]
    cpl.Recipe.memory_mode = 0
    yield
    cpl.Recipe.path = [recipe_dir]
    cpl.Recipe.memory_mode = 0
    cpl.Recipe.set_maxthreads(65536)


@pytest.fixture
def system_path():
    """The installed pipelines' folders as the recipe path."""
    cpl.Recipe.path = SYSTEM_PATH
    return SYSTEM_PATH


def pipeline_recipe(name):
    """The installed pipeline recipe; the test is skipped where its
    pipeline is not installed (make test installs UVES, NACO and MUSE)."""
    try:
        return cpl.Recipe(name)
    except cpl.RecipeNotFoundError:
        pytest.skip('pipeline recipe %s is not installed' % name)


def manifest_step(manifest, recipe):
    """The step of cpl.synthetic's manifest that runs recipe."""
    for s in manifest['steps']:
        if s['recipe'] == recipe:
            return s
    raise AssertionError('no step %s in the manifest' % recipe)


# --- temporary folders --------------------------------------------------------
@pytest.fixture
def work_tmp():
    """The temporary folder run folders go to (private to this session)."""
    return tempfile.gettempdir()


def run_dirs(folder, prefix='rtest_'):
    """Run folders (``<recipe>-XXXX``) in folder."""
    try:
        return sorted(n for n in os.listdir(folder) if n.startswith(prefix))
    except FileNotFoundError:
        return []


@pytest.fixture
def no_new_run_dirs(work_tmp):
    """Fails the test if it leaves run folders behind in the temporary
    folder."""
    before = set(run_dirs(work_tmp))
    yield
    left = set(run_dirs(work_tmp)) - before
    assert not left, 'run folders left behind: %s' % sorted(left)


def remove_run_dir(exc):
    """Cleans up after a test that checked a kept run folder."""
    workdir = getattr(exc, 'workdir', None)
    if workdir and os.path.realpath(workdir).startswith(
            os.path.realpath(_SESSION_TOP) + os.sep):
        shutil.rmtree(workdir, ignore_errors=True)


# --- FITS inputs ----------------------------------------------------------------
def write_image(path, data, **header):
    hdu = fits.PrimaryHDU(np.asarray(data))
    for key, value in header.items():
        hdu.header[key] = value
    hdu.writeto(path, overwrite=True)
    return str(path)


@pytest.fixture(scope='session')
def fits_dir():
    folder = os.path.join(_SESSION_TOP, 'fits')
    os.makedirs(folder, exist_ok=True)
    return folder


@pytest.fixture(scope='session')
def raw(fits_dir):
    """A 4x4 float32 image (0..15), OBJECT='raw1'."""
    return write_image(os.path.join(fits_dir, 'raw1.fits'),
                       np.arange(16, dtype=np.float32).reshape(4, 4),
                       OBJECT='raw1')


@pytest.fixture(scope='session')
def raw2(fits_dir):
    """A 3x5 float32 image (100..114), OBJECT='raw2'."""
    return write_image(os.path.join(fits_dir, 'raw2.fits'),
                       100 + np.arange(15, dtype=np.float32).reshape(3, 5),
                       OBJECT='raw2')


@pytest.fixture(scope='session')
def calib_file(fits_dir):
    return write_image(os.path.join(fits_dir, 'calib.fits'),
                       np.ones((2, 2), dtype=np.float32), OBJECT='calib')


@pytest.fixture(scope='session')
def raw_images(fits_dir):
    """Eight distinct small images: image i is filled with i."""
    return [write_image(os.path.join(fits_dir, 'img%d.fits' % i),
                        np.full((3, 3), float(i), dtype=np.float32),
                        OBJECT='img%d' % i) for i in range(8)]


# --- real pipelines' data --------------------------------------------------------
@pytest.fixture(scope='session')
def data_dir():
    """cpl.synthetic's tiny data set for UVES, NACO and MUSE: raw frames,
    one SOF per step (a dark's naming its bias's product in the bias step's
    ``output_dir``, ``<folder>/products/<step name>``) and
    ``manifest.json``.  Returns (folder, manifest); the manifest's steps
    are found by ``recipe``."""
    folder = os.path.join(_SESSION_TOP, 'data')
    synthetic.make_dataset(folder, size='tiny',
                           instruments=('uves', 'naco', 'muse'))
    with open(os.path.join(folder, 'manifest.json')) as f:
        manifest = json.load(f)
    return folder, manifest


# --- processes ---------------------------------------------------------------------
def runner_servers():
    """psutil.Process of this process's recipe servers."""
    import psutil
    found = []
    for child in psutil.Process().children():
        try:
            if 'cplrun-runner' in ' '.join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


#: the process a server keeps forked ahead for its next run (src_c/runner.h)
SPARE_NAME = 'cplrun-spare'


def recipe_processes():
    """The recipe processes (children of the servers, but for the spares
    waiting for a run) right now."""
    import psutil
    found = []
    for server in runner_servers():
        try:
            children = server.children()
        except psutil.Error:
            continue
        for child in children:
            try:
                if child.name() != SPARE_NAME:
                    found.append(child)
            except psutil.Error:
                pass
    return found


def live_recipe_processes():
    """The recipe processes of runs still going: a finished run's process
    is killed by its server as it reports the end, and may still be
    exiting, or be a zombie, when the next run starts (its slot is free
    once its outcome is taken and, for a run that succeeded, its folder,
    the process's cwd, removed)."""
    import psutil
    live = []
    for process in recipe_processes():
        try:
            if process.status() not in (psutil.STATUS_ZOMBIE,
                                        psutil.STATUS_DEAD) and \
                    os.path.isdir(process.cwd()):
                live.append(process)
        except psutil.Error:
            pass
    return live


def proc_state(pid):
    """The state letter of /proc/<pid>/stat, or None if there is no such
    process."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(')', 1)[1].split()[0]


def is_gone(pid):
    """Dead: no such process, or a zombie nobody reaps (PID 1 here does
    not reap orphans)."""
    return proc_state(pid) in (None, 'Z', 'X')


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


@pytest.fixture
def ran(monkeypatch):
    """Names of the runs of a workflow that really started a recipe
    process, in order."""
    from cpl.parallel import _execution
    names = []
    real = _execution.run_task

    def counting(task, control=None):
        names.append(task['name'])
        return real(task, control)
    monkeypatch.setattr(_execution, 'run_task', counting)
    return names
