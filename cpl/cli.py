"""The ``cplrun`` command line.

``cplrun list``                 the installed recipes and their versions
``cplrun info RECIPE [--json]`` parameters, tags and the manual of a recipe
``cplrun run RECIPE [--NAME=VALUE...] SOF...``
                                one run per SOF, in parallel (recipe
                                options as esorex takes them, or -p)
``cplrun workflow FILE.py``     the ``workflow`` a Python file builds
``cplrun demo [DIR]``           a real calibration reduction on synthetic data

``run``, ``workflow`` and ``demo`` exit with 0 only when every run
succeeded or was reused, 1 when a run failed, 2 when nothing could start
(bad arguments, missing inputs, not enough memory or disk).  With stdout
not a terminal they write a line per run event as it happens; output
piped into a reader that stops early ends quietly.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from typing import Any, Callable, Sequence

from .recipe import Recipe
from .version import __version__


def _add_recipe_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--recipe-dir', metavar='DIR', action='append',
                        help='folder with recipe libraries (repeatable); '
                             'default: the installed pipelines')


def _apply_recipe_dir(args: argparse.Namespace) -> None:
    if args.recipe_dir:
        Recipe.path = [d for arg in args.recipe_dir for d in arg.split(':')]


def cmd_list(args: argparse.Namespace) -> int:
    """Each recipe with its versions and its one-line synopsis (that of
    its newest version), as ``esorex --recipes`` lists them."""
    from . import _index
    found: dict[str, tuple[list[str], int, str]] = {}
    for name, _lib, desc in _index.all_recipes(Recipe.path):
        versions, newest, synopsis = found.get(name, ([], -1, ''))
        if desc['version_string'] not in versions:
            versions.append(desc['version_string'])
        if desc['version'] > newest:
            newest, synopsis = desc['version'], desc['synopsis'] or ''
        found[name] = (versions, newest, synopsis)
    width = max((len(name) for name in found), default=0)
    vwidth = max((len(', '.join(v)) for v, _n, _s in found.values()),
                 default=0)
    for name in sorted(found):
        versions, _newest, synopsis = found[name]
        print(('%-*s  %-*s  %s' % (width, name, vwidth, ', '.join(versions),
                                   ' '.join(synopsis.split()))).rstrip())
    return 0


def _parameter_text(p) -> str:
    limits = ''
    if p.range is not None:
        limits = ', range %s..%s' % p.range
    elif p.sequence is not None:
        limits = ', one of %s' % ', '.join(map(str, p.sequence))
    return '  --%s  (%s, default %r%s)\n%s' % (
        p.name, p.type.__name__, p.default, limits,
        textwrap.fill(p.help, initial_indent=' ' * 6, subsequent_indent=' ' * 6))


def recipe_info(recipe: Recipe) -> dict:
    """What ``cplrun info --json`` prints."""
    return {
        'name': recipe.__name__, 'file': recipe.__file__,
        'version': recipe.version[1], 'version_number': recipe.version[0],
        'synopsis': recipe.description[0],
        'description': recipe.description[1],
        'author': recipe.__author__, 'email': recipe.__email__,
        'copyright': recipe.__copyright__,
        'tags': recipe.tags,
        'outputs': recipe.output if recipe.tags else None,
        'calib': [{'tag': c.tag, 'min': c.limits[0] or None,
                   'max': c.limits[1]} for c in recipe.calib],
        'parameters': [{'name': p.name, 'fullname': p.fullname,
                        'type': p.type.__name__, 'default': p.default,
                        'range': p.range, 'choices': p.sequence,
                        'help': p.help} for p in recipe.param],
    }


def cmd_info(args: argparse.Namespace) -> int:
    recipe = Recipe(args.recipe)
    if args.json:
        json.dump(recipe_info(recipe), sys.stdout, indent=2)
        print()
        return 0
    synopsis, description = recipe.description
    print('%s %s  (%s)' % (recipe.__name__, recipe.version[1], recipe.__file__))
    print(textwrap.fill(synopsis))
    print()
    print('Author: %s <%s>' % (recipe.__author__, recipe.__email__))
    if recipe.tags:
        print('\nRaw tags and products:')
        for tag, outputs in recipe.output.items():
            print('  %s -> %s' % (tag, ', '.join(outputs) or '-'))
    if len(recipe.calib):
        print('\nCalibration frames:')
        for c in recipe.calib:
            least, most = c.limits
            print('  %s (%s..%s%s)' % (c.tag, least, most or 'n',
                                       '' if least else ', optional'))
    print('\nParameters:' if len(recipe.param) else '\nNo parameters.')
    for p in recipe.param:
        print(_parameter_text(p))
    print('\nDescription:\n')
    print(description.rstrip())
    return 0


def _parse_params(items: Sequence[str] | None) -> dict[str, str]:
    params = {}
    for item in items or ():
        name, eq, value = item.partition('=')
        if not eq or not name:
            raise ValueError('-p takes NAME=VALUE, not %r' % item)
        params[name.lstrip('-')] = value
    return params


def _recipe_options(extra: Sequence[str]) -> list[str]:
    """The esorex-style recipe options among the arguments argparse did not
    know (``cplrun run muse_bias --nifu=1 bias.sof``), as -p items."""
    items = []
    for arg in extra:
        name, eq, _value = arg.partition('=')
        if not arg.startswith('--') or not eq or len(name) < 3:
            raise ValueError(
                '%r is neither an option of cplrun run nor a recipe option '
                '--NAME=VALUE (or -p NAME=VALUE)' % arg)
        items.append(arg[2:])
    return items


def _run_options(args: argparse.Namespace) -> dict:
    return dict(n_workers=args.jobs, output_dir=args.output_dir,
                timeout=args.timeout, fail_fast=args.fail_fast,
                retries=args.retries, force=args.force,
                progress=False if args.no_progress else None,
                log_dir=args.log_dir, strict=not args.lenient,
                preflight=not args.no_preflight, force_run=args.force_run)


#: The ``--slurm-*`` options: each one's DaskClusterManager keyword (also
#: its argparse dest) and its add_argument settings.  Kept in one table so
#: that an option added here reaches the cluster without a second edit.
_SLURM_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    '--slurm-queue': ('slurm_queue', {}),
    '--slurm-account': ('slurm_account', {}),
    '--slurm-walltime': ('slurm_walltime', {'default': '24:00:00'}),
    '--slurm-job-mem': ('slurm_job_mem', {'metavar': 'MEM'}),
    '--slurm-cores-per-job': ('slurm_cores_per_job',
                              {'type': int, 'default': 1}),
    '--slurm-job-extra': ('slurm_job_extra_directives', {
        'action': 'append', 'metavar': 'DIRECTIVE',
        'help': 'an extra #SBATCH directive (repeatable)'}),
    '--slurm-python': ('slurm_python', {
        'metavar': 'PYTHON',
        'help': 'the Python of the jobs (default: this one)'}),
    '--slurm-log-directory': ('slurm_log_directory', {'default': 'logs'}),
}


def _cluster(args: argparse.Namespace):
    """The Dask cluster the options ask for, or None for this machine."""
    if not args.scheduler and not args.cluster:
        return None
    from .cluster import DaskClusterManager
    if args.scheduler:
        return DaskClusterManager(scheduler_address=args.scheduler,
                                  cluster_type='address',
                                  nworkers=args.workers)
    return DaskClusterManager(
        nworkers=args.workers or (os.cpu_count() if args.cluster == 'local'
                                  else 1),
        cluster_type=args.cluster,
        **{keyword: getattr(args, keyword)
           for keyword, _ in _SLURM_OPTIONS.values()})


def _run_on(args: argparse.Namespace, start: Callable) -> Any:
    """start(executor) on the cluster the options ask for (or locally)."""
    cluster = _cluster(args)
    if cluster is None:
        return start(None)
    with cluster:
        return start(cluster)


def _finish(report, args: argparse.Namespace) -> int:
    if args.report:
        report.to_json(args.report)
    try:
        print()
        report.summary()
        print('\nReport: %s' % (args.report or
                                os.path.join(report.output_dir, 'report.json')))
        sys.stdout.flush()
    except BrokenPipeError:
        # Piped into head and the like: the runs' outcome is the status.
        _drop_stdout()
    return 0 if report.ok else 1


def _summary_after_interrupt(args: argparse.Namespace,
                             started: float) -> None:
    """After Ctrl-C: the summary of what ran and what was cancelled, from
    the report the interrupted runs wrote (none when it came before they
    began), and how to go on."""
    from .parallel import Report
    output_dir = getattr(args, 'output_dir', None)
    if output_dir is None:
        return
    path = os.path.join(os.path.abspath(output_dir), 'report.json')
    try:
        if os.path.getmtime(path) < started:
            return              # an earlier invocation's
        report = Report.from_json(path)
    except (OSError, ValueError, TypeError, KeyError):
        return
    report.runs = [r for r in report.runs if not r.earlier_invocation]
    try:
        print()
        report.summary()
        print('\nTo resume, run the same command again: the runs that '
              'succeeded are reused, the others run.')
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()


def _drop_stdout() -> None:
    """After a broken pipe: what is still buffered for stdout, and what
    comes, goes nowhere (instead of an error when Python exits)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _warn_foreign_rc(path: str, rc: dict[str, str], recipe: Recipe) -> None:
    """An rc file of another recipe is passed over quietly by the recipe
    (as esorex does): say so, or a run goes with defaults unnoticed."""
    foreign = sorted(k for k in rc if k not in recipe.param and
                     not k.startswith('esorex.'))
    if not foreign:
        return
    ours = [k for k in rc if k in recipe.param]
    shown = ', '.join(foreign[:3]) + (' and %d more' % (len(foreign) - 3)
                                      if len(foreign) > 3 else '')
    print('cplrun: warning: %s names parameters %s does not have (%s): '
          'they are ignored%s' % (
              path, recipe.__name__, shown,
              '' if ours else '; it sets none of its parameters, which keep '
                              'their defaults'), file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from .esorex import load_rc
    from .parallel import RawTagError, run_batch
    recipe = Recipe(args.recipe)
    if args.recipe_config:
        rc = load_rc(args.recipe_config)
        recipe.param = rc
        _warn_foreign_rc(args.recipe_config, rc, recipe)
    params = _parse_params(args.param + _recipe_options(args.extra))
    try:
        report = _run_on(args, lambda executor: run_batch(
            recipe, args.sof, tag=args.tag, param=params, executor=executor,
            **_run_options(args)))
    except RawTagError as exc:
        print('cplrun: %s' % exc.text('--tag TAG'), file=sys.stderr)
        return 2
    return _finish(report, args)


def cmd_workflow(args: argparse.Namespace) -> int:
    import runpy
    from .parallel import Workflow
    namespace = runpy.run_path(args.file, run_name='__cplrun_workflow__')
    workflow = namespace.get('workflow')
    if not isinstance(workflow, Workflow):
        print('cplrun: %s must build a cpl.parallel.Workflow named '
              '"workflow"' % args.file, file=sys.stderr)
        return 2
    report = _run_on(args, lambda executor: workflow.run(
        executor=executor, **_run_options(args)))
    return _finish(report, args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    return run_demo(args.dir, size=args.size, jobs=args.jobs,
                    progress=False if args.no_progress else None)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument('-o', '--output-dir', default='cplrun-output',
                   help="each run's products go to OUTPUT_DIR/<run>/, "
                        'also when there is one run (default: '
                        './cplrun-output)')
    p.add_argument('-j', '--jobs', type=int, default=None, metavar='N',
                   help='recipe processes at once (default: the cores)')
    p.add_argument('--timeout', type=float, default=None, metavar='S',
                   help='kill a run after S seconds')
    p.add_argument('--retries', type=int, default=0, metavar='N',
                   help='rerun a crashed run up to N times')
    p.add_argument('--fail-fast', action='store_true',
                   help='stop everything at the first failure')
    p.add_argument('--force', action='store_true',
                   help='rerun runs whose earlier results would be reused')
    p.add_argument('--report', metavar='FILE.json',
                   help='also write the report here')
    p.add_argument('--log-dir', metavar='DIR',
                   help='per-run log files here (default: in each run folder)')
    p.add_argument('--no-progress', action='store_true',
                   help='no live display')
    p.add_argument('--lenient', action='store_true',
                   help='skip runs with missing inputs instead of refusing')
    p.add_argument('--no-preflight', action='store_true',
                   help='skip the memory and disk estimate')
    p.add_argument('--force-run', action='store_true',
                   help='run even when the estimate says it will not fit')
    dask = p.add_argument_group('on a Dask cluster (pip install cplrun[dask])')
    dask.add_argument('--scheduler', metavar='tcp://HOST:PORT',
                      help='an existing Dask scheduler')
    dask.add_argument('--cluster', choices=['local', 'slurm'],
                      help='start a Dask cluster: worker processes here, or '
                           'SLURM jobs')
    dask.add_argument('--workers', type=int, metavar='N',
                      help='Dask workers to start (or wait for)')
    for flag, (keyword, settings) in _SLURM_OPTIONS.items():
        dask.add_argument(flag, dest=keyword, **settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='cplrun', description='Run ESO CPL pipeline recipes: isolated, '
                                   'in parallel.')
    parser.add_argument('--version', action='version',
                        version='cplrun %s' % __version__)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('list', help='list the installed recipes')
    _add_recipe_dir(p)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser('info', help="a recipe's parameters, tags and manual")
    p.add_argument('recipe')
    p.add_argument('--json', action='store_true', help='as JSON')
    _add_recipe_dir(p)
    p.set_defaults(func=cmd_info)
    # No abbreviations: a recipe option --time=5 must not become --timeout.
    p = sub.add_parser(
        'run', help='one run of RECIPE per SOF, in parallel',
        usage='%(prog)s RECIPE [--NAME=VALUE ...] SOF [SOF ...] [options]',
        description='One run of RECIPE per SOF, in parallel. Recipe '
                    'parameters go after the recipe name as esorex takes '
                    'them (--nifu=1), or as -p NAME=VALUE; a parameter '
                    'named like an option of cplrun run needs -p.',
        allow_abbrev=False)
    p.add_argument('recipe')
    p.add_argument('sof', nargs='+', help='esorex set-of-files')
    p.add_argument('-p', '--param', action='append', metavar='NAME=VALUE',
                   default=[], help='a recipe parameter (repeatable)')
    p.add_argument('--tag', metavar='TAG',
                   help="the raw frames' tag in the SOFs (default: the one "
                        'the recipe takes, else the first one listed)')
    p.add_argument('--recipe-config', metavar='FILE.rc',
                   help='parameters from an esorex configuration file')
    _add_run_options(p)
    _add_recipe_dir(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser('workflow', help='run the Workflow named "workflow" '
                                        'that FILE.py builds')
    p.add_argument('file')
    _add_run_options(p)
    _add_recipe_dir(p)
    p.set_defaults(func=cmd_workflow)
    p = sub.add_parser('demo', help='reduce synthetic calibration data '
                                    'with the installed pipelines')
    p.add_argument('dir', nargs='?', default='cplrun-demo',
                   help='where data, products and report go '
                        '(default: ./cplrun-demo)')
    p.add_argument('--size', default='tiny',
                   choices=['tiny', 'small', 'medium'])
    p.add_argument('-j', '--jobs', type=int, default=None,
                   help='recipe processes at once (default: the cores)')
    p.add_argument('--no-progress', action='store_true',
                   help='no live display')
    _add_recipe_dir(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != 'run':
        parser.error('unrecognized arguments: %s' % ' '.join(extra))
    args.extra = extra
    started = time.time()
    _apply_recipe_dir(args)
    from .cluster import ClusterError
    from .parallel import MissingInputsError, PreflightError
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Output piped into head and the like, which has what it wanted:
        # stop quietly (before OSError, which it is).
        _drop_stdout()
        return 0
    except (OSError, MissingInputsError, PreflightError, ClusterError,
            ValueError, TypeError, KeyError) as exc:
        print('cplrun: %s' % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _summary_after_interrupt(args, started)
        print('cplrun: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
