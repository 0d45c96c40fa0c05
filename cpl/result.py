"""What a recipe call gives back: its products, or the reason it has none."""
from __future__ import annotations

import collections
import io
import logging
import os
import re
import signal as _signal
import sys
import warnings
from typing import Any, Iterator

from astropy.io import fits

from .logger import LogList


class Stat:
    """Resource use of one run.

    ``return_code`` is the recipe's return value; ``user_time`` and
    ``sys_time`` the CPU seconds of the recipe process and its children;
    ``memory_is_empty`` whether CPL's memory check found everything freed
    (None unless :attr:`cpl.Recipe.memory_mode` enables the check);
    ``wall_time`` seconds from start to end; ``max_rss_mb`` peak resident
    memory of the recipe process."""

    def __init__(self, return_code: int, user_time: float, sys_time: float,
                 memory_is_empty: bool | None, wall_time: float = 0.0,
                 max_rss_mb: float = 0.0) -> None:
        self.return_code = return_code
        self.user_time = user_time
        self.sys_time = sys_time
        self.memory_is_empty = memory_is_empty
        self.wall_time = wall_time
        self.max_rss_mb = max_rss_mb
        # glibc's mtrace is not supported (see doc/differences.rst).
        self.mtrace = None

    def __repr__(self) -> str:
        return ('Stat(return_code=%r, user_time=%.3f, sys_time=%.3f, '
                'wall_time=%.3f, max_rss_mb=%.1f)'
                % (self.return_code, self.user_time, self.sys_time,
                   self.wall_time, self.max_rss_mb))


class CplWarning(UserWarning):
    """Something python-cpl 0.7.4 accepted and cplrun accepts too, although
    it is probably a mistake (an unknown call keyword, a raw tag the recipe
    does not declare, a float given to an int parameter): the call goes on
    as python-cpl's did.  The message names the value and the recipe."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn(text: str) -> None:
    """Issues a :class:`CplWarning` attributed to the first caller outside
    this package (how deep the call is inside cplrun varies)."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and \
            os.path.dirname(os.path.abspath(frame.f_code.co_filename)) \
            == _PACKAGE_DIR:
        level, frame = level + 1, frame.f_back
    warnings.warn(CplWarning(text), stacklevel=level)


#: At most this many of the recipe's ERROR messages go into a CplError's text.
SHOWN_RECIPE_ERRORS = 5
#: The functions recipes dump CPL's error chain with (cpl_errorstate_dump_one_level,
#: muse_cplerrorstate_dump_some...): their lines repeat the chain.
_ERROR_DUMP = re.compile(r'errorstate_dump|error_dump', re.IGNORECASE)


class CplError(Exception):
    """The recipe returned an error.

    Attributes: ``code`` (CPL error code), ``msg``, ``file``, ``line``,
    ``function`` of the first error; ``next_error``, the next one of the
    chain or None (iterating the exception walks the chain); ``retval``,
    the recipe's return value; ``log``, the run's :class:`cpl.logger.LogList`;
    ``recipe``; ``inputs``, the run's input files; ``log_file`` and
    ``workdir``, where the run's full log and files were kept for
    inspection."""

    def __init__(self, retval: int, errors: list, log: Any = None,
                 recipe: str | None = None, log_file: str | None = None,
                 workdir: str | None = None,
                 inputs: list[str] | None = None) -> None:
        self.retval = retval
        self.log = log
        self.recipe = recipe
        self.log_file = log_file
        self.workdir = workdir
        self.inputs = list(inputs or [])
        self.next_error = None
        if errors:
            first = errors[0]
            self.code = first.get('code')
            self.msg = first.get('message')
            self.file = first.get('file')
            self.line = first.get('line')
            self.function = first.get('function')
            if len(errors) > 1:
                self.next_error = CplError(retval, errors[1:], log, recipe,
                                           log_file, workdir, inputs)
        else:
            self.code = self.msg = self.file = self.line = self.function = None
        super().__init__(str(self))

    def __iter__(self) -> Iterator['CplError']:
        error = self
        while error is not None:
            yield error
            error = error.next_error

    def _describe(self) -> str:
        if self.code is None:
            return 'unspecified error (return value %s)' % self.retval
        return '%s (%s) in %s() (%s:%s)' % (self.msg, self.code,
                                            self.function, self.file,
                                            self.line)

    def __str__(self) -> str:
        # The first line is CPL's first error, as python-cpl's (scripts may
        # match it); what the recipe said follows.
        return self._text(said_first=False)

    def report_text(self) -> str:
        """The text of the error with what the recipe said first (CPL's own
        error is often only "An unspecified error" where the recipe's
        message names what is missing): the line a summary or a live
        display shows first."""
        return self._text(said_first=True)

    def _text(self, said_first: bool) -> str:
        said = self.recipe_messages()
        chain = [e._describe() for e in self]
        if said_first and said:
            lines = said + ['CPL error: ' + chain[0]] + chain[1:]
        else:
            lines = chain + ['recipe error: ' + text for text in said]
        warning = self.last_warning() if self.retval else None
        if warning:
            lines.append('last warning: ' + warning)
        return '\n    '.join(lines) + where_text(self)

    def recipe_messages(self) -> list[str]:
        """The recipe's own ERROR messages in its log (its dumps of the CPL
        error chain left out: the chain is in the error already), each
        once, at most SHOWN_RECIPE_ERRORS of them."""
        said: list[str] = []
        for record in self.log or ():
            if record.levelno < logging.ERROR or \
                    _ERROR_DUMP.search(record.funcName or ''):
                continue
            text = str(record.msg).strip()
            if text and text not in said:
                said.append(text)
        if len(said) > SHOWN_RECIPE_ERRORS:
            more = len(said) - SHOWN_RECIPE_ERRORS
            said = said[:SHOWN_RECIPE_ERRORS] + [
                '(and %d more error message%s in the log)'
                % (more, '' if more == 1 else 's')]
        return said

    def last_warning(self) -> str | None:
        """The recipe's last WARNING message, or None."""
        said = recipe_warnings(self.log)
        return said[-1] if said else None

    def __reduce__(self):
        errors = [{'code': e.code, 'message': e.msg, 'file': e.file,
                   'line': e.line, 'function': e.function} for e in self
                  if e.code is not None]
        return (_restore_cpl_error, (self.retval, errors,
                                     _log_to_portable(self.log), self.recipe,
                                     self.log_file, self.workdir, self.inputs))


def recipe_warnings(log: Any) -> list[str]:
    """The recipe's WARNING messages in a run's log (a :class:`LogList`),
    but for cplrun's own note on a log it shortened."""
    return [str(r.msg).strip() for r in log or ()
            if r.levelno == logging.WARNING and r.funcName != 'cplrun'
            and str(r.msg).strip()]


_WARNING_LINE = re.compile(rb'^\d\d:\d\d:\d\d \[WARNING\] ', re.MULTILINE)


def count_warnings(log: Any) -> int:
    """How many WARNING messages the recipe wrote in a run: those of its
    log, or, when the log left records out, of the whole log's file."""
    whole = getattr(log, 'file', None)
    if getattr(log, 'omitted', 0) and whole:
        try:
            with open(whole, 'rb') as f:
                return len(_WARNING_LINE.findall(f.read()))
        except OSError:
            pass
    return len(recipe_warnings(log))


def where_text(error: 'CplError | RecipeCrash') -> str:
    """The line of an error that says which run it was and what it left:
    recipe, inputs, log, and the run's folder, kept for inspection."""
    where = []
    if error.recipe:
        where.append('recipe %s' % error.recipe)
    if error.inputs:
        where.append(inputs_text(error.inputs))
    if error.log_file:
        where.append('log %s' % error.log_file)
    if error.workdir:
        where.append('files kept in %s' % error.workdir)
    return '\n    (' + '; '.join(where) + ')' if where else ''


def inputs_text(inputs: list[str], shown: int = 3) -> str:
    """'input X' or 'inputs X, Y, Z and N more', for messages."""
    if not inputs:
        return 'no input'
    if len(inputs) == 1:
        return 'input %s' % inputs[0]
    text = 'inputs ' + ', '.join(inputs[:shown])
    if len(inputs) > shown:
        text += ' and %d more' % (len(inputs) - shown)
    return text


class RecipeCrash(Exception):
    """The recipe process died without finishing: a signal (segmentation
    fault, abort, SIGKILL from outside or the OOM killer), ``exit()`` called
    inside the recipe, or the runner itself failing.

    Attributes: ``signal`` (number or None), ``exit_code`` (or None),
    ``elements``, the stack frames of the gdb backtrace (most recent last)
    as ``StackElement(filename, line, func, params, localvars)``, ``lines``,
    the raw backtrace, ``recipe``, ``inputs`` (the run's input files),
    ``log_file`` and ``workdir``."""

    StackElement = collections.namedtuple(
        'StackElement', 'filename line func params localvars')

    def __init__(self, reason: str, signal: int | None = None,
                 exit_code: int | None = None, backtrace: str = '',
                 recipe: str | None = None, log_file: str | None = None,
                 workdir: str | None = None,
                 inputs: list[str] | None = None) -> None:
        self.reason = reason
        self.signal = signal
        self.exit_code = exit_code
        self.recipe = recipe
        self.log_file = log_file
        self.workdir = workdir
        self.inputs = list(inputs or [])
        self.lines = backtrace.splitlines(keepends=True)
        self.elements = _parse_gdb_backtrace(self.lines)
        super().__init__(str(self))

    @property
    def signal_name(self) -> str | None:
        return signal_name(self.signal) if self.signal else None

    def __str__(self) -> str:
        text = self.reason
        if self.elements:
            text += '\nRecipe traceback (most recent call last):'
            for e in self.elements:
                text += '\n  File "%s", %sin %s' % (
                    e.filename, 'line %s, ' % e.line if e.line else '',
                    e.func)
        return text + where_text(self)

    def log(self, logger: logging.Logger) -> None:
        """Writes the crash and its traceback to logger, as errors."""
        for line in str(self).splitlines():
            logger.error('%s', line)

    def __reduce__(self):
        return (type(self), (self.reason, self.signal, self.exit_code,
                             ''.join(self.lines), self.recipe,
                             self.log_file, self.workdir, self.inputs))


class RecipeTimeout(RecipeCrash, TimeoutError):
    """The run took longer than its ``timeout`` and was killed, with every
    process it had started."""


def signal_name(signum: int) -> str:
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return 'signal %d' % signum


_GDB_FRAME = re.compile(
    r'#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \((.*?)\)(?: at (\S+?):(\d+)'
    r'| from (\S+))?\s*$')


def _parse_gdb_backtrace(lines: list[str]) -> list:
    """The frames of a gdb ``bt`` listing, outermost first, without those
    of our crash handler."""
    elements = []
    for line in lines:
        if 'signal handler called' in line:
            elements = []       # what came before was the crash handler
            continue
        m = _GDB_FRAME.match(line.strip())
        if m is None:
            continue
        func, args, src, lineno, lib = m.groups()
        params = {}
        for arg in args.split(', '):
            if '=' in arg:
                k, v = arg.split('=', 1)
                params[k.strip()] = v.strip()
        elements.append(RecipeCrash.StackElement(
            src or lib or '??', int(lineno) if lineno else None, func,
            params, {}))
    elements.reverse()
    return elements


class Result:
    """The products of a successful run, one attribute per product tag.

    A tag's value is an :class:`astropy.io.fits.HDUList` (or, when the call
    had an ``output_dir``, the product's path), or a list of them when the
    recipe made several, or when the raw input was given as a list with one
    product per input.  Also: ``tags``, ``log`` (a
    :class:`cpl.logger.LogList`), ``stat`` (:class:`Stat`), ``error`` (a
    :class:`CplError` for errors the recipe reported but survived, or
    None), ``dir`` (where the products are, None when in memory)."""

    def __init__(self, products: dict, log: Any, stat: Stat,
                 error: CplError | None = None,
                 directory: str | None = None) -> None:
        self.tags = set(products)
        self.__dict__.update(products)
        self.log = log
        self.stat = stat
        self.error = error
        self.dir = directory

    def __getitem__(self, key: str) -> Any:
        if key in self.tags:
            return self.__dict__[key]
        raise KeyError(key)

    def __contains__(self, key: str) -> bool:
        return key in self.tags

    def __len__(self) -> int:
        return len(self.tags)

    def __iter__(self):
        return iter((key, self.__dict__[key]) for key in self.tags)

    def __repr__(self) -> str:
        return 'Result(%s)' % ', '.join(sorted(self.tags))

    def __reduce__(self):
        # Paths travel as they are; products in memory as FITS bytes.
        products = {tag: _to_portable(self.__dict__[tag]) for tag in self.tags}
        return (_restore_result, (products, self.stat, self.error, self.dir,
                                  _log_to_portable(self.log)))


def _to_portable(value):
    if isinstance(value, fits.HDUList):
        buf = io.BytesIO()
        value.writeto(buf)
        return ('fits', buf.getvalue())
    if isinstance(value, list):
        return [_to_portable(v) for v in value]
    return value


def _from_portable(value):
    if isinstance(value, tuple) and len(value) == 2 and value[0] == 'fits':
        return fits.HDUList.fromstring(value[1])
    if isinstance(value, list):
        return [_from_portable(v) for v in value]
    return value


# A record's attributes of these types pickle anywhere; anything else was
# put there by some handler along the way and need not travel.
_PLAIN = (str, int, float, bool, type(None))


def _log_to_portable(log):
    if log is None:
        return None
    portable = []
    for record in log:
        attrs = {k: v for k, v in vars(record).items()
                 if isinstance(v, _PLAIN)}
        # As logging.handlers.SocketHandler does: the message merged with
        # its arguments, and no traceback objects (they do not pickle).
        attrs['msg'] = record.getMessage()
        attrs['args'] = None
        attrs['exc_info'] = None
        attrs.pop('message', None)
        portable.append(attrs)
    # what says the list is not the whole log travels with it
    return {'records': portable, 'omitted': getattr(log, 'omitted', 0),
            'cut': getattr(log, 'cut', 0), 'file': getattr(log, 'file', None)}


def _log_from_portable(portable):
    if portable is None:
        return None
    if isinstance(portable, list):          # pickled by an earlier version
        portable = {'records': portable}
    log = LogList(logging.makeLogRecord(attrs)
                  for attrs in portable['records'])
    log.omitted = portable.get('omitted', 0)
    log.cut = portable.get('cut', 0)
    log.file = portable.get('file')
    return log


def _restore_cpl_error(retval, errors, log, *where):
    return CplError(retval, errors, _log_from_portable(log), *where)


def _restore_result(products, stat, error, directory, log=None):
    # log has a default so that results pickled by earlier versions load.
    return Result({tag: _from_portable(v) for tag, v in products.items()},
                  _log_from_portable(log), stat, error, directory)
