"""The live progress display of a workflow run on a terminal.

:class:`LiveDisplay` shows one line per run (or, when there are more runs
than fit on the terminal, one line per recipe), laid out once at the start
so that no line ever moves, under a line of totals::

    3/5 done  2 running  1 failed  elapsed 0:12
    bias       success      1.2s        [ INFO ] done
    flat-1     running      4.0s  try 2 [ INFO ] combining 12 frames
    ...

It is drawn with Rich's :class:`rich.live.Live`, at most
``refresh_per_second`` times a second; whatever Python prints to
``sys.stdout`` / ``sys.stderr`` meanwhile (``print``, warnings, logging
handlers writing to the terminal) appears above the display instead of
over it.  Text from recipes is shown literally (never parsed as markup),
on one line, cut to the terminal width.
"""
from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, Iterable, Sequence

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from ._report import products_text

#: Style of each run status.
STATUS_STYLES = {
    'pending': 'dim',
    'running': 'bold blue',
    'success': 'green',
    'cached': 'cyan',
    'failed': 'bold red',
    'crashed': 'bold red',
    'timeout': 'bold red',
    'skipped': 'yellow',
    'cancelled': 'yellow',
}
#: The order statuses are counted in on a recipe's line.
STATUS_ORDER = ('running', 'success', 'cached', 'failed', 'crashed',
                'timeout', 'skipped', 'cancelled', 'pending')
FAILED = ('failed', 'crashed', 'timeout')
UNFINISHED = ('pending', 'running')
#: Terminal lines not available to rows: the totals line and some room
#: (the cursor line, a line printed meanwhile).
RESERVED_LINES = 4

#: Messages are cut to this many characters before anything else.
MAX_MESSAGE = 4096

_STATUS_W = 9
_TIME_W = 8
_TRY_W = 6
_ANSI = re.compile(r'\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)')
_CONTROL = re.compile(r'[\x00-\x1f\x7f-\x9f]+')


def one_line(message: Any) -> str:
    """A message as one line of plain text: terminal escape sequences
    dropped, newlines, tabs and other control characters turned into
    spaces."""
    text = _ANSI.sub('', str(message)[:MAX_MESSAGE])
    return _CONTROL.sub(' ', text).strip()


def format_seconds(seconds: float | None) -> str:
    """``4.2s``, ``3:07``, ``1:02:03``; '' for None."""
    if seconds is None:
        return ''
    seconds = max(0.0, seconds)
    if seconds < 60:
        return '%.1fs' % seconds
    s = int(seconds)
    if s < 3600:
        return '%d:%02d' % (s // 60, s % 60)
    return '%d:%02d:%02d' % (s // 3600, s // 60 % 60, s % 60)


def run_elapsed(record: Any, now: float) -> float | None:
    """Running: time since it started; finished: its wall time."""
    if record.status == 'running':
        return now - record.started if record.started is not None else None
    return record.wall_s


class LiveDisplay:
    """Live table of a workflow's runs; see the module's documentation.

    ``records``: the runs (:class:`cpl.parallel.RunRecord`), read at every
    refresh, mutated by the caller.  ``console``: where to draw
    (default: a :class:`rich.console.Console` on stdout).  ``group``:
    True/False forces one line per recipe / per run; by default lines are
    grouped when the runs do not fit on the terminal.

    Use as a context manager; call :meth:`update` whenever something may
    have changed (cheap: it redraws at most ``refresh_per_second`` times a
    second).  Leaving the context draws the final state and stops, leaving
    the table on the screen."""

    def __init__(self, records: Sequence[Any], console: Console | None = None,
                 refresh_per_second: float = 4.0,
                 group: bool | None = None) -> None:
        self.records = list(records)
        self.console = console if console is not None else Console()
        self.min_interval = 1.0 / refresh_per_second \
            if refresh_per_second > 0 else 0.0
        self.started = time.time()
        self._live: Live | None = None
        self._last_refresh = 0.0
        self._handlers: list[tuple[logging.StreamHandler, Any]] = []
        # The layout, fixed once and for all (the terminal's height now).
        height = self.console.size.height
        self.max_rows = max(1, height - RESERVED_LINES)
        if group is None:
            group = len(self.records) > self.max_rows
        self.grouped = group
        self.groups: list[tuple[str, list[Any]]] = []
        if group:
            by_recipe: dict[str, list[Any]] = {}
            for r in self.records:
                by_recipe.setdefault(r.recipe, []).append(r)
            groups = list(by_recipe.items())
            if len(groups) > self.max_rows:
                # The last line gathers the recipes that do not fit.
                keep = self.max_rows - 1
                rest = [r for _name, rs in groups[keep:] for r in rs]
                groups = groups[:keep] + [
                    ('+%d recipes' % (len(groups) - keep), rest)]
            self.groups = groups
        labels = [g for g, _rs in self.groups] if group else \
            [r.name for r in self.records]
        self.label_width = max([len(x) for x in labels] + [4])

    # -- the context
    def __enter__(self) -> 'LiveDisplay':
        self.started = time.time()
        out, err = sys.stdout, sys.stderr
        self._live = Live(self, console=self.console, auto_refresh=False,
                          redirect_stdout=True, redirect_stderr=True,
                          transient=False)
        self._live.start(refresh=True)
        self._last_refresh = time.monotonic()
        self._reroute_logging({out: sys.stdout, err: sys.stderr})
        return self

    def __exit__(self, *exc: Any) -> bool:
        live, self._live = self._live, None
        if live is not None:
            try:
                live.stop()         # draws the final state once more
            finally:
                self._restore_logging()
        return False

    def update(self) -> None:
        """Redraws, unless it was drawn less than 1/refresh_per_second
        ago."""
        if self._live is None:
            return
        now = time.monotonic()
        if now - self._last_refresh < self.min_interval:
            return
        self._last_refresh = now
        self._live.refresh()

    def _reroute_logging(self, streams: dict) -> None:
        """Logging handlers made before the display write to the real
        stdout/stderr they were given, not to sys.stderr: while the display
        is on, they write through Live's redirection instead."""
        streams = {old: new for old, new in streams.items() if old is not new}
        if not streams:
            return
        loggers = [logging.getLogger()] + [
            lg for lg in list(logging.Logger.manager.loggerDict.values())
            if isinstance(lg, logging.Logger)]
        seen = set()
        for lg in loggers:
            for h in list(lg.handlers):
                if id(h) in seen or type(h) is not logging.StreamHandler:
                    continue
                seen.add(id(h))
                new = streams.get(getattr(h, 'stream', None))
                if new is not None:
                    old = h.setStream(new)
                    self._handlers.append((h, old))

    def _restore_logging(self) -> None:
        for h, old in self._handlers:
            h.setStream(old)
        self._handlers = []

    # -- drawing
    def __rich_console__(self, console: Console,
                         options: ConsoleOptions) -> RenderResult:
        width = max(1, options.max_width)
        for line in self.lines(width):
            line.no_wrap = True
            line.overflow = 'ellipsis'
            line.truncate(width, overflow='ellipsis')
            yield line

    def lines(self, width: int | None = None) -> list[Text]:
        """The display now: the totals line, then one line per run or
        group, always in the same order."""
        if width is None:
            width = self.console.width
        now = time.time()
        lines = [self._totals(now)]
        if self.grouped:
            lines.extend(self._group_line(label, rs, now, width)
                         for label, rs in self.groups)
        else:
            lines.extend(self._run_line(r, now, width) for r in self.records)
        return lines

    def _label(self, label: str, width: int, reserved: int) -> Text:
        w = max(4, min(self.label_width, width - reserved))
        text = Text(label)
        text.truncate(w, overflow='ellipsis', pad=True)
        text.stylize('bold')        # the label only, not what follows
        return text

    def _totals(self, now: float) -> Text:
        counts = _count(self.records)
        done = sum(n for s, n in counts.items() if s not in UNFINISHED)
        text = Text()
        text.append('%d/%d done' % (done, len(self.records)), style='bold')
        if counts.get('running'):
            text.append('  %d running' % counts['running'],
                        style=STATUS_STYLES['running'])
        failed = sum(counts.get(s, 0) for s in FAILED)
        if failed:
            text.append('  %d failed' % failed, style='bold red')
        for s in ('skipped', 'cancelled'):
            if counts.get(s):
                text.append('  %d %s' % (counts[s], s), style=STATUS_STYLES[s])
        text.append('  elapsed %s' % format_seconds(now - self.started),
                    style='dim')
        return text

    def _run_line(self, r: Any, now: float, width: int) -> Text:
        reserved = 3 + _STATUS_W + _TIME_W + _TRY_W + 12
        line = self._label(r.name, width, reserved)
        line.append('  ')
        line.append(r.status.ljust(_STATUS_W),
                    style=STATUS_STYLES.get(r.status, ''))
        line.append(format_seconds(run_elapsed(r, now)).rjust(_TIME_W))
        tries = 'try %d' % r.attempts if (r.attempts or 0) > 1 else ''
        line.append(' ' + tries.ljust(_TRY_W), style='yellow')
        message = r.message if r.status == 'running' else None
        if message is None and r.status in FAILED + ('skipped', 'cancelled'):
            message = r.error
        style = 'red' if r.status in FAILED else ''
        if message is None and r.warnings:
            # a success with warnings is not silent
            message = '%d warning%s: %s' % (
                r.warnings, '' if r.warnings == 1 else 's',
                r.warning_lines[0] if r.warning_lines else '')
            style = 'yellow'
        if message:
            text = one_line(message)
            line.append(' ')
            line.append(text[:width], style=style)
        return line

    def _group_line(self, label: str, rs: list, now: float,
                    width: int) -> Text:
        line = self._label(label, width, 30)
        counts = _count(rs)
        line.append('  %d run%s: ' % (len(rs), '' if len(rs) == 1 else 's'))
        first = True
        for s in STATUS_ORDER + tuple(sorted(set(counts) - set(STATUS_ORDER))):
            if counts.get(s):
                if not first:
                    line.append(', ')
                first = False
                line.append('%d %s' % (counts[s], s),
                            style=STATUS_STYLES.get(s, ''))
        # The latest message of the running run that started first (the
        # same run as long as it runs).
        running = [r for r in rs if r.status == 'running' and r.message]
        if running:
            r = min(running, key=lambda r: r.started or 0.0)
            line.append('  ')
            line.append(r.name + ': ', style='dim')
            line.append(one_line(r.message)[:width])
        return line


class EventLog:
    """The progress of a workflow run where no live display can be drawn
    (stdout a pipe or a file: nohup, sbatch, cron, CI logs): one plain
    line per event, written and flushed as it happens::

        16:02:03 started  n1-bias (muse_bias)
        16:02:05 success  n1-bias (muse_bias) 1.2s, 2 warnings, product /out/n1-bias/MASTER_BIAS.fits
        16:02:05 failed   dark (muse_dark) 0.1s: Required 1, found 0 frames with tag "MASTER_BIAS" with IFU 1

    The same interface as :class:`LiveDisplay`; :meth:`update` writes the
    events since its last call.  ``file``: where (default: sys.stdout at
    the time of writing).  A stream that cannot be written any more (a
    pipe whose reader went away) ends the lines, not the runs."""

    def __init__(self, records: Sequence[Any], file: Any = None) -> None:
        self.records = list(records)
        self.file = file
        self._seen: dict[str, tuple[str, int]] = {}
        self._closed = False

    def __enter__(self) -> 'EventLog':
        self.update()
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.update()
        return False

    def update(self) -> None:
        for r in self.records:
            state = (r.status, r.attempts)
            before = self._seen.get(r.name, ('pending', 0))
            if before == state:
                continue
            self._seen[r.name] = state
            if r.status == 'pending':
                continue
            if r.started is not None and before != ('running', r.attempts):
                # started and finished since the last update: both lines
                self._write(self.started_line(r))
            if r.status != 'running':
                self._write(self.line(r))

    @staticmethod
    def started_line(r: Any) -> str:
        return '%s started  %s (%s)%s' % (
            time.strftime('%H:%M:%S', time.localtime(r.started)), r.name,
            r.recipe, ' try %d' % r.attempts if r.attempts > 1 else '')

    def line(self, r: Any) -> str:
        """The line of a finished run."""
        text = '%s %-8s %s (%s)' % (time.strftime('%H:%M:%S'), r.status,
                                    r.name, r.recipe)
        details = []
        if r.wall_s is not None and r.status != 'cached':
            details.append(format_seconds(r.wall_s))
        if r.warnings:
            details.append('%d warning%s' % (r.warnings,
                                             '' if r.warnings == 1 else 's'))
        if r.products:
            details.append(products_text(r.products))
        if details:
            text += ' ' + ', '.join(details)
        if r.error and r.status not in ('success', 'cached'):
            text += ': ' + one_line(str(r.error).split('\n', 1)[0])
        return text

    def _write(self, line: str) -> None:
        if self._closed:
            return
        out = self.file if self.file is not None else sys.stdout
        try:
            out.write(line + '\n')
            out.flush()
        except (OSError, ValueError):
            # The reader went away (or the stream was closed): the runs go
            # on, their report is written all the same.
            self._closed = True


def _count(records: Iterable[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts
