"""Recipe messages as Python :mod:`logging` records.

Each run writes CPL's log file in its work folder; its lines become
:class:`logging.LogRecord` objects under the logger
``cpl.<recipe>.<function>`` (the CPL component), are handed to Python
logging as they appear, and are kept in the run's :class:`LogList`.

A log of any size costs a bounded amount of memory: it is read in pieces,
the list keeps its first and last records (LOG_HEAD_RECORDS,
LOG_TAIL_RECORDS), a line keeps its first MAX_LINE_BYTES, and the whole
log stays in a file the list names.
"""
from __future__ import annotations

import datetime
import logging
import os
import re
import shutil
import tempfile
import time
import weakref
from collections import deque

logging.getLogger('cpl').addHandler(logging.NullHandler())

#: CPL severity names, as written in CPL log files, to logging levels.
level = {'DEBUG': logging.DEBUG, 'INFO': logging.INFO,
         'WARNING': logging.WARNING, 'ERROR': logging.ERROR,
         'OFF': logging.CRITICAL + 1}

#: The CPL severity levels, lowest first, as logging levels.
cpl_verbosity = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                 logging.CRITICAL + 1]

#: A run's LogList keeps its first LOG_HEAD_RECORDS records and its last
#: LOG_TAIL_RECORDS: about 20 MB, whatever the log's size.
LOG_HEAD_RECORDS = 2000
LOG_TAIL_RECORDS = 28000
#: A log line longer than this is cut in its record (not in the file).
MAX_LINE_BYTES = 16 << 10
#: How much of a log file is read at once.
READ_BYTES = 1 << 20

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
    messages at or above that level as ``'function: message'`` strings.

    A long log keeps only its first and last records, with a warning
    record (function ``cplrun``) between them saying how many were left
    out and where the whole log is; so do lines that were cut.
    :attr:`omitted` is the number of records left out (0: the log is
    complete), :attr:`cut` the number of lines cut, :attr:`file` the whole
    log's file (None when nothing is missing)."""

    omitted = 0
    cut = 0
    file: str | None = None

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


def _remove_if_owner(path: str, owner_pid: int) -> None:
    """Removes a kept log file, but not from a forked child (the file is
    its parent's)."""
    if os.getpid() == owner_pid:
        try:
            os.unlink(path)
        except OSError:
            pass


class _LineSplitter:
    """Splits bytes into lines as they come; a line keeps at most its first
    MAX_LINE_BYTES (the rest is skipped, and counted in ``cut``)."""

    def __init__(self) -> None:
        self._partial = b''
        self._skipping = False
        self.cut = 0

    def feed(self, data: bytes) -> list[bytes]:
        if self._skipping:
            end = data.find(b'\n')
            if end < 0:
                return []
            data, self._skipping = data[end + 1:], False
        lines = (self._partial + data).split(b'\n')
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE_BYTES:
            lines.append(self._partial)
            self._partial, self._skipping = b'', True
        for i, line in enumerate(lines):
            if len(line) > MAX_LINE_BYTES:
                lines[i] = line[:MAX_LINE_BYTES] + \
                    b' [cut at %d bytes]' % MAX_LINE_BYTES
                self.cut += 1
        return lines

    def end(self) -> list[bytes]:
        """The last line, when it had no newline."""
        rest, self._partial, self._skipping = self._partial, b'', False
        return [rest] if rest else []


def _read_lines(path: str, offset: int, splitter: _LineSplitter):
    """(offset, lines) for each piece of path from offset to its size now."""
    try:
        f = open(path, 'rb')
    except FileNotFoundError:
        return
    with f:
        end = os.fstat(f.fileno()).st_size
        f.seek(offset)
        while offset < end:
            data = f.read(min(READ_BYTES, end - offset))
            if not data:
                return
            offset += len(data)
            yield offset, splitter.feed(data)


def _decode(line: bytes) -> str:
    return line.decode('utf-8', errors='replace').rstrip('\r')


class LogReader:
    """Turns the lines of one run's log file into records, as they come.

    :meth:`poll` reads what was appended since the last call, so a waiting
    run can forward messages while the recipe still works.  Every record
    goes to Python logging; the first LOG_HEAD_RECORDS and the last
    LOG_TAIL_RECORDS are kept for the run's :class:`LogList`."""

    def __init__(self, path: str, logname: str,
                 loglevel: int | None = None) -> None:
        self.path = path
        self.logname = logname
        self.loglevel = loglevel
        self._head: list[logging.LogRecord] = []
        self._tail: deque[logging.LogRecord] = deque(maxlen=LOG_TAIL_RECORDS)
        self._omitted = 0
        self._last: logging.LogRecord | None = None
        self._offset = 0
        self._lines = _LineSplitter()
        #: what the recipe printed directly (add_output), once read
        self._output_path: str | None = None
        self._output_cut = 0
        self._day = datetime.date.today()
        #: per 'hh:mm:ss' of the lines, their time stamp; and the loggers by
        #: name: a run's lines share a few of each
        self._times: dict[str, float] = {}
        self._loggers: dict[str, logging.Logger] = {}

    @property
    def last_message(self) -> str | None:
        return self._last.getMessage() if self._last is not None else None

    @property
    def complete(self) -> bool:
        """Whether the kept records are the whole log."""
        return not (self._omitted or self._lines.cut or self._output_cut)

    def poll(self) -> None:
        for self._offset, lines in _read_lines(self.path, self._offset,
                                               self._lines):
            for line in lines:
                self._add(_decode(line))

    def close(self) -> None:
        """Reads the rest, including a last line without newline."""
        self.poll()
        for line in self._lines.end():
            self._add(_decode(line))

    def add_output(self, path: str) -> None:
        """Adds what the recipe printed directly (bypassing CPL's
        messaging) from path, after the log's records."""
        self._output_path = path
        splitter = _LineSplitter()
        logger = logging.getLogger(self.logname + '.output')
        for _offset, lines in _read_lines(path, 0, splitter):
            self._add_output_lines(logger, lines)
        self._add_output_lines(logger, splitter.end())
        self._output_cut = splitter.cut

    def _add_output_lines(self, logger: logging.Logger, lines: list[bytes]
                          ) -> None:
        # Printed lines count as INFO: a call's loglevel above that drops
        # them, as it keeps CPL from writing its own INFO messages.
        if self.loglevel is not None and self.loglevel > logging.INFO:
            return
        for line in lines:
            # lineno 0, not None: formats with %(lineno)d (pytest's) need one.
            record = logging.LogRecord(logger.name, logging.INFO, None, 0,
                                       _decode(line), None, None, 'output')
            record.threadid = None
            self._keep(record)
            if logger.isEnabledFor(logging.INFO):
                logger.handle(record)

    @property
    def entries(self) -> LogList:
        """The kept records; when some are missing, a note says that the
        whole log is the run's log file (and its output file)."""
        whole = self.path
        if self._output_path and os.path.exists(self._output_path):
            whole += ', and what the recipe printed in %s' % self._output_path
        return self._records(self.path, whole)

    def entries_outliving(self, log_copy: str | None,
                          temp_dir: str | None) -> LogList:
        """The kept records, for a result that outlives the run's folder.
        When some are missing, the whole log (CPL's, then what the recipe
        printed) is log_copy (a copy made of it already), or else a file of
        its own in temp_dir, removed with the LogList (or at exit)."""
        if self.complete:
            return self._records(None, None)
        if log_copy and self._is_whole_copy(log_copy):
            return self._records(log_copy, log_copy)
        try:
            fd, path = tempfile.mkstemp(prefix='cplrun-log-', suffix='.log',
                                        dir=temp_dir)
        except OSError as exc:
            return self._records(None, 'nowhere (%s)' % exc)
        try:
            with open(fd, 'wb') as out:
                for source in (self.path, self._output_path):
                    if source and os.path.exists(source):
                        with open(source, 'rb') as f:
                            shutil.copyfileobj(f, out, READ_BYTES)
        except OSError as exc:
            _remove_if_owner(path, os.getpid())
            return self._records(None, 'nowhere (%s)' % exc)
        entries = self._records(path, path)
        weakref.finalize(entries, _remove_if_owner, path, os.getpid())
        return entries

    def _is_whole_copy(self, path: str) -> bool:
        def size(name):
            try:
                return os.path.getsize(name) if name else 0
            except OSError:
                return 0
        return os.path.isfile(path) and size(path) == \
            size(self.path) + size(self._output_path)

    def _records(self, file: str | None, whole: str | None) -> LogList:
        entries = LogList(self._head)
        if not self.complete:
            entries.append(self._note(whole))
        entries.extend(self._tail)
        entries.omitted = self._omitted
        entries.cut = self._lines.cut + self._output_cut
        entries.file = None if self.complete else file
        return entries

    def _note(self, whole: str | None) -> logging.LogRecord:
        parts = []
        if self._omitted:
            parts.append('%d log lines are left out here (the first %d and '
                         'the last %d are kept)' % (
                             self._omitted, len(self._head), len(self._tail)))
        cut = self._lines.cut + self._output_cut
        if cut:
            parts.append('%d lines longer than %d bytes were cut'
                         % (cut, MAX_LINE_BYTES))
        msg = '%s; the whole log is in %s' % ('; '.join(parts), whole)
        record = logging.LogRecord('%s.cplrun' % self.logname, logging.WARNING,
                                   None, 0, msg, None, None, 'cplrun')
        record.threadid = None
        return record

    def _keep(self, record: logging.LogRecord) -> None:
        self._last = record
        if len(self._head) < LOG_HEAD_RECORDS:
            self._head.append(record)
            return
        if len(self._tail) == LOG_TAIL_RECORDS:
            self._omitted += 1
        self._tail.append(record)

    def _add(self, line: str) -> None:
        m = _CPL_LINE.match(line)
        if m is not None:
            hh, mm, ss, severity, func, tid, msg = m.groups()
            lvl = level.get(severity.upper(), logging.INFO)
            created = self._created(hh, mm, ss)
            thread = int(tid) if tid is not None else None
        elif self._last is not None and line.strip():
            # A message spanning several lines continues the previous one.
            last = self._last
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
        self._keep(record)
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
