"""Finding recipes: the plugin folders, and a cached index of what each
plugin library holds.

Describing a library means loading it, which takes tens of milliseconds
and is done by the runner, never in this process.  The descriptions are
kept in memory and on disk (``$XDG_CACHE_HOME/cplrun/``), each under the
library's path, size and modification time, so that a changed or
reinstalled library is described again and the rest never are."""
from __future__ import annotations

import glob
import json
import os
import tempfile
import threading
from typing import Iterable

from . import _runner

_SUFFIXES = ('.so', '.dylib')
_lock = threading.Lock()
_memory: dict[str, dict] = {}      # path -> {'key': [...], 'recipes': [...]}
_disk_loaded = False
_cpl = {'version': None, 'description': None}


def _new_lock_after_fork() -> None:
    # A child forked while another thread described libraries would wait
    # for ever on a lock that thread, absent in the child, holds.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def default_path() -> list[str]:
    """Where installed pipelines put their recipes: Debian's multiarch
    folders, the ``recipe-dir`` of esorex's configuration, ESO's kits and
    MacPorts; only folders that exist."""
    candidates = sorted(glob.glob('/usr/lib/*/cpl/plugins')) + [
        '/usr/lib/cpl/plugins', '/usr/lib64/cpl/plugins',
        '/usr/local/lib/cpl/plugins', '/usr/local/lib/esopipes-plugins',
        '/usr/local/lib64/esopipes-plugins',
        os.path.expanduser('~/pipelines/lib/esopipes-plugins'),
        os.path.expanduser('~/pipelines/lib64/esopipes-plugins'),
        '/opt/local/lib/esopipes-plugins']
    for rc in (os.path.expanduser('~/.esorex/esorex.rc'), '/etc/esorex.rc'):
        candidates[:0] = _esorex_recipe_dirs(rc)
    if os.environ.get('ESOREX_PLUGIN_DIR'):
        candidates[:0] = os.environ['ESOREX_PLUGIN_DIR'].split(':')
    seen = []
    for c in candidates:
        if c and os.path.isdir(c) and os.path.realpath(c) not in \
                [os.path.realpath(s) for s in seen]:
            seen.append(c)
    return seen


def _esorex_recipe_dirs(rc: str) -> list[str]:
    try:
        with open(rc, encoding='utf-8', errors='replace') as f:
            for line in f:
                key, _, value = line.partition('=')
                if key.strip() == 'esorex.caller.recipe-dir' and value.strip():
                    return [os.path.expanduser(v)
                            for v in value.strip().split(':')]
    except OSError:
        pass
    return []


def split_path(path: str | Iterable[str]) -> list[str]:
    if isinstance(path, (str, os.PathLike)):
        return [p for p in os.fspath(path).split(':') if p]
    return [os.fspath(p) for p in path]


def libraries(path: str | Iterable[str]) -> list[str]:
    """Every plugin library below the folders of path."""
    libs = []
    for top in split_path(path):
        for root, dirs, files in os.walk(top, followlinks=True):
            dirs.sort()
            libs.extend(os.path.join(root, f) for f in sorted(files)
                        if f.endswith(_SUFFIXES))
    return libs


def _file_key(path: str) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _cache_file() -> str:
    base = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    try:
        runner = _file_key(_runner.runner_path())
    except _runner.RunnerError:
        runner = None
    # A rebuilt runner may describe differently: it gets its own index.
    tag = '%x' % (hash(tuple(runner or ())) & 0xffffffff) if runner else 'none'
    return os.path.join(base, 'cplrun', 'index-%s.json' % tag)


def _load_disk() -> None:
    global _disk_loaded
    _disk_loaded = True
    try:
        with open(_cache_file(), encoding='utf-8') as f:
            doc = json.load(f)
        _memory.update(doc.get('libraries', {}))
        _cpl.update(doc.get('cpl', {}))
    except (OSError, ValueError, AttributeError):
        pass


def _save_disk() -> None:
    path = _cache_file()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix='.tmp')
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump({'cpl': _cpl, 'libraries': _memory}, f)
        os.replace(tmp, path)
    except OSError:
        pass        # a read-only home only costs speed


def describe_libraries(files: list[str]) -> dict[str, list[dict]]:
    """path -> recipe descriptions, from the cache where it is current."""
    with _lock:
        if not _disk_loaded:
            _load_disk()
        keys = {f: _file_key(f) for f in files}
        stale = [f for f in files if keys[f] is not None and (
            f not in _memory or _memory[f]['key'] != keys[f])]
        if stale:
            doc = _runner.describe(stale)
            _cpl['version'] = doc.get('cpl_version') or _cpl['version']
            _cpl['description'] = doc.get('cpl_description') \
                or _cpl['description']
            for plugin in doc['plugins']:
                _memory[plugin['file']] = {
                    'key': keys[plugin['file']], 'recipes': plugin['recipes'],
                    'error': plugin.get('error')}
            _save_disk()
        return {f: _memory[f]['recipes'] for f in files if f in _memory}


def cpl_version() -> str | None:
    return _cpl['version']


def cpl_description() -> str | None:
    return _cpl['description']


def find(name: str, path, filename: str | None = None,
         version: int | str | None = None) -> tuple[str, dict] | None:
    """(library, description) of the recipe: in filename if given, else
    the newest version (or the one asked for) below path."""
    files = [os.path.abspath(filename)] if filename else libraries(path)
    best = None
    for lib, recipes in describe_libraries(files).items():
        for r in recipes:
            if r['name'] != name:
                continue
            if version is not None and version not in (
                    r['version'], r['version_string']):
                continue
            if best is None or r['version'] > best[1]['version']:
                best = (lib, r)
    return best


def all_recipes(path) -> list[tuple[str, str, dict]]:
    """(name, library, description) of every recipe below path."""
    return [(r['name'], lib, r)
            for lib, recipes in describe_libraries(libraries(path)).items()
            for r in recipes]
