"""Recipe parameters: typed, checked against the recipe's range or
enumeration when set, reachable by name, full name or attribute."""
from __future__ import annotations

import difflib
import math
import numbers
import reprlib
import sys
import textwrap
from typing import Any, Iterator, Mapping

import numpy as np

from .result import warn

_TYPES = {'bool': bool, 'int': int, 'float': float, 'str': str}
#: CPL's int parameters are C ints; the runner refuses the others too.
INT_RANGE = (-2**31, 2**31 - 1)
#: Words (any case, around spaces) that python-cpl passed on as true, as
#: they mean.
_TRUE_WORDS = frozenset({'true', 'yes', 't', '1', 'y', 'on'})
#: python-cpl passed on as false only 'false' and 'no' (any case), and any
#: other non-empty word as true: these words that mean false it made true.
_FALSE_WORDS = frozenset({'false', 'no', 'f', '0', 'n', 'off'})


class InstanceDoc:
    """A ``__doc__`` that is the class's docstring on the class and, on an
    instance, made by ``compute(instance)`` when first asked for: help
    texts are wrapped only if somebody reads them."""

    def __init__(self, compute, class_doc: str | None) -> None:
        self.compute = compute
        self.class_doc = class_doc

    def __get__(self, obj: Any, cls: type | None = None) -> str | None:
        return self.class_doc if obj is None else self.compute(obj)


class UnknownParameterError(KeyError, AttributeError):
    """No parameter of that name.  Both a KeyError (``param['x']``) and an
    AttributeError (``param.x``, so that ``hasattr`` works)."""

    def __str__(self) -> str:
        return str(self.args[0])


class ParameterRangeError(ValueError, OverflowError):
    """A value the parameter's C type cannot hold: an int parameter beyond
    32 bits (python-cpl passed it on truncated), a float one beyond the
    largest double (python-cpl raised a bare OverflowError)."""


class ParameterTypeError(TypeError, ValueError):
    """A value the parameter's type cannot take (``'seven'`` for an int, a
    list for a str).  A ValueError, as python-cpl's ``int('seven')`` was,
    and a TypeError."""


class Parameter:
    """One recipe parameter.

    ``name`` (the command-line alias, as esorex shows it), ``fullname``
    (with context), ``context``, ``type`` (bool, int, float or str),
    ``default``, ``help``, ``range`` ((min, max) or None), ``sequence`` (allowed
    values or None), ``enabled`` (for command line, environment, config
    file), ``value`` (None means the default)."""

    def __init__(self, description: Mapping[str, Any], recipe: str = '') -> None:
        self.fullname: str = description['name']
        self.name: str = description.get('alias') or self.fullname
        self.context: str = description.get('context')
        self.type: type = _TYPES.get(description['type'], str)
        # The runner writes a double that happens to be integral as "3":
        # give float parameters float defaults, ranges and choices.
        as_type = float if self.type is float else (lambda v: v)
        self.default = description['default']
        if self.default is not None:
            self.default = as_type(self.default)
        self.range = tuple(as_type(v) for v in description['range']) \
            if description['range'] else None
        self.sequence = [as_type(v) for v in description['choices']] \
            if description['choices'] is not None else None
        self.enabled = tuple(description.get('enabled', (True, True, True)))
        self.recipe = recipe
        self.help: str = description.get('help') or ''
        self._value = None

    def _doc(self) -> str:
        return textwrap.fill('%s (%s; default: %r)' % (
            self.help, self.type.__name__, self.default))

    __doc__ = InstanceDoc(_doc, __doc__)

    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._value = None if value is None else self.check(value)

    @value.deleter
    def value(self) -> None:
        self._value = None

    def _where(self) -> str:
        return "parameter '%s'%s" % (
            self.name, " of recipe '%s'" % self.recipe if self.recipe else '')

    def check(self, value: Any) -> Any:
        """value converted to the parameter's type;
        :class:`ParameterTypeError` (a TypeError and a ValueError) when it
        cannot be, ValueError when outside the range or enumeration,
        :class:`ParameterRangeError` (a ValueError) when its C type cannot
        hold it.  Where python-cpl converted a value of another type that
        scripts may rely on (3.7 or True for an int, 5 for a str, 2 for a
        bool), it is converted as python-cpl did, with a
        :class:`cpl.CplWarning`."""
        converted = self._convert(value)
        if self.sequence is not None and converted not in self.sequence:
            raise ValueError('%r is not allowed for %s: choose one of %s'
                             % (value, self._where(), self.sequence))
        if self.range is not None and not (
                self.range[0] <= converted <= self.range[1]):
            raise ValueError('%r is outside the range %s..%s of %s'
                             % (value, self.range[0], self.range[1],
                                self._where()))
        return converted

    def _convert(self, value: Any) -> Any:
        if isinstance(value, np.bool_):
            # numpy's bool (an array comparison, a table cell) is no
            # numbers.Integral; python-cpl took it as the bool it is
            value = bool(value)
        wrong = ParameterTypeError('%s takes a %s, not %r (%s)' % (
            self._where(), self.type.__name__, value, type(value).__name__))
        if self.type is bool:
            return self._as_bool(value, wrong)
        if isinstance(value, bool):
            # python-cpl passed int(True), float(True), str(True)
            return self._converted(value, self.type(value))
        if self.type is int:
            return self._in_c_int(self._as_int(value, wrong), value)
        if self.type is float:
            if isinstance(value, numbers.Real):
                try:
                    return float(value)
                except OverflowError:
                    raise ParameterRangeError(
                        '%s takes a float: %s is beyond the largest double, '
                        '%g' % (self._where(), reprlib.repr(value),
                                sys.float_info.max)) from None
            if isinstance(value, str):
                return _from_text(value, float, wrong)
            raise wrong
        if isinstance(value, str):
            if '\0' in value:
                raise ValueError('%s cannot take a NUL character: %r'
                                 % (self._where(), value))
            return value
        if isinstance(value, numbers.Real):
            # python-cpl's str(5); other objects (bytes, lists) it passed on
            # as their repr, which no recipe means: those are refused.
            return self._converted(value, str(value))
        raise wrong

    def _converted(self, value: Any, converted: Any) -> Any:
        """converted, with a warning that value was of another type."""
        warn('%s takes a %s: %r (%s) was passed as %r, as python-cpl did'
             % (self._where(), self.type.__name__, value,
                type(value).__name__, converted))
        return converted

    def _as_bool(self, value: Any, wrong: ParameterTypeError) -> bool:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE_WORDS:
                return True
            if value.lower() in ('false', 'no'):
                return False
            if word in _FALSE_WORDS:
                raise ParameterTypeError(
                    "%s takes a bool: %r means false, but python-cpl passed "
                    "it to the recipe as true; write 'false' (or False)"
                    % (self._where(), value))
            if value == '':
                return self._converted(value, False)
            raise wrong
        if isinstance(value, numbers.Integral) and value in (0, 1):
            return bool(value)
        if isinstance(value, numbers.Real):
            return self._converted(value, bool(value))
        raise wrong

    def _as_int(self, value: Any, wrong: ParameterTypeError) -> int:
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real) and math.isfinite(value):
            converted = int(value)
            if converted != value:
                # python-cpl truncated it (int(3.7) == 3); scripts rely on it.
                warn('%s takes an int: %r was truncated to %d'
                     % (self._where(), value, converted))
            return converted
        if isinstance(value, str):
            return _from_text(value, int, wrong)
        raise wrong

    def _in_c_int(self, converted: int, value: Any) -> int:
        if not INT_RANGE[0] <= converted <= INT_RANGE[1]:
            raise ParameterRangeError(
                '%s takes a C int, %d..%d: %s is outside (python-cpl passed '
                'it on truncated to 32 bits)' % (
                    self._where(), INT_RANGE[0], INT_RANGE[1],
                    reprlib.repr(value)))
        return converted

    def format(self, value: Any) -> str:
        """A checked value as the runner takes it."""
        if self.type is bool:
            return 'true' if value else 'false'
        if self.type is float:
            return repr(float(value))
        return str(value)

    def __str__(self) -> str:
        return '%r%s' % (self.value if self.value is not None else self.default,
                         ' (default)' if self.value is None else '')

    def __repr__(self) -> str:
        return 'Parameter(%r, %s=%r)' % (
            self.name, 'value' if self.value is not None else 'default',
            self.value if self.value is not None else self.default)

    def __getitem__(self, i: int) -> Any:
        return (self.name, self.value if self.value is not None
                else self.default)[i]


def _from_text(text: str, convert: type, wrong: ParameterTypeError) -> Any:
    """A number written as text (as in .rc files), or wrong."""
    try:
        return convert(text.strip())
    except ValueError:
        raise wrong from None


def _attribute_name(name: str) -> str:
    return name.replace('-', '_').replace(' ', '_')


class ParameterList:
    """The parameters of a recipe.

    Reached as attributes (``param.nifu``, hyphens written as underscores),
    by name, full name or alias (``param['muse.muse_bias.nifu']``).
    Dotted names form groups: ``param.stack.method`` or
    ``param['stack.method']``.  Setting None or deleting resets to the
    default.  Iterating gives every :class:`Parameter`."""

    def __init__(self, parameters: list[Parameter], recipe: str = '',
                 prefix: str = '') -> None:
        object.__setattr__(self, '_recipe', recipe)
        object.__setattr__(self, '_prefix', prefix)
        object.__setattr__(self, '_pars', parameters)
        index: dict[str, Any] = {}
        groups: dict[str, list[Parameter]] = {}
        for p in parameters:
            local = p.name[len(prefix):] if prefix else p.name
            if '.' in local:
                groups.setdefault(local.split('.', 1)[0], []).append(p)
            else:
                index[local] = p
                index[_attribute_name(local)] = p
        for group, members in groups.items():
            sub = ParameterList(members, recipe, prefix + group + '.')
            index.setdefault(group, sub)
            index.setdefault(_attribute_name(group), sub)
        object.__setattr__(self, '_index', index)

    def _find(self, key: str) -> Any:
        found = self._index.get(key)
        if found is not None:
            return found
        for p in self._pars:
            if key in (p.fullname, p.name) or self._prefix + key in (
                    p.name, _attribute_name(p.name)):
                return p
        known = [p.name for p in self._pars]
        probe = key
        for p in self._pars:        # a full name: compare what follows
            if p.context and key.startswith(p.context + '.'):
                probe = key[len(p.context) + 1:]
                break
        close = difflib.get_close_matches(probe, known, n=3)
        raise UnknownParameterError(
            "recipe '%s' has no parameter '%s'%s" % (
                self._recipe, key,
                '; did you mean %s?' % ', '.join(repr(c) for c in close)
                if close else '; it has ' + ', '.join(known[:40])
                if known else '; it has none'))

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._pars)

    def __len__(self) -> int:
        return len(self._pars)

    def __contains__(self, key: str) -> bool:
        try:
            self._find(key)
        except KeyError:
            return False
        return True

    def __getitem__(self, key: str) -> Any:
        return self._find(key)

    def __setitem__(self, key: str, value: Any) -> None:
        target = self._find(key)
        if isinstance(target, ParameterList):
            if value is None:
                target._reset()
            else:
                target._update(value)
        else:
            target.value = value

    def __delitem__(self, key: str) -> None:
        self[key] = None

    def __getattr__(self, key: str) -> Any:
        if key.startswith('__'):
            raise AttributeError(key)
        return self._find(key)

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        self[key] = None

    def __dir__(self) -> list[str]:
        return sorted(k for k in self._index if k.isidentifier())

    def __eq__(self, other: Any) -> bool:
        return dict(iter(self)) == other

    def __repr__(self) -> str:
        return repr(dict(iter(self)))

    __str__ = __repr__

    def _reset(self) -> None:
        for p in self._pars:
            p.value = None

    def _update(self, values: Any, skip_foreign: bool = False) -> None:
        """Sets several values from a mapping, a ParameterList or pairs.
        With skip_foreign, full names of other recipes or of esorex itself
        (as an esorex .rc file holds them) are passed over."""
        if isinstance(values, ParameterList):
            items = [(p.fullname, p.value) for p in values]
        elif isinstance(values, Mapping):
            items = list(values.items())
        else:
            items = list(values)
        # A name in this recipe's own context that it does not have is a
        # mistake (a typo in an .rc file), not another recipe's parameter.
        contexts = tuple({p.context + '.' for p in self._pars if p.context})
        for key, value in items:
            if skip_foreign and key not in self and (
                    key.startswith('esorex.') or '.' in key) and \
                    not (contexts and key.startswith(contexts)):
                continue
            self[key] = value

    def _values(self) -> dict[str, Parameter]:
        return {p.fullname: p for p in self._pars}

    def _doc(self) -> str:
        if not self._pars:
            return 'No parameters'
        width = max(len(p.name) for p in self._pars)
        return ''.join(
            textwrap.fill(p.__doc__, subsequent_indent=' ' * (width + 3),
                          initial_indent=' %s: ' % p.name.rjust(width)) + '\n'
            for p in self._pars)

    __doc__ = InstanceDoc(_doc, __doc__)
