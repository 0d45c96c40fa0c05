"""cplrun: ESO CPL pipeline recipes as Python objects, run in isolated
processes, in parallel.

A drop-in for python-cpl 0.7.4's API (:class:`Recipe`, parameters,
frames, :class:`Result`, :class:`CplError`, :class:`RecipeCrash`,
:mod:`cpl.esorex`, :mod:`cpl.dfs`, logging under ``cpl.<recipe>``), with
real OpenMP control, timeouts, cancellation and crash isolation."""
from .version import __version__
from .recipe import Recipe, RecipeNotFoundError
from .param import Parameter
from .frames import FrameConfig
from .result import CplError, CplWarning, RecipeCrash, RecipeTimeout, Result
from . import _index, dfs, esorex, parallel

__author__ = 'The cplrun developers'
__all__ = ['Recipe', 'Parameter', 'FrameConfig', 'Result', 'CplError',
           'CplWarning', 'RecipeCrash', 'RecipeTimeout', 'RecipeNotFoundError', 'dfs',
           'esorex', 'cpl_versions']


def __getattr__(name: str):
    # python-cpl's cpl.cpl_versions; known once a recipe was described.
    if name == 'cpl_versions':
        if _index.cpl_version() is None:
            Recipe.list()
        version = _index.cpl_version()
        return [version] if version else []
    raise AttributeError(name)


# python-cpl 0.7.4 sets this class attribute when imported; scripts may
# read it, nothing in either package does.
Recipe.dir = '.'
