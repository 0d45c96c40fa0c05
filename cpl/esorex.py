"""EsoRex compatibility: its ``.sof`` and ``.rc`` files, its configuration
(:func:`init`), and terminal/file logging set up the way it does it
(:data:`msg`, :data:`log`)."""
from __future__ import annotations

import logging
import os
from typing import IO

from . import logger as _logger
from ._esorex_files import SofError, load_rc, load_sof  # noqa: F401 (its names)
from .recipe import Recipe


def init(source: str | IO | None = None) -> None:
    """Takes the recipe folders and logging from an esorex.rc (default
    ``~/.esorex/esorex.rc``)."""
    rc = load_rc(source)
    if rc.get('esorex.caller.recipe-dir'):
        Recipe.path = rc['esorex.caller.recipe-dir'].split(':')
    if 'esorex.caller.msg-level' in rc:
        msg.level = rc['esorex.caller.msg-level']
    if 'esorex.caller.log-level' in rc:
        log.level = rc['esorex.caller.log-level']
    if 'esorex.caller.log-dir' in rc:
        log.dir = rc['esorex.caller.log-dir']
    if 'esorex.caller.log-file' in rc:
        log.filename = rc['esorex.caller.log-file']


class CplLogger:
    """Recipe messages on the terminal, like esorex's ``--msg-level``.

    ``level`` (DEBUG, INFO, WARN, ERROR, OFF, or their names), and
    switches ``time``, ``component``, ``threadid`` for what each line
    shows; ``format`` sets a :mod:`logging` format directly."""

    DEBUG = logging.DEBUG
    INFO = logging.INFO
    WARN = logging.WARNING
    ERROR = logging.ERROR
    OFF = logging.CRITICAL + 1

    def __init__(self) -> None:
        self.handler: logging.Handler | None = None
        self._time = self._component = self._threadid = False
        self._format: str | None = None
        self._level = CplLogger.OFF
        self.dir: str | None = None

    def _new_handler(self) -> logging.Handler | None:
        return logging.StreamHandler()

    def _install(self) -> None:
        if self.handler is None:
            self.handler = self._new_handler()
            if self.handler is None:
                return
            self.handler.setFormatter(logging.Formatter(self.format, '%H:%M:%S'))
            logging.getLogger('cpl').addHandler(self.handler)
        self.handler.setLevel(self._level)
        cpl_logger = logging.getLogger('cpl')
        if cpl_logger.level == logging.NOTSET or cpl_logger.level > self._level:
            cpl_logger.setLevel(self._level)

    def _remove(self) -> None:
        if self.handler is not None:
            logging.getLogger('cpl').removeHandler(self.handler)
            self.handler.close()
            self.handler = None

    @property
    def level(self) -> int:
        return self._level

    @level.setter
    def level(self, level: int | str) -> None:
        if isinstance(level, str):
            level = dict(_logger.level, WARN=logging.WARNING)[level.upper()]
        self._level = level
        if level >= CplLogger.OFF:
            self._remove()
        else:
            self._install()

    @property
    def format(self) -> str:
        if self._format is not None:
            return self._format
        fmt = '%(asctime)s ' if self._time else ''
        fmt += '[%(levelname)7s]'
        fmt += '[%(threadName)s] ' if self._threadid else ' '
        fmt += '%(name)s: ' if self._component else ''
        return fmt + '%(message)s'

    @format.setter
    def format(self, fmt: str | None) -> None:
        self._format = fmt
        if self.handler is not None:
            self.handler.setFormatter(logging.Formatter(self.format, '%H:%M:%S'))

    def _switch(name: str):
        def get(self) -> bool:
            return getattr(self, name)

        def set_(self, on: bool) -> None:
            setattr(self, name, bool(on))
            self.format = self._format
        return property(get, set_)

    time = _switch('_time')
    component = _switch('_component')
    threadid = _switch('_threadid')
    del _switch


class CplFileLogger(CplLogger):
    """Recipe messages into a file, like esorex's ``--log-file``."""

    def __init__(self) -> None:
        super().__init__()
        self._filename: str | None = None
        self._time = self._component = self._threadid = True
        self.level = CplLogger.INFO

    def _new_handler(self) -> logging.Handler | None:
        if not self._filename:
            return None
        return logging.FileHandler(os.path.join(self.dir, self._filename)
                                   if self.dir else self._filename)

    @property
    def filename(self) -> str | None:
        return self._filename

    @filename.setter
    def filename(self, name: str | None) -> None:
        if name != self._filename:
            self._remove()
            self._filename = name
            if self._level < CplLogger.OFF:
                self._install()


#: Terminal output of recipe messages (off until a level is set).
msg = CplLogger()
#: File output of recipe messages (needs a filename).
log = CplFileLogger()
