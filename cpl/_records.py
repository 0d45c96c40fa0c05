"""The run record of a workflow run's folder: what lets a later run reuse
the products, and the one step that puts a new run's products in place of
the earlier run's.

``<run folder>/.cplrun-run.json`` holds the run's key (recipe, parameters,
environment, inputs' checksums), its products, and the size and SHA-256 of
each, so that a truncated or rewritten product is not reused."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time
import uuid
from typing import Any

from ._products import numbered_names, set_pipefile, unlink_quietly
from .frames import frame_items

#: The per-run record of a finished run, inside its folder.
RUN_RECORD = '.cplrun-run.json'
#: Inside a run folder: the work folders of its runs, and the products of
#: a run going on, until they replace the earlier run's.
WORK_FOLDER = '.cplrun-work'


#: SHA-256 of the files read in this process, by (path, stat figures).
_digests: dict[tuple, str] = {}


def _stat_key(path: str) -> tuple:
    st = os.stat(path)
    # ctime and inode too: a rewrite that keeps size and mtime (cp -p,
    # rsync -t, os.utime) still changes them.
    return (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def file_digest(path: str) -> str:
    key = _stat_key(path)
    digest = _digests.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
        digest = _digests[key] = h.hexdigest()
    return digest


def _fingerprint(path: str) -> dict:
    """What the run record keeps of a product, to tell later that it is
    still the file the run made (a truncated or rewritten one is not)."""
    return {'size': os.path.getsize(path), 'sha256': file_digest(path)}


def _intact(path: str, fingerprint: Any) -> bool:
    if not isinstance(fingerprint, dict):
        return False
    try:
        # the size first: a truncated file costs no reading
        return os.path.getsize(path) == fingerprint.get('size') and \
            file_digest(path) == fingerprint.get('sha256')
    except OSError:
        return False


def read_record(run_dir: str) -> dict:
    """The run record in run_dir, or {} when there is none (or it is not
    one: a record damaged by a crash only means the run reruns).

    Its products are taken as the files of their names in run_dir, where
    the run put them: a run folder copied or moved elsewhere (cp -r,
    rsync) is the record's, not the folder it was made in."""
    try:
        with open(os.path.join(run_dir, RUN_RECORD), encoding='utf-8') as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    products, files = record.get('products'), record.get('files')
    if isinstance(products, dict):
        record['products'] = {
            tag: [_in_run_dir(run_dir, p) for p in value]
            if isinstance(value, list) else _in_run_dir(run_dir, value)
            for tag, value in products.items()}
    if isinstance(files, dict):
        record['files'] = {_in_run_dir(run_dir, p): fingerprint
                           for p, fingerprint in files.items()}
    return record


def _in_run_dir(run_dir: str, path: Any) -> Any:
    """The file of path's name in run_dir (a name that is no file name,
    or no string, as it is: it matches no product)."""
    if not isinstance(path, str):
        return path
    name = os.path.basename(path)
    return os.path.join(run_dir, name) if name not in ('', '.', '..') \
        else path


def reusable_products(run_dir: str, key: str) -> dict | None:
    """The products of the earlier run in run_dir, if it was the run of
    key and each product is still the file that run made (same size and
    checksum)."""
    record = read_record(run_dir)
    if record.get('key') != key:
        return None
    products = record.get('products')
    files = record.get('files')
    if not isinstance(products, dict) or not isinstance(files, dict):
        return None         # a record of an older cplrun: no checksums
    paths = [p for v in products.values() for p in frame_items(v)]
    return products if all(_intact(p, files.get(p)) for p in paths) \
        else None


def forget_failures(run_dir: str) -> None:
    """Before a rerun: the work folders earlier failures left for
    inspection go (their errors were about those runs); the earlier
    record and products stay until the new run replaces them."""
    shutil.rmtree(os.path.join(run_dir, WORK_FOLDER), ignore_errors=True)


def _recorded_files(record: dict, run_dir: str) -> set[str]:
    """The products a record names inside run_dir (the only ones a rerun
    may replace or remove)."""
    return {p for value in record.get('products', {}).values()
            for p in frame_items(value)
            if isinstance(p, str) and os.path.dirname(p) == run_dir}


def commit(run_dir: str, key: str | None, recipe: str, staged: dict) -> dict:
    """Puts a successful run's products (in a staging folder of its run
    folder) in place of the earlier run's, and its record in place of the
    earlier record; returns the products as they are then.

    The new record is written first, beside the old one: when that fails
    (a full disk), nothing of the earlier run was touched, and this run
    fails with the reason.  Then the products replace the earlier ones of
    the same name (renames within one file system), the record replaces
    the earlier record, and earlier products that this run did not make
    again go.  A run stopped in between leaves an earlier record whose
    checksums no longer match: it reruns."""
    record_path = os.path.join(run_dir, RUN_RECORD)
    earlier = _recorded_files(read_record(run_dir), run_dir)
    targets: dict[str, str] = {}
    taken: set[str] = set()
    for path in dict.fromkeys(p for v in staged.values()
                              for p in frame_items(v)):
        targets[path] = _free_name(run_dir, os.path.basename(path), earlier,
                                   taken)
        taken.add(targets[path])
        if os.path.basename(targets[path]) != os.path.basename(path):
            # kept apart from a file of its name: the product's header
            # names its own file, as a renamed product of a call does
            set_pipefile(path, os.path.basename(targets[path]))
    products = {tag: [targets[p] for p in value] if isinstance(value, list)
                else targets[value] for tag, value in staged.items()}
    files = {targets[p]: _fingerprint(p) for p in targets}
    tmp = os.path.join(run_dir, '.cplrun-record-%s.tmp' % uuid.uuid4().hex[:12])
    try:
        with open(tmp, 'x', encoding='utf-8') as f:
            json.dump({'key': key, 'recipe': recipe,
                       'products': products, 'files': files,
                       'finished': time.time()}, f)
    except OSError as exc:
        unlink_quietly(tmp)
        raise OSError(exc.errno, 'the run record %s cannot be written (%s); '
                      'the products of this run were not kept, those of an '
                      'earlier run in %s are untouched'
                      % (record_path, exc.strerror or exc, run_dir),
                      record_path) from exc
    try:
        for path, target in targets.items():
            os.replace(path, target)
            _digests[_stat_key(target)] = files[target]['sha256']
        os.replace(tmp, record_path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    for path in earlier - set(files):
        unlink_quietly(path)
    return products


def _free_name(run_dir: str, name: str, replaceable: set[str],
               taken: set[str]) -> str:
    """run_dir/name, or the first free run_dir/stem-N.ext: a file of that
    name that an earlier record of this run names may be replaced, any
    other file stays."""
    for candidate in itertools.chain([name], numbered_names(name)):
        target = os.path.join(run_dir, candidate)
        if target not in taken and (target in replaceable or
                                    not os.path.lexists(target)):
            return target
    raise OSError('no free name for %s in %s' % (name, run_dir))


def remove_staging(staging: str) -> None:
    """Removes a run's staging folder (empty once its products were put
    in place; a failed run's products are not kept), and the run folder's
    work folder when nothing else is left in it."""
    shutil.rmtree(staging, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(staging))
    except OSError:
        pass            # a failed run's folder, kept for inspection

