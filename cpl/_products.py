"""Placing a run's products in its ``output_dir``.

The rule: a product replaces a product of its name that an earlier run
left: a FITS file whose PIPEFILE, if any, is that name, that was there,
unchanged, when this call was made, and is not one of this call's inputs.
Any other file of its name is kept, and the product gets the first free
name ``stem-N.ext``, with a warning and its ``PIPEFILE`` set to that name:
a file placed while this run was in flight (by an overlapping call: a
thread, a Workflow node, another process), an input, a file that is not
a product of that name.

"Was there when the call was made" is decided by identity, not by clock:
the call notes each file's device, inode, size, mtime and ctime
(:func:`files_in`), and a file replaced, rewritten, touched or placed
since differs in at least one of them (placing a file by link or rename
sets its ctime; one replaced has another inode), so clocks that differ
between machines cannot make an overlapping run's product look old.
Where time stamps count whole seconds (FAT, exFAT, some network shares),
a file replaced twice within one tick could, with a reused inode number,
look like the one noted; there a file changed less than
:data:`COARSE_STAMP_MARGIN` seconds before the call is noted as not
replaceable (a later product of its name is renamed instead).

Every name is taken atomically: a new name by ``link()`` (which fails if
the name exists), or, where the file system has no hard links (vfat,
exfat, some CIFS and FUSE mounts), by reserving it with ``O_EXCL`` and
renaming the complete file over the reservation (an empty file for that
moment: a reader never sees part of a product); a replacement by
``rename()``.  The decision and the renames are made holding a lock on
the folder (threads of this process, and ``flock`` on a lock file for
other processes), so that two runs ending together cannot both take one
file for an earlier run's.  Where the file system refuses locks, nothing
is replaced: products of earlier runs are kept and the new ones renamed.

All or none: every product is first put in the folder under a hidden
temporary name (a link, else a copy), and a
replaced file is kept under one until every product is in place; when
anything fails, the names taken are released and the replaced files put
back."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from astropy.io import fits

#: What makes a file the one a call saw: (device, inode, size, mtime, ctime)
Identity = tuple[int, int, int, int, int]

#: The lock file that exists while a run places its products.
LOCK_NAME = '.cplrun-lock'
#: Hidden temporary names in an output folder start with this.
TEMP_PREFIX = '.cplrun-'

#: link() errors that mean "no hard links on this file system".
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV,
                  errno.ENOSYS, errno.EMLINK}
#: flock() errors that mean "this file system refuses locks".
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL,
             errno.ENOSYS}

#: On file systems with whole-second time stamps (FAT's are 2 s), files
#: changed this recently when a call is made are not replaced by its
#: products: twice the coarsest tick, so that a file noted and another
#: placed after the call never share one.
COARSE_STAMP_MARGIN = 4.0

FITS_BLOCK = 2880
CARD = 80


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _whole_seconds(st: os.stat_result) -> bool:
    return st.st_mtime_ns % 1000000000 == 0 and \
        st.st_ctime_ns % 1000000000 == 0


def files_in(directory: str | None, inputs: list[str]) -> dict[str, Identity]:
    """The regular files in directory now, by name, but the inputs (a
    run's input files, which its products never replace): what a call made
    now may replace.  Empty when there is no such folder."""
    found: dict[str, Identity] = {}
    if directory is None:
        return found
    recent = time.time() - COARSE_STAMP_MARGIN
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    read = set()
    for path in inputs:
        try:
            st = os.stat(path)
        except OSError:
            continue
        read.add((st.st_dev, st.st_ino))
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue            # gone since it was listed
        if stat.S_ISREG(st.st_mode) and \
                (st.st_dev, st.st_ino) not in read and not (
                    _whole_seconds(st) and
                    max(st.st_mtime, st.st_ctime) > recent):
            found[entry.name] = _identity(st)
    return found


# --- the folder's lock ------------------------------------------------------------
_threads_lock = threading.Lock()


def _new_threads_lock() -> None:
    # A child forked while another thread placed products must not
    # inherit the lock held.
    global _threads_lock
    _threads_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_threads_lock)


@contextlib.contextmanager
def _folder_locked(directory: str) -> Iterator[bool]:
    """Holds directory's lock; yields False when the file system refuses
    locks (then other processes are not kept out)."""
    with _threads_lock:
        fd = _lock_file(directory)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                # Removed while held: a process waiting on this file then
                # finds it gone and locks a new one.
                unlink_quietly(os.path.join(directory, LOCK_NAME))
                os.close(fd)


def _lock_file(directory: str) -> int | None:
    """An open descriptor of directory's lock file, locked; None when the
    file system refuses locks."""
    path = os.path.join(directory, LOCK_NAME)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except PermissionError:
            # made by another user of a shared folder: locks all the same
            # (but over NFS, which needs it writable)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and \
                    os.path.samestat(current, os.fstat(fd)):
                return fd
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_LOCKS:
                return None
            raise
        os.close(fd)            # its holder removed it meanwhile: again


# --- placing ----------------------------------------------------------------------
@dataclass
class _Placed:
    path: str                   # the product's final path
    replaced: str | None        # the file it replaced, kept under a hidden name


def place_products(paths: list[str], directory: str, logname: str,
                   replaceable: Mapping[str, Identity]) -> list[str]:
    """Moves the files (each a product in a run's folder) into directory
    under their own names, all or none, following the module's rule;
    ``replaceable`` is :func:`files_in` of directory when the call was
    made.  Returns the new paths; on failure raises, and directory and
    the files are as they were."""
    os.makedirs(directory, exist_ok=True)
    staged: list[str] = []
    placed: list[_Placed] = []
    # source -> its PIPEFILE before a rename changed it (a staged link
    # shares the source's file)
    pipefiles: dict[str, str] = {}
    try:
        for path in paths:
            staged.append(_hidden_copy(path, directory))
        with _folder_locked(directory) as locked:
            for path, tmp in zip(paths, staged):
                placed.append(_place(tmp, path, directory, logname,
                                     replaceable, locked, pipefiles))
    except BaseException:
        _undo(placed, pipefiles, logname)
        for tmp in staged:
            unlink_quietly(tmp)
        raise
    for done in placed:
        if done.replaced is not None:
            unlink_quietly(done.replaced)
    for path, tmp in zip(paths, staged):
        unlink_quietly(tmp)
        unlink_quietly(path)
    return [done.path for done in placed]


def _hidden_copy(path: str, directory: str) -> str:
    """A complete file in directory, under a hidden temporary name, with
    path's content: a hard link where there can be one, else a copy."""
    tmp = os.path.join(directory, '%s%s%s' % (
        TEMP_PREFIX, uuid.uuid4().hex[:12], os.path.splitext(path)[1]))
    try:
        os.link(path, tmp)
        return tmp
    except OSError:
        pass
    try:
        with open(path, 'rb') as src, open(tmp, 'xb') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except BaseException:
        unlink_quietly(tmp)
        raise
    return tmp


def _place(tmp: str, source: str, directory: str, logname: str,
           replaceable: Mapping[str, Identity], locked: bool,
           pipefiles: dict[str, str]) -> _Placed:
    name = os.path.basename(source)
    target = os.path.join(directory, name)
    try:
        there = os.lstat(target)
    except FileNotFoundError:
        there = None
    if there is None:
        if _take_name(tmp, target):
            return _Placed(target, None)
        why = 'was just made by another run'
    elif replaceable.get(name) == _identity(there) and \
            _is_product_named(target, name):
        if locked:
            kept = _hidden_copy(target, directory)
            try:
                os.replace(tmp, target)
            except BaseException:
                unlink_quietly(kept)
                raise
            return _Placed(target, kept)
        why = ('is from an earlier run, but cannot be replaced safely here '
               '(this file system refuses file locks)')
    else:
        why = ('is from a run that overlapped this one, or is not a product '
               'of that name')
    return _Placed(_place_renamed(tmp, source, directory, logname, why,
                                  pipefiles), None)


def numbered_names(name: str) -> Iterator[str]:
    """``stem-1.ext``, ``stem-2.ext``, ...: the names a file of name takes
    beside another of its name."""
    stem, ext = os.path.splitext(name)
    for n in range(1, 100000):
        yield '%s-%d%s' % (stem, n, ext)


def _place_renamed(tmp: str, source: str, directory: str, logname: str,
                   why: str, pipefiles: dict[str, str]) -> str:
    name = os.path.basename(source)
    for renamed in numbered_names(name):
        target = os.path.join(directory, renamed)
        if os.path.lexists(target):
            continue
        old = set_pipefile(tmp, renamed)
        if old is not None:
            pipefiles.setdefault(source, old)
        if _take_name(tmp, target):
            logging.getLogger(logname).warning(
                '%s in %s %s; this product was saved as %s', name,
                directory, why, renamed)
            return target
    raise OSError('no free name for %s in %s' % (name, directory))


def _take_name(tmp: str, target: str) -> bool:
    """Puts tmp's file at target unless target exists (False then)."""
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
    # No hard links: reserve the name, then rename the complete file over
    # the (empty) reservation.
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                         os.O_CLOEXEC, 0o600))
    except FileExistsError:
        return False
    try:
        os.replace(tmp, target)
    except BaseException:
        unlink_quietly(target)
        raise
    return True


def _undo(placed: list[_Placed], pipefiles: dict[str, str],
          logname: str) -> None:
    """Takes back what place_products did, last first: names taken are
    released, replaced files put back, PIPEFILEs changed set back."""
    log = logging.getLogger(logname)
    for done in reversed(placed):
        try:
            if done.replaced is not None:
                os.replace(done.replaced, done.path)
            else:
                os.unlink(done.path)
        except OSError as exc:
            log.error('could not take back %s (%s)%s', done.path, exc,
                      '; the file it replaced is %s' % done.replaced
                      if done.replaced else '')
    for source, old in pipefiles.items():
        try:
            set_pipefile(source, old)
        except OSError as exc:
            log.error('could not set PIPEFILE back to %s in %s (%s)',
                      old, source, exc)


def unlink_quietly(path: str) -> None:
    """Removes path if it is there; a file already gone is what was wanted."""
    try:
        os.unlink(path)
    except OSError:
        pass


# --- PIPEFILE -----------------------------------------------------------------------
def set_pipefile(path: str, name: str) -> str | None:
    """Sets ``PIPEFILE`` (the product's own file name, which CPL writes) in
    the primary header of the FITS file path to name, when it has one;
    returns the value it had, or None when nothing changed.  Only that
    card changes: in place when the header keeps its size, else by
    writing a new file with the rest copied, renamed over path.  The
    caller owns path (a temporary name no reader uses)."""
    with open(path, 'r+b') as f:
        cards = _primary_cards(f)
        found = _pipefile_in(cards) if cards is not None else None
        if found is None or found[2] is None or found[2].value == name:
            return None
        first, last, old = found
        new = fits.Card('PIPEFILE', name, old.comment).image.encode('ascii')
        end = next(i for i, card in enumerate(cards) if card[:8] == b'END     ')
        body = b''.join(cards[:first]) + new + b''.join(cards[last:end + 1])
        rewritten = body + b' ' * (-len(body) % FITS_BLOCK)
        signed = any(card[:10] == b'CHECKSUM= ' for card in cards[:end])
        if len(rewritten) == len(cards) * CARD:
            f.seek(0)
            f.write(rewritten)
            grown = None
        else:
            grown = '%s.%s' % (path, uuid.uuid4().hex[:8])
            with open(grown, 'xb') as out:
                out.write(rewritten)
                f.seek(len(cards) * CARD)
                shutil.copyfileobj(f, out, 1 << 20)
    if grown is not None:
        os.replace(grown, path)
    if signed:
        _sign_primary(path)
    return old.value


def _sign_primary(path: str) -> None:
    """Recomputes the primary HDU's CHECKSUM (the runner signs products
    as esorex does, and the PIPEFILE card is part of what it sums), so
    that a renamed product still verifies."""
    with fits.open(path, mode='update', memmap=False) as hdul:
        hdul[0].add_checksum()


def _is_product_named(path: str, name: str) -> bool:
    """Whether path is a FITS file whose PIPEFILE, if any, is name: what
    a product of that name is (another file is not a run's to replace)."""
    try:
        with open(path, 'rb') as f:
            cards = _primary_cards(f)
    except OSError:
        return False
    if cards is None:
        return False
    found = _pipefile_in(cards)
    return found is None or (found[2] is not None and found[2].value == name)


def _pipefile_in(cards: list[bytes]
                 ) -> tuple[int, int, fits.Card | None] | None:
    """Where the PIPEFILE card is (first card, after its CONTINUE cards),
    and the card (None when it cannot be read); None when there is none."""
    first = next((i for i, card in enumerate(cards)
                  if card[:10] == b'PIPEFILE= '), None)
    if first is None:
        return None
    last = first + 1
    while last < len(cards) and cards[last][:8] == b'CONTINUE':
        last += 1
    try:
        card = fits.Card.fromstring(b''.join(cards[first:last]).decode())
        card.value                      # parsed here: it may not be
    except Exception:                   # astropy's many ways to say "bad card"
        card = None
    return first, last, card


def _primary_cards(f) -> list[bytes] | None:
    """The cards of the primary header's blocks (up to the one with END),
    or None when the file does not start as FITS does."""
    data = b''
    while True:
        block = f.read(FITS_BLOCK)
        if len(block) < FITS_BLOCK or (not data and
                                       not block.startswith(b'SIMPLE  =')):
            return None
        data += block
        if any(block[i:i + 8] == b'END     '
               for i in range(0, FITS_BLOCK, CARD)):
            return [data[i:i + CARD] for i in range(0, len(data), CARD)]
