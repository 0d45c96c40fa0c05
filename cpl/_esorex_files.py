"""The files of EsoRex: its "set of files" (``.sof``) and its
configuration (``.rc``), read into plain data.  Beside :mod:`cpl.esorex`
(which names them for users) and below :mod:`cpl.recipe`, which reads
them for a recipe's ``calib`` and ``param``."""
from __future__ import annotations

import os
from typing import IO, Any, Iterable


class SofError(ValueError):
    """A line of a SOF or rc file that cannot be read."""


#: Endings of file names, which a tag or a group does not have.
_FILE_ENDINGS = ('.fits', '.fit', '.fts', '.fz', '.gz')


def _lines(source: str | IO | Iterable[str]) -> tuple[str, Iterable[str]]:
    """(name for messages, lines) of a path, a text, or a file object."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if '\n' not in text and os.path.exists(text):
            # utf-8-sig: a byte order mark is not part of the first path
            with open(text, encoding='utf-8-sig', errors='replace') as f:
                return text, f.read().splitlines()
        if '\n' not in text and text.strip() and \
                not any(c.isspace() for c in text.strip()):
            # one word: the name of a file, not a file's text
            raise FileNotFoundError(2, 'no such file: %s' % text, text)
        return '<text>', text.splitlines()
    return getattr(source, 'name', '<file>'), list(source)


def load_sof(source: str | IO | Iterable[str]) -> dict[str, Any]:
    """Reads an EsoRex "set of files": lines ``PATH TAG [GROUP]``, with
    ``#`` comments and blank lines skipped.  Returns tag -> path, or tag ->
    list of paths when the tag has several.  A duplicate line is kept once.
    Paths are taken as written (relative ones relative to the current
    folder, as in esorex)."""
    name, lines = _lines(source)
    result: dict[str, Any] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        words = line.split()
        if len(words) < 2 or len(words) > 3:
            raise SofError('%s line %d: expected "PATH TAG [GROUP]", got %r'
                           % (name, number, line))
        for word in words[1:]:
            if word.lower().endswith(_FILE_ENDINGS) or '/' in word:
                raise SofError('%s line %d: %r looks like part of a file '
                               'name, not a tag or group; a file name with '
                               'spaces cannot be written in a SOF'
                               % (name, number, word))
        path, tag = words[0], words[1]
        current = result.get(tag)
        if current is None:
            result[tag] = path
        elif isinstance(current, list):
            if path not in current:
                current.append(path)
        elif current != path:
            result[tag] = [current, path]
    return result


def load_rc(source: str | IO | Iterable[str] | None = None) -> dict[str, str]:
    """Reads an EsoRex configuration file (default
    ``~/.esorex/esorex.rc``): ``name=value`` lines, ``#`` comments.
    Returns full parameter name -> value string."""
    if source is None:
        source = os.path.expanduser('~/.esorex/esorex.rc')
    name, lines = _lines(source)
    result = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        key, eq, value = line.partition('=')
        if not eq or not key.strip() or any(c.isspace() for c in key.strip()):
            raise SofError('%s line %d: expected "name=value", got %r'
                           % (name, number, line))
        result[key.strip()] = value.strip()
    return result
