"""`Recipe`: a CPL recipe of an installed pipeline as a Python callable."""
from __future__ import annotations

import difflib
import numbers
import os
import textwrap
from typing import Any, Mapping

from astropy.io import fits

from . import _index
from ._esorex_files import load_rc, load_sof
from ._run import RunSpec, execute
from .frames import (FrameConfig, FrameList, UnknownRawTagError,
                     check_input_file, frame_items, memory_frame)
from .param import InstanceDoc, Parameter, ParameterList
from .result import _from_portable, _to_portable, warn
from .threaded import RecipeThread, SlotWait, slots

_CALL_KEYWORDS = frozenset((
    'raw', 'tag', 'threaded', 'loglevel', 'logname', 'output_dir', 'param',
    'calib', 'env', 'mtrace', 'timeout'))


class RecipeNotFoundError(IOError, LookupError):
    """No installed recipe of that name (or version)."""


class RecipeEnv(dict):
    """The environment variables a recipe runs with, on top of the
    process's own: values are str, None removes the variable.  Anything
    else is refused at once, not dropped."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.update(values or {})

    def __setitem__(self, key: str, value: str | None) -> None:
        super().__setitem__(*check_env_item(key, value))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, value: str | None = None) -> str | None:
        if key not in self:
            self[key] = value
        return self[key]


def check_env_item(key: Any, value: Any) -> tuple[str, str | None]:
    if not isinstance(key, str) or not key or '=' in key or '\0' in key:
        raise TypeError('environment variable names are non-empty str '
                        'without "=", not %r' % (key,))
    if value is not None and (not isinstance(value, str) or '\0' in value):
        raise TypeError('environment variable %s must be a str (or None to '
                        'unset it), not %r (%s)'
                        % (key, value, type(value).__name__))
    return key, value


class Recipe:
    """A recipe of an installed pipeline.

    ``Recipe('muse_bias')`` finds the newest version below
    :attr:`Recipe.path`; ``filename=`` names the library, ``version=`` (the
    number or the string) a version.  Its parameters are in :attr:`param`,
    its calibration frames in :attr:`calib`.  Calling it runs the recipe in
    a process of its own and returns a :class:`cpl.Result`; with
    ``threaded=True`` a :class:`cpl.threaded.RecipeThread` at once.

    Attributes a call uses unless it overrides them: :attr:`tag`,
    :attr:`output_dir`, :attr:`temp_dir`, :attr:`threaded`, :attr:`env`,
    :attr:`timeout`, :attr:`memory_dump`."""

    path: str | list[str] = _index.default_path()
    """Folders searched (with their subfolders) for recipe libraries: a
    list, or a str with ``:`` between folders."""

    memory_mode: int = 0
    """CPL's memory mode for the recipe processes: 0 system allocation, 1
    leak checking, 2 extended checking.  Takes effect for the calls made
    after it is set (unlike python-cpl, where it had to come first)."""

    def __init__(self, name: str, filename: str | None = None,
                 version: int | str | None = None,
                 threaded: bool = False) -> None:
        found = _index.find(name, Recipe.path, filename, version)
        if found is None:
            raise RecipeNotFoundError(_not_found_message(name, filename,
                                                         version))
        self.__file__, self._description = found
        self.__name__ = name
        self._param = self._new_params()
        self._calib = self._new_calib()
        self._tags = None
        tags = self.tags
        self._tag = tags[0] if tags else None
        self.output_dir: str | None = None
        self.temp_dir: str | None = None
        """Where run folders are made: None for ``output_dir/.cplrun-work``
        when there is an output_dir, else the system's temporary folder."""
        self.threaded = threaded
        self.mtrace = False
        self.memory_dump = 0
        self.timeout: float | None = None
        """Seconds after which a run is killed (RecipeTimeout); None: never."""
        self._env = RecipeEnv()

    # --- what the recipe says about itself -----------------------------
    def _new_params(self) -> ParameterList:
        return ParameterList(
            [Parameter(p, self.__name__)
             for p in self._description['parameters']], self.__name__)

    def _new_calib(self, values: Any = None) -> FrameList:
        return FrameList(self.__name__, self._declared_calib(), values)

    def _declared_calib(self) -> list[FrameConfig] | None:
        config = self._description.get('frames')
        if config is None:
            return None
        # A calibration tag may serve several raw tags: it is required only
        # if all require it (the least minimum, as python-cpl gives it),
        # and limited only if all limit it (-1, CPL's "no limit", if any
        # says so; python-cpl took the largest number, so a limit of 1
        # beside no limit read as 1).
        counts: dict[str, tuple[int, int]] = {}
        for raw in config:
            for inp in raw['inputs']:
                low, high = inp['min'], inp['max']
                if inp['tag'] in counts:
                    low0, high0 = counts[inp['tag']]
                    low = min(low, low0)
                    high = -1 if high <= 0 or high0 <= 0 else max(high, high0)
                counts[inp['tag']] = (low, high)
        return [FrameConfig.declared(tag, low, high)
                for tag, (low, high) in counts.items()]

    @property
    def __author__(self) -> str:
        return self._description['author']

    @property
    def __email__(self) -> str:
        return self._description['email']

    @property
    def __copyright__(self) -> str:
        return self._description['copyright']

    @property
    def description(self) -> tuple[str, str]:
        """(synopsis, description)."""
        return (self._description['synopsis'] or '',
                self._description['description'] or '')

    @property
    def version(self) -> tuple[int, str]:
        """(version number, version string)."""
        return (self._description['version'],
                self._description['version_string'])

    @property
    def __version__(self) -> str:
        return self._description['version_string']

    @property
    def cpl_version(self) -> str | None:
        return _index.cpl_version()

    @property
    def cpl_description(self) -> str | None:
        return _index.cpl_description()

    @property
    def tags(self) -> list[str] | None:
        """Raw input tags the recipe declares, or those set by hand, or
        None."""
        config = self._description.get('frames')
        return [c['tag'] for c in config] if config else self._tags

    @tags.setter
    def tags(self, tags: list[str] | None) -> None:
        if self._description.get('frames'):
            raise AttributeError('recipe %s declares its tags' % self.__name__)
        self._tags = tags

    @property
    def tag(self) -> str | None:
        """The raw input tag of a call that gives none."""
        return self._tag

    @tag.setter
    def tag(self, tag: str | None) -> None:
        self._tag = self._checked_tag(tag)

    def _checked_tag(self, tag: str | None) -> str | None:
        tags = self.tags
        if tag is not None and tags is not None and tag not in tags:
            raise UnknownRawTagError(
                "recipe %s takes no raw frames tagged %r; its tags are %s"
                % (self.__name__, tag, tags), self.__name__, tag)
        return tag

    @property
    def output(self) -> dict[str, list[str]]:
        """Raw tag -> the product tags made from it."""
        config = self._description.get('frames')
        if config is None:
            raise AttributeError('recipe %s does not declare its products'
                                 % self.__name__)
        return {c['tag']: list(c['outputs']) for c in config}

    @property
    def param(self) -> ParameterList:
        return self._param

    @param.setter
    def param(self, values: Any) -> None:
        if isinstance(values, str) or hasattr(values, 'read'):
            values = load_rc(values)
        params = self._new_params()
        if values is not None:
            params._update(values, skip_foreign=True)
        self._param = params

    @param.deleter
    def param(self) -> None:
        self._param = self._new_params()

    @property
    def calib(self) -> FrameList:
        return self._calib

    @calib.setter
    def calib(self, values: Any) -> None:
        if isinstance(values, str) or hasattr(values, 'read'):
            values = load_sof(values)
        if isinstance(values, Mapping):
            raw_tags = set(self.tags or ()) | {self._tag}
            values = {t: f for t, f in values.items() if t not in raw_tags}
        self._calib = self._new_calib(values)

    @calib.deleter
    def calib(self) -> None:
        self._calib = self._new_calib()

    @property
    def env(self) -> RecipeEnv:
        """Environment variables of the recipe process (str values; None
        unsets).  Set before any recipe library is loaded, so
        ``OMP_NUM_THREADS`` and the other ``OMP_*`` really apply."""
        return self._env

    @env.setter
    def env(self, values: Mapping[str, str | None]) -> None:
        self._env = RecipeEnv(values)

    # --- calling -----------------------------------------------------------
    def __call__(self, *data: Any, **ndata: Any) -> Any:
        """Runs the recipe on the raw frames ``data`` (file names or
        HDULists, lists of them, or a dict tag -> frames).

        Keywords: ``tag``, ``threaded``, ``loglevel``, ``logname``,
        ``output_dir`` (keep products there, as paths; else they come back
        as HDULists), ``param`` and ``calib`` (dicts overriding the
        recipe's), ``env`` (overrides :attr:`env`), ``timeout`` (seconds);
        others are ignored with a :class:`cpl.CplWarning`, as python-cpl
        ignored them.  HDULists are copied when the call is made.
        Raises :class:`cpl.CplError`, :class:`cpl.RecipeCrash`,
        :class:`cpl.RecipeTimeout`; wrong arguments raise before anything
        runs."""
        unknown = set(ndata) - _CALL_KEYWORDS
        if unknown:
            # python-cpl ignored them, and wrappers (musered) pass their own.
            warn('recipe %s ignores the unknown keyword argument(s) %s, as '
                 'python-cpl did; it takes %s' % (
                     self.__name__, ', '.join(sorted(unknown)),
                     ', '.join(sorted(_CALL_KEYWORDS))))
        spec = self._spec(data, ndata)
        if ndata.get('threaded', self.threaded):
            return RecipeThread(spec)
        with SlotWait():
            return execute(spec)

    def _spec(self, data: tuple, ndata: dict) -> RunSpec:
        raw, input_len = self._raw_frames(data, ndata)
        if not raw:
            raise ValueError('no raw frames given to recipe %s' % self.__name__)
        calib = self._calib_frames(raw, ndata.get('calib'))
        frames = []
        for tag, value in list(raw.items()) + list(calib.items()):
            for frame in frame_items(value):
                if isinstance(frame, fits.HDUList):
                    # Now: the run may start later, and the HDUList change.
                    frame = memory_frame(frame, tag)
                else:
                    frame = os.path.abspath(os.fspath(frame))
                    check_input_file(frame, tag, self.__name__)
                frames.append((tag, frame))
        output_dir = ndata.get('output_dir', self.output_dir)
        temp_dir = self.temp_dir
        timeout = ndata.get('timeout', self.timeout)
        if timeout is not None and not timeout > 0:
            raise ValueError('timeout must be a positive number of seconds, '
                             'not %r' % (timeout,))
        loglevel = ndata.get('loglevel')
        if loglevel is not None and (isinstance(loglevel, bool) or
                                     not isinstance(loglevel, numbers.Real)):
            # python-cpl refused it as well (a ValueError), before running
            raise ValueError('recipe %s: loglevel must be a logging level '
                             'number such as logging.INFO, not %r'
                             % (self.__name__, loglevel))
        return RunSpec(
            recipe=self.__name__, library=self.__file__,
            params=self._run_params(ndata.get('param')), frames=frames,
            env=self._run_env(ndata.get('env')),
            logname=ndata.get('logname') or 'cpl.%s' % self.__name__,
            loglevel=loglevel, memory_dump=self.memory_dump,
            output_dir=os.path.abspath(output_dir) if output_dir else None,
            temp_dir=os.path.abspath(temp_dir) if temp_dir else None,
            timeout=timeout, input_len=input_len)

    def _calib_frames(self, raw: dict[str, list],
                      overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """The call's calibration frames.  Those under a raw tag (as
        ``calib=load_sof(sof)`` gives them) or a tag of the raw input join
        the raw frames of that tag, once each: CPL tells frames apart by
        tag only."""
        raw_tags = set(self.tags or ()) | set(raw)
        overrides = dict(overrides or {})
        given_as_raw = {t: overrides.pop(t) for t in raw_tags & set(overrides)}
        calib = self._calib._assigned(overrides)
        for tag in raw_tags & set(calib):
            given_as_raw.setdefault(tag, calib.pop(tag))  # the call's wins
        for tag, frames in given_as_raw.items():
            if frames is not None:
                self._join_raw(raw.setdefault(tag, []), frame_items(frames),
                               tag)
        return calib

    def _join_raw(self, raw: list, frames: list, tag: str) -> None:
        known = {_frame_key(f) for f in raw}
        added = [f for f in frames if _frame_key(f) not in known]
        if added and raw:
            warn('recipe %s: frames tagged %s are given both as raw and as '
                 'calibration frames; those only in calib are passed too (%s)'
                 % (self.__name__, tag,
                    ', '.join(_frame_name(f) for f in added)))
        raw.extend(added)

    def _note_raw_tag(self, tag: str) -> None:
        # A dict may hold other frames next to the raw ones (a SOF's):
        # recipes, as with esorex, ignore those they do not use.
        tags = self.tags
        if tags is not None and tag not in tags and tag not in self._calib:
            warn('recipe %s declares no input frames tagged %r (its raw tags '
                 'are %s); they are passed on as given, as python-cpl did'
                 % (self.__name__, tag, ', '.join(tags)))

    def _raw_frames(self, data: tuple, ndata: dict) -> tuple[dict, int]:
        tag = ndata.get('tag', self._tag)
        items = list(data)
        if 'raw' in ndata:
            items.append(ndata['raw'])
        if not all(isinstance(i, Mapping) for i in items):
            # Every frame not in a dict gets this tag: it must be one the
            # recipe takes (python-cpl ran it, and the recipe failed).
            self._checked_tag(tag)
        raw: dict[str, Any] = {}
        input_len = -1
        for item in items:
            if isinstance(item, Mapping):
                for t, frames in item.items():
                    self._note_raw_tag(t)
                    raw.setdefault(t, []).extend(frame_items(frames))
                continue
            if tag is None:
                raise ValueError('recipe %s needs a tag for its raw frames: '
                                 'give tag=' % self.__name__)
            if isinstance(item, (list, tuple)) and \
                    not isinstance(item, fits.HDUList):
                input_len = len(item) if len(items) == 1 else -1
            raw.setdefault(tag, []).extend(frame_items(item))
        return raw, input_len

    def _run_params(self, overrides: Mapping[str, Any] | None
                    ) -> list[tuple[str, str]]:
        chosen = {p.fullname: (p, p.value) for p in self._param
                  if p.value is not None}
        for key, value in (overrides or {}).items():
            target = self._param[key]
            group = target if isinstance(target, ParameterList) else None
            pairs = value.items() if group is not None else [(None, value)]
            for sub, v in pairs:
                p = group[sub] if group is not None else target
                if v is None:
                    chosen.pop(p.fullname, None)
                else:
                    chosen[p.fullname] = (p, p.check(v))
        return [(name, p.format(v)) for name, (p, v) in chosen.items()]

    def _run_env(self, overrides: Mapping[str, Any] | None) -> dict[str, str]:
        env = dict(os.environ)
        merged = dict(self._env)
        for key, value in (overrides or {}).items():
            merged.__setitem__(*check_env_item(key, value))
        for key, value in merged.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        env['CPL_MEMORY_MODE'] = str(int(Recipe.memory_mode))
        return env

    # Recipe.map (one run per input, in parallel) is set by
    # cpl.parallel._batch: the batch makes recipes, so it is above this
    # module, which cannot import it.

    # --- the class-level interface of python-cpl -----------------------
    @staticmethod
    def list() -> list[tuple[str, list[str]]]:
        """[(recipe name, [version strings])] of every recipe below
        :attr:`path`."""
        found: dict[str, list[str]] = {}
        for name, _lib, desc in _index.all_recipes(Recipe.path):
            versions = found.setdefault(name, [])
            if desc['version_string'] not in versions:
                versions.append(desc['version_string'])
        return list(found.items())

    @staticmethod
    def get_recipefilename(name: str, version: int | str | None = None
                           ) -> str | None:
        """The library holding the recipe (newest, or that version)."""
        found = _index.find(name, Recipe.path, None, version)
        return found[0] if found else None

    @staticmethod
    def get_libs() -> list[str]:
        """Every library file below :attr:`path`."""
        return _index.libraries(Recipe.path)

    @staticmethod
    def set_maxthreads(n: int) -> None:
        """At most n recipe processes at once, counting every call
        (threaded or not) made in this process; the others wait their turn
        holding nothing but their arguments."""
        slots.set_limit(n)

    # --- presentation and pickling -------------------------------------
    def _doc(self) -> str:
        synopsis, description = self.description
        text = '%s\n\n%s\n\n' % (textwrap.fill(synopsis),
                                 textwrap.fill(description))
        text += ('Parameters:\n%s\n' % self._param.__doc__) if len(self._param) \
            else 'No parameters\n'
        if self._description.get('frames') is not None:
            # Wrapped lines are indented one column further than the
            # text above them, as python-cpl's are: the help text is the
            # same, character for character.
            text += textwrap.fill(
                repr([c.tag for c in self._calib]),
                initial_indent='Calibration frames: ',
                subsequent_indent=' ' * 21) + '\n\n'
            tags = self.tags or []
            if tags:
                width = max(len(t) for t in tags)
                text += 'Raw and product frames:\n' + ''.join(
                    textwrap.fill(repr(self.output[t]),
                                  initial_indent=' %s --> ' % t.rjust(width),
                                  subsequent_indent=' ' * (width + 7)) + '\n'
                    for t in tags)
        return text + '\n\n'

    __doc__ = InstanceDoc(_doc, __doc__)

    def __repr__(self) -> str:
        return 'Recipe(%r, version = %r)' % (self.__name__, self.version[0])

    def __reduce__(self):
        state = {
            'param': {p.fullname: p.value for p in self._param
                      if p.value is not None},
            # HDULists in calib travel as FITS bytes, like products.
            'calib': {c.tag: _to_portable(c.frames) for c in self._calib
                      if c.frames is not None},
            'tag': self._tag, 'tags': self._tags, 'env': dict(self._env),
            'output_dir': self.output_dir, 'temp_dir': self.temp_dir,
            'threaded': self.threaded, 'memory_dump': self.memory_dump,
            'timeout': self.timeout, 'mtrace': self.mtrace}
        return (_restore_recipe, (self.__name__, self.__file__,
                                  self.version[0], state))


def _frame_key(frame: Any) -> Any:
    """What tells two frames of a call apart: the file, or the object."""
    if isinstance(frame, fits.HDUList):
        return id(frame)
    return os.path.abspath(os.fspath(frame))


def _frame_name(frame: Any) -> str:
    return 'an HDUList' if isinstance(frame, fits.HDUList) else str(frame)


def _restore_recipe(name: str, filename: str, version: int,
                    state: dict) -> Recipe:
    recipe = Recipe(name, filename=filename, version=version)
    recipe._tags = state['tags']
    recipe.tag = state['tag']
    recipe.param = state['param']
    recipe.calib = {t: _from_portable(f) for t, f in state['calib'].items()}
    recipe.env = state['env']
    for key in ('output_dir', 'temp_dir', 'threaded', 'memory_dump',
                'timeout', 'mtrace'):
        setattr(recipe, key, state[key])
    return recipe


def _not_found_message(name: str, filename: str | None,
                       version: int | str | None) -> str:
    where = filename or ':'.join(_index.split_path(Recipe.path))
    names = sorted({n for n, _lib, _d in _index.all_recipes(
        [filename] if filename else Recipe.path)}) if not filename else []
    close = difflib.get_close_matches(name, names, n=3)
    text = 'recipe %r%s not found in %s' % (
        name, ' version %r' % (version,) if version is not None else '', where)
    if close:
        text += '; did you mean %s?' % ', '.join(close)
    return text
