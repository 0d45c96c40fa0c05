"""Recipe messages as Python :mod:`logging` records.

Each run writes CPL's log file in its work folder; its lines become
:class:`logging.LogRecord` objects under the logger
``cpl.<recipe>.<function>`` (the CPL component), are handed to Python
logging as they appear, and are kept in the run's :class:`LogList`.
"""
from __future__ import annotations

import datetime
import logging
import re
import time

logging.getLogger('cpl').addHandler(logging.NullHandler())

#: CPL severity names, as written in CPL log files, to logging levels.
level = {'DEBUG': logging.DEBUG, 'INFO': logging.INFO,
         'WARNING': logging.WARNING, 'ERROR': logging.ERROR,
         'OFF': logging.CRITICAL + 1}

#: The CPL severity levels, lowest first, as logging levels.
cpl_verbosity = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                 logging.CRITICAL + 1]

_CPL_LINE = re.compile(
    r'(\d\d):(\d\d):(\d\d) \[\s*(\w+)\s*\] (\S+?):(?: \[tid=(\d+)\])? ?(.*)$')


def runner_loglevel(loglevel: int | None) -> str:
    """The CPL log level a run needs so that Python logging at loglevel
    misses nothing; None: everything."""
    if loglevel is None or loglevel <= logging.DEBUG:
        return 'debug'
    if loglevel <= logging.INFO:
        return 'info'
    if loglevel <= logging.WARNING:
        return 'warning'
    if loglevel <= logging.ERROR:
        return 'error'
    return 'off'


class LogList(list):
    """The log records of one run, oldest first.

    Iterating gives :class:`logging.LogRecord` objects; the attributes
    :attr:`error`, :attr:`warning`, :attr:`info` and :attr:`debug` give the
    messages at or above that level as ``'function: message'`` strings."""

    def filter(self, level: int) -> list[str]:
        return ['%s: %s' % (r.funcName, r.msg) for r in self
                if r.levelno >= level]

    @property
    def error(self) -> list[str]:
        return self.filter(logging.ERROR)

    @property
    def warning(self) -> list[str]:
        return self.filter(logging.WARNING)

    @property
    def info(self) -> list[str]:
        return self.filter(logging.INFO)

    @property
    def debug(self) -> list[str]:
        return self.filter(logging.DEBUG)


class LogReader:
    """Turns the lines of one run's log file into records, as they come.

    :meth:`poll` reads what was appended since the last call, so a waiting
    run can forward messages while the recipe still works."""

    def __init__(self, path: str, logname: str,
                 loglevel: int | None = None) -> None:
        self.path = path
        self.logname = logname
        self.loglevel = loglevel
        self.entries = LogList()
        self._offset = 0
        self._partial = b''
        self._day = datetime.date.today()
        #: per 'hh:mm:ss' of the lines, their time stamp; and the loggers by
        #: name: a run's lines share a few of each
        self._times: dict[str, float] = {}
        self._loggers: dict[str, logging.Logger] = {}

    @property
    def last_message(self) -> str | None:
        return self.entries[-1].getMessage() if self.entries else None

    def poll(self) -> None:
        try:
            with open(self.path, 'rb') as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b'\n')
        self._partial = lines.pop()
        for line in lines:
            self._add(line.decode('utf-8', errors='replace').rstrip('\r'))

    def close(self) -> None:
        """Reads the rest, including a last line without newline."""
        self.poll()
        if self._partial:
            self._add(self._partial.decode('utf-8', errors='replace'))
            self._partial = b''

    def _add(self, line: str) -> None:
        m = _CPL_LINE.match(line)
        if m is not None:
            hh, mm, ss, severity, func, tid, msg = m.groups()
            lvl = level.get(severity.upper(), logging.INFO)
            created = self._created(hh, mm, ss)
            thread = int(tid) if tid is not None else None
        elif self.entries and line.strip():
            # A message spanning several lines continues the previous one.
            last = self.entries[-1]
            lvl, func, msg = last.levelno, last.funcName, line.rstrip()
            created, thread = last.created, last.threadid
        else:
            return
        name = '%s.%s' % (self.logname, func)
        # lineno 0, not None: formats with %(lineno)d (pytest's) need one.
        record = logging.LogRecord(name, lvl, None, 0, msg, None, None,
                                   func)
        record.created = created
        record.msecs = 0.0
        record.threadid = thread
        record.threadName = 'Cpl-%03i' % thread if thread else 'CplThread'
        self.entries.append(record)
        log = self._loggers.get(name)
        if log is None:
            log = self._loggers[name] = logging.getLogger(name)
        if (self.loglevel is None or lvl >= self.loglevel) \
                and log.isEnabledFor(lvl):
            log.handle(record)

    def _created(self, hh: str, mm: str, ss: str) -> float:
        """The time stamp of a line stamped hh:mm:ss (CPL writes no date)."""
        key = hh + mm + ss
        created = self._times.get(key)
        if created is None:
            created = datetime.datetime.combine(
                self._day, datetime.time(int(hh), int(mm), int(ss))).timestamp()
            if created > time.time() + 60:      # the run started yesterday
                created -= 86400
            self._times[key] = created
        return created
