"""Runs one scenario script and prints what it recorded.

    python -I launch.py CPL_PACKAGE_DIR SCENARIO.py CONFIG.json

``-I`` keeps the interpreter's own site-packages only and does not put
this folder on sys.path: the launcher adds it (for :mod:`outcome`), then
checks that ``import cpl`` found the package in CPL_PACKAGE_DIR (Debian's
python-cpl or this worktree's cplrun), so a run can never compare a
package with itself.  The report is printed after :data:`MARKER`, since
recipes may print to stdout as well.
"""
import json
import os
import runpy
import sys

MARKER = '=== cplrun compat report ==='


def main():
    package_dir, scenario, config_file = sys.argv[1:4]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cpl
    found = os.path.dirname(os.path.realpath(cpl.__file__))
    if found != os.path.realpath(package_dir):
        raise SystemExit('imported cpl from %s, expected %s'
                         % (found, package_dir))
    import outcome
    with open(config_file) as f:
        outcome.config.update(json.load(f))
    runpy.run_path(scenario, run_name='__main__')
    sys.stdout.flush()
    print('\n' + MARKER)
    print(json.dumps(outcome.report, sort_keys=True))


if __name__ == '__main__':
    main()
