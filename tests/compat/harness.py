"""Runs a scenario under Debian's python-cpl and under cplrun and compares
what both recorded.

A scenario (``scenarios/<name>.py``) is a python-cpl 0.7.4 script that
records its outcomes with :mod:`scenarios.outcome`.  :func:`run_both` runs
it twice, each time in a fresh folder outside the project with ``HOME``
in another: with ``/usr/bin/python3 -I`` (importing
``/usr/lib/python3/dist-packages/cpl``) and with this worktree's
interpreter (importing this worktree's ``cpl``); the launcher checks which
package it imported.  :func:`differences` compares the two reports: equal
values, except that where python-cpl raised an exception cplrun may raise
a subclass of it.  Intended differences are taken out of both reports
first by :func:`take_intended`, which checks both sides' documented
values, so each stays pinned.
"""
from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, 'scenarios')
LAUNCHER = os.path.join(SCENARIOS, 'launch.py')
REPO = os.path.dirname(os.path.dirname(HERE))

PYTHON_CPL = ('python-cpl', '/usr/bin/python3',
              '/usr/lib/python3/dist-packages/cpl')
CPLRUN = ('cplrun', sys.executable, os.path.join(REPO, 'cpl'))

#: Seconds one side of a scenario may take (the test watchdog is 120 s).
SCENARIO_TIMEOUT = 100

MARKER = '=== cplrun compat report ==='


class ScenarioFailed(AssertionError):
    """A scenario script did not finish: its output is the message."""


def python_cpl_missing() -> str | None:
    """Why Debian's python-cpl cannot run here, or None."""
    _, python, package = PYTHON_CPL
    if not os.access(python, os.X_OK):
        return '%s not found' % python
    if not os.path.isfile(os.path.join(package, 'recipe.py')):
        return ('python-cpl is not installed (%s missing; the Makefile '
                'installs Debian\'s python3-cpl)' % package)
    return None


def _start(side: tuple, scenario: str, config_file: str, folder: str):
    """Starts scenario in folder/work, with HOME folder/home (where
    ~/.esorex/esorex.rc is, and astropy writes its configuration)."""
    name, python, package = side
    work, home = os.path.join(folder, 'work'), os.path.join(folder, 'home')
    os.makedirs(work)
    os.makedirs(home)
    return subprocess.Popen(
        [python, '-I', LAUNCHER, package,
         os.path.join(SCENARIOS, scenario + '.py'), config_file],
        cwd=work, env=dict(os.environ, HOME=home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _report(side: tuple, scenario: str, proc) -> dict:
    try:
        out, err = proc.communicate(timeout=SCENARIO_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise ScenarioFailed('%s: scenario %s still running after %d s\n%s'
                             % (side[0], scenario, SCENARIO_TIMEOUT,
                                err.decode(errors='replace')[-3000:]))
    text = out.decode(errors='replace')
    if proc.returncode != 0 or MARKER not in text:
        raise ScenarioFailed(
            '%s: scenario %s failed (exit status %s)\n--- stdout\n%s\n'
            '--- stderr\n%s' % (side[0], scenario, proc.returncode,
                                text[-3000:],
                                err.decode(errors='replace')[-6000:]))
    return json.loads(text.rsplit(MARKER, 1)[1])


def run_both(scenario: str, config: dict, folder: str) -> tuple[dict, dict]:
    """(python-cpl's report, cplrun's report) of scenario, both run at
    once, each in its own subfolder of folder (and kept there as
    python-cpl.json and cplrun.json)."""
    config_file = os.path.join(folder, 'config.json')
    with open(config_file, 'w') as f:
        json.dump(config, f)
    procs = [(side, _start(side, scenario, config_file,
                           os.path.join(folder, side[0])))
             for side in (PYTHON_CPL, CPLRUN)]
    reports = []
    for side, proc in procs:
        reports.append(_report(side, scenario, proc))
        with open(os.path.join(folder, side[0] + '.json'), 'w') as f:
            json.dump(reports[-1], f, indent=1, sort_keys=True)
    return reports[0], reports[1]


def _is_exception(value: Any) -> bool:
    return isinstance(value, dict) and '__exception__' in value


def differences(theirs: Any, ours: Any, path: str = '') -> list[str]:
    """Where ours differs from theirs, one readable line each."""
    if _is_exception(theirs):
        if _is_exception(ours) and theirs['__exception__'] in ours['mro']:
            return []
        return ['%s: python-cpl raised %s, cplrun %s' % (
            path or '<top>', theirs['__exception__'], _shown(ours))]
    if isinstance(theirs, dict) and isinstance(ours, dict):
        if set(theirs) != set(ours) and set(theirs) | set(ours) == _OUTCOMES:
            return ['%s: python-cpl %s, cplrun %s' % (
                path or '<top>', _outcome(theirs), _outcome(ours))]
        found = []
        for key in sorted(set(theirs) | set(ours)):
            where = '%s.%s' % (path, key) if path else key
            if key not in ours:
                found.append('%s: only python-cpl has it: %s'
                             % (where, _shown(theirs[key])))
            elif key not in theirs:
                found.append('%s: only cplrun has it: %s'
                             % (where, _shown(ours[key])))
            else:
                found += differences(theirs[key], ours[key], where)
        return found
    if isinstance(theirs, list) and isinstance(ours, list) \
            and len(theirs) == len(ours):
        found = []
        for i, (a, b) in enumerate(zip(theirs, ours)):
            found += differences(a, b, '%s[%d]' % (path, i))
        return found
    if theirs == ours and type(theirs) is type(ours):
        return []
    if isinstance(theirs, str) and isinstance(ours, str) and \
            '\n' in theirs + ours:
        lines = difflib.unified_diff(theirs.splitlines(), ours.splitlines(),
                                     'python-cpl', 'cplrun', lineterm='')
        return ['%s: the texts differ\n      %s' % (
            path or '<top>', '\n      '.join(lines))]
    return ['%s: python-cpl %s, cplrun %s' % (path or '<top>', _shown(theirs),
                                              _shown(ours))]


#: The bases of every exception, not worth showing.
_ROOT_CLASSES = ('Exception', 'BaseException', 'object')

#: The keys of an attempt's record: one of them.
_OUTCOMES = {'raised', 'returned'}


def _outcome(attempted: dict) -> str:
    if 'raised' in attempted:
        return _shown(attempted['raised'])
    return 'returned ' + _shown(attempted['returned'])


def _shown(value: Any) -> str:
    if _is_exception(value):
        bases = [c for c in value['mro'][1:] if c not in _ROOT_CLASSES]
        return 'raised %s%s' % (value['__exception__'], ' (%s)' % ' < '.join(
            bases) if bases else '')
    text = json.dumps(value, sort_keys=True)
    return text if len(text) < 400 else text[:400] + '...'


def take_intended(theirs: dict, ours: dict, intended: dict) -> list[str]:
    """Removes each documented difference (key -> {'python-cpl': value,
    'cplrun': value}; a key 'a/b' is b in a) from both reports, and returns
    where a side did not record its documented value."""
    found = []
    for key, sides in intended.items():
        *parents, last = key.split('/')
        for name, report in (('python-cpl', theirs), ('cplrun', ours)):
            for parent in parents:
                report = report.get(parent, {})
            if last not in report:
                found.append('%s: %s recorded nothing (documented: %s)'
                             % (key, name, _shown(sides[name])))
                continue
            value = report.pop(last)
            if differences(sides[name], value, key):
                found.append('%s: %s now gives %s, documented: %s' % (
                    key, name, _shown(value), _shown(sides[name])))
    return found


def compare(theirs: dict, ours: dict, intended: dict | None = None) -> None:
    """Fails with every difference, one per line, and both reports."""
    found = take_intended(theirs, ours, intended or {})
    found += differences(theirs, ours)
    if found:
        raise AssertionError(
            '%d difference(s) from python-cpl:\n  %s'
            % (len(found), '\n  '.join(found)))
