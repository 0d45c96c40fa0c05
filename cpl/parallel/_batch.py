"""The flat case of a workflow: :func:`run_batch`, one run of a recipe per
input (files, an SOF, or a dict tag -> files), and the run names it gives
SOFs."""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

from .._esorex_files import load_sof
from ..frames import frame_items
from ..recipe import Recipe
from ._report import Report
from ._workflow import Workflow


class RawTagError(ValueError):
    """A batch input whose raw frames cannot be told: empty, without the
    tag given, or with no single tag the recipe takes.  ``needs_tag``:
    naming the raw tag would settle it; :meth:`text` says how, with the
    option of the caller (``tag=`` for :func:`run_batch`)."""

    def __init__(self, what: str, needs_tag: bool = False) -> None:
        self.what = what
        self.needs_tag = needs_tag
        super().__init__(self.text('tag='))

    def text(self, option: str) -> str:
        return '%s: give %s' % (self.what, option) if self.needs_tag \
            else self.what


def run_batch(recipe: str | Recipe, inputs: Iterable[Any], *,
              tag: str | None = None, calib: Mapping[str, Any] | None = None,
              param: Mapping[str, Any] | None = None,
              env: Mapping[str, str | None] | None = None,
              names: Sequence[str] | None = None, **run_options: Any
              ) -> Report:
    """One run of recipe per input: a list of files, an SOF path, or a
    dict tag -> files.  Other keywords as for :meth:`Workflow.run`."""
    if isinstance(recipe, str):
        recipe = Recipe(recipe)
    w = Workflow()
    inputs = list(inputs)
    sof_names = _sof_run_names(inputs)
    for i, item in enumerate(inputs):
        name = names[i] if names else sof_names.get(i)
        raw, run_tag, run_calib = _batch_input(recipe, item, tag)
        merged_calib = dict(calib or {})
        merged_calib.update(run_calib)
        w.add(recipe, *raw, tag=run_tag, calib=merged_calib, param=param,
              env=env, name=name)
    return w.run(**run_options)


def _is_sof(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike)) and \
        os.fspath(item).endswith('.sof')


def _sof_run_names(inputs: list) -> dict[int, str]:
    """The run name of each SOF among inputs (by index): its stem, or,
    where stems are alike (one SOF per night folder, all named alike), as
    many of its last folders as tell it apart (n1/bias.sof -> n1-bias).
    The same SOF twice is an error."""
    paths: dict[int, list[str]] = {}
    seen: dict[str, Any] = {}
    for i, item in enumerate(inputs):
        if not _is_sof(item):
            continue
        real = os.path.realpath(item)
        if real in seen:
            raise ValueError('SOF %s is given twice (as %s and %s): one run '
                             'per SOF' % (real, os.fspath(seen[real]),
                                          os.fspath(item)))
        seen[real] = item
        parts = os.path.abspath(os.fspath(item))[:-len('.sof')].split(os.sep)
        paths[i] = [p for p in parts if p]
    depth = dict.fromkeys(paths, 1)
    while True:
        names = {i: '-'.join(paths[i][-depth[i]:]) for i in paths}
        by_name: dict[str, list[int]] = {}
        for i, name in names.items():
            by_name.setdefault(name, []).append(i)
        alike = [i for same in by_name.values() if len(same) > 1
                 for i in same if depth[i] < len(paths[i])]
        if not alike:
            return names        # Workflow.add refuses what is still alike
        for i in alike:
            depth[i] += 1


def _batch_input(recipe: Recipe, item: Any, tag: str | None
                 ) -> tuple[list, str | None, dict]:
    """(raw files, raw tag, calib) of one batch input.

    In an SOF or dict, the raw tag is tag=, else the one the recipe
    declares, else (recipes that declare none, as esorex would pass them
    all) the first tag listed."""
    source = 'the input of %s' % recipe.__name__
    if _is_sof(item):
        if not os.path.isfile(item):
            raise FileNotFoundError('no such SOF file: %s' % item)
        source = 'SOF %s' % os.fspath(item)
        item = load_sof(os.fspath(item))
    if not isinstance(item, Mapping):
        return frame_items(item), tag, {}
    if not item:
        raise RawTagError('%s is empty: it lists no frames' % source)
    if tag is not None:
        if tag not in item:
            raise RawTagError('%s has no frames tagged %s (it has %s)'
                              % (source, tag, ', '.join(item)))
        raw_tags = [tag]
    elif recipe.tags is not None:
        raw_tags = [t for t in item if t in recipe.tags]
    else:
        raw_tags = list(item)[:1]
    if len(raw_tags) != 1:
        raise RawTagError('cannot tell the raw frames of %s in %s among its '
                          'tags %s%s' % (
                              recipe.__name__, source, ', '.join(item),
                              ' (it takes %s)' % ', '.join(recipe.tags)
                              if recipe.tags else ''),
                          needs_tag=True)
    raw_tag = raw_tags[0]
    calib = {t: f for t, f in item.items() if t != raw_tag}
    return frame_items(item[raw_tag]), raw_tag, calib


def recipe_map(recipe: Recipe, inputs: Iterable[Any], **options: Any
               ) -> Report:
    """One run of this recipe per input, in parallel: see
    :func:`cpl.parallel.run_batch`, which takes the same keywords.
    Returns a :class:`cpl.parallel.Report`."""
    return run_batch(recipe, inputs, **options)


# The batch is above cpl.recipe (it makes recipes by name), so cpl.recipe
# cannot import it; Recipe.map is given here, and cpl imports cpl.parallel,
# so every Recipe has it.
Recipe.map = recipe_map
