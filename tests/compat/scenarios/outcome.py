"""What a scenario records, normalised so that python-cpl's run and
cplrun's run can be compared: the same module runs under both.

A scenario puts entries in :data:`report` with :func:`record` (or
:func:`attempt`, which records what a call returned or raised); the
launcher prints the report as JSON.  Values become JSON: types by name,
products by file name and header (without dates, checksums, folders),
exceptions by class and MRO (so that cplrun may raise a subclass), log
records by level.  Nothing here knows which package it runs under.
"""
import logging
import os
import re

from astropy.io import fits

#: The scenario's settings (paths of the inputs; set by the launcher).
config = {}
#: What the scenario recorded, by name.
report = {}

#: Header keywords whose values change from run to run or with the folder.
_VOLATILE_KEYS = re.compile(
    r'^(DATE|CHECKSUM|DATASUM|ESO PRO REC\d+ (START|STOP))$')
#: Header keywords whose values are file names: compared by base name.
_NAME_KEYS = re.compile(r'(^PIPEFILE$|^ORIGFILE$| NAME$)')


def record(name, value):
    """Stores value (normalised) under name; returns value."""
    if name in report:
        raise KeyError('scenario records %r twice' % name)
    report[name] = normalise(value)
    return value


def attempt(name, function, *args, **kwargs):
    """Calls function and records what it returned, or the exception it
    raised; returns the value (None when it raised)."""
    try:
        value = function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 -- the class is the outcome
        record(name, {'raised': exception(exc)})
        return None
    record(name, {'returned': value})
    return value


def exception(exc):
    """An exception as its class, the names of its classes (the harness
    accepts a subclass of python-cpl's class) and its message's shape."""
    return {'__exception__': type(exc).__name__,
            'mro': [c.__name__ for c in type(exc).__mro__]}


def type_name(value):
    return type(value).__name__


def normalise(value):
    if isinstance(value, (bool, int, float, type(None))):
        return value
    if isinstance(value, str):
        return _short_path(value)
    if isinstance(value, fits.HDUList):
        return hdulist(value)
    if isinstance(value, BaseException):
        return exception(value)
    if isinstance(value, type):
        return {'__type__': value.__name__}
    if isinstance(value, dict):
        return {_short_path(str(k)): normalise(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(normalise(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return {'__object__': type_name(value)}


def _short_path(text):
    """An absolute path as its base name (runs happen in other folders)."""
    if text.startswith('/') and '\n' not in text:
        return os.path.basename(text.rstrip('/'))
    return text


def header(hdr):
    """A FITS header as {keyword: value}, without the volatile values."""
    found = {}
    for card in hdr.cards:
        key = card.keyword
        if not key or key in ('COMMENT', 'HISTORY'):
            continue
        if _VOLATILE_KEYS.match(key):
            found[key] = '<volatile>'
        elif _NAME_KEYS.search(key) and isinstance(card.value, str):
            found[key] = os.path.basename(card.value)
        else:
            found[key] = normalise(card.value)
    return found


def hdulist(hdus):
    return {'__type__': 'HDUList',
            'hdus': [{'header': header(h.header),
                      'shape': list(h.data.shape) if getattr(h, 'data', None)
                      is not None and hasattr(h.data, 'shape') else None}
                     for h in hdus]}


def product(value):
    """A product (a path or an HDUList, or a list of them) as its type,
    file name and headers."""
    if isinstance(value, list) and not isinstance(value, fits.HDUList):
        return [product(v) for v in value]
    if isinstance(value, str):
        with fits.open(value) as hdus:
            described = hdulist(hdus)
        described['__type__'] = 'str'
        described['file'] = os.path.basename(value)
        return described
    return normalise(value)


def result(res):
    """A Result (or a threaded call's stand-in): its tags, the type and
    content of each product, stat's attribute types, the log by level."""
    return {'tags': sorted(res.tags),
            'len': len(res),
            'products': {tag: product(res[tag]) for tag in sorted(res.tags)},
            'iter': sorted(tag for tag, _ in res),
            'stat': {k: type_name(getattr(res.stat, k)) for k in
                     ('return_code', 'user_time', 'sys_time',
                      'memory_is_empty', 'mtrace')},
            'return_code': res.stat.return_code,
            'error': normalise(res.error),
            'log': log(res.log)}


def _printed(rec):
    """A line the recipe printed itself (cplrun keeps them, under
    ``cpl.<recipe>.output``; python-cpl loses them)."""
    return rec.name.endswith('.output')


def _in_work(line):
    """A log line with the scenario's folder (each side has its own) left
    out of the paths in it."""
    return line.replace(os.getcwd() + os.sep, '')


def log(entries):
    """A LogList: its type, records by level name, the warning and error
    lines, the logger names; the lines the recipe printed itself only as
    a count (``printed``)."""
    if entries is None:
        return None
    levels = {}
    for rec in entries:
        if not _printed(rec):
            levels[rec.levelname] = levels.get(rec.levelname, 0) + 1
    kept = [r for r in entries if not _printed(r)]
    return {'type': type_name(entries),
            'record_type': sorted({type_name(r) for r in kept}),
            'levels': levels,
            'error': [_in_work(line) for line in entries.error],
            'warning': [_in_work(line) for line in entries.warning],
            'info_count': len([r for r in kept if r.levelno >= logging.INFO]),
            'debug_count': len(kept),
            'loggers': sorted({r.name for r in kept}),
            'printed': len(entries) - len(kept)}


def listing(folder):
    """Files below folder (relative names, sorted), or None if there is no
    such folder."""
    if not os.path.isdir(folder):
        return None
    found = []
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(top, name), folder))
    return sorted(found)


class Captured(logging.Handler):
    """Collects the records that reach a logger (here: ``cpl``)."""

    def __init__(self, name='cpl'):
        super().__init__(logging.DEBUG)
        self.records = []
        self.logger = logging.getLogger(name)

    def __enter__(self):
        self.logger.addHandler(self)
        self.saved_level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc_info):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.saved_level)

    def emit(self, rec):
        self.records.append(rec)

    def summary(self):
        """Records by logger name and level; the lines the recipe printed
        itself as a count (``printed``)."""
        found = {'printed': 0}
        for rec in self.records:
            key = 'printed' if _printed(rec) else '%s:%s' % (rec.name,
                                                             rec.levelname)
            found[key] = found.get(key, 0) + 1
        return found
