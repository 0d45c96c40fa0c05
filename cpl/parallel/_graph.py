"""The elements of a workflow's graph: a run (:class:`Node`) and a product
of a run named before it exists (:class:`ProductRef`).

A node knows its inputs, the runs it depends on, and how a workflow takes
a file: by its absolute path (an HDUList is refused).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from astropy.io import fits

from ..frames import frame_items
from ..recipe import Recipe


@dataclasses.dataclass(frozen=True)
class ProductRef:
    """A product of a workflow run that does not exist yet: the run's
    name and the product tag.  Usable wherever a file is."""
    run: str
    tag: str

    def __repr__(self) -> str:
        return '<%s.%s>' % (self.run, self.tag)


class Node:
    """One run of a workflow.  ``node.TAG`` names one of its products."""

    def __init__(self, workflow: Any, name: str, recipe: Recipe,
                 raw: list, tag: str | None, calib: dict, param: dict,
                 env: dict) -> None:
        self._workflow = workflow
        self.name = name
        self.recipe = recipe
        self.raw = raw
        self.tag = tag if tag is not None else recipe.tag
        self.calib = calib
        self.param = param
        self.env = env

    def __getattr__(self, tag: str) -> ProductRef:
        if tag.startswith('_') or not tag.isupper():
            raise AttributeError(tag)
        outputs = self._declared_outputs()
        if outputs is not None and tag not in outputs:
            raise AttributeError('run %s (recipe %s) makes no %s; it makes %s'
                                 % (self.name, self.recipe.__name__, tag,
                                    ', '.join(sorted(outputs))))
        return ProductRef(self.name, tag)

    def _declared_outputs(self) -> set[str] | None:
        try:
            outputs = self.recipe.output
        except AttributeError:
            return None
        return set(outputs.get(self.tag, ())) or None

    def inputs(self) -> list[tuple[str, Any]]:
        """(tag, path or ProductRef) of every input, including the
        recipe's own calibration frames for tags the run does not set."""
        items = [(self.tag, f) for f in self.raw]
        for tag, frames in self.calib.items():
            items.extend((tag, f) for f in frame_items(frames))
        for c in self.recipe.calib:
            if c.frames is not None and c.tag not in self.calib:
                items.extend((c.tag, f) for f in frame_items(c.frames))
        return items

    def depends_on(self) -> list[str]:
        return sorted({f.run for _t, f in self.inputs()
                       if isinstance(f, ProductRef)})

    def __repr__(self) -> str:
        return '<Node %s: %s>' % (self.name, self.recipe.__name__)


def input_path(frame: Any, node: Node, tag: str) -> Any:
    """A workflow input as an absolute path (a ProductRef as it is).
    An HDUList is refused: a workflow run is planned, reused and perhaps
    run elsewhere by its input files."""
    if isinstance(frame, ProductRef):
        return frame
    if isinstance(frame, fits.HDUList):
        raise TypeError('run %s (recipe %s): its %s input is an HDUList; a '
                        'workflow run takes files (write it with writeto() '
                        'first, or call the recipe itself)'
                        % (node.name, node.recipe.__name__, tag))
    return os.path.abspath(os.fspath(frame))
