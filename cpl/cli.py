"""The ``cplrun`` command line.

``cplrun list``                 the installed recipes and their versions
``cplrun info RECIPE [--json]`` parameters, tags and the manual of a recipe
``cplrun demo [DIR]``           a real calibration reduction on synthetic data
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from typing import Sequence

from .recipe import Recipe, RecipeNotFoundError


def _add_recipe_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--recipe-dir', metavar='DIR', action='append',
                        help='folder with recipe libraries (repeatable); '
                             'default: the installed pipelines')


def _apply_recipe_dir(args: argparse.Namespace) -> None:
    if args.recipe_dir:
        Recipe.path = [d for arg in args.recipe_dir for d in arg.split(':')]


def cmd_list(args: argparse.Namespace) -> int:
    recipes = sorted(Recipe.list())
    width = max((len(name) for name, _ in recipes), default=0)
    for name, versions in recipes:
        print('%-*s  %s' % (width, name, ', '.join(versions)))
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
        'calib': [{'tag': c.tag, 'min': c.min, 'max': c.max}
                  for c in recipe.calib],
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
            count = ('%s..%s' % (c.min or 0, c.max if c.max else 'n'))
            print('  %s (%s%s)' % (c.tag, count,
                                   '' if c.min else ', optional'))
    print('\nParameters:' if len(recipe.param) else '\nNo parameters.')
    for p in recipe.param:
        print(_parameter_text(p))
    print('\nDescription:\n')
    print(description.rstrip())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    return run_demo(args.dir, size=args.size, jobs=args.jobs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='cplrun', description='Run ESO CPL pipeline recipes: isolated, '
                                   'in parallel.')
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('list', help='list the installed recipes')
    _add_recipe_dir(p)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser('info', help="a recipe's parameters, tags and manual")
    p.add_argument('recipe')
    p.add_argument('--json', action='store_true', help='as JSON')
    _add_recipe_dir(p)
    p.set_defaults(func=cmd_info)
    p = sub.add_parser('demo', help='reduce synthetic calibration data '
                                    'with the installed pipelines')
    p.add_argument('dir', nargs='?', default='cplrun-demo',
                   help='where data, products and report go '
                        '(default: ./cplrun-demo)')
    p.add_argument('--size', default='tiny',
                   choices=['tiny', 'small', 'medium'])
    p.add_argument('-j', '--jobs', type=int, default=None,
                   help='recipe processes at once (default: the cores)')
    _add_recipe_dir(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _apply_recipe_dir(args)
    try:
        return args.func(args)
    except RecipeNotFoundError as exc:
        print('cplrun: %s' % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('cplrun: interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into head and the like: stop quietly.
        sys.stderr.close()
        return 0


if __name__ == '__main__':
    sys.exit(main())
