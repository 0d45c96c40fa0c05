"""The graph of recipe runs a user builds: :class:`Workflow`."""
from __future__ import annotations

import os
from typing import Any, Mapping

from ..frames import frame_items
from ..recipe import Recipe
from ._execution import Execution
from ._graph import Node, ProductRef, input_path
from ._report import Report


class Workflow:
    """A graph of recipe runs.

    ``node = w.add(recipe, *raw, tag=, calib={TAG: files or ref}, param=,
    env=, name=)``; ``recipe`` is a name or a :class:`cpl.Recipe`;
    ``other_node.TAG`` refers to a product of an earlier run."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def add(self, recipe: str | Recipe, *raw: Any, tag: str | None = None,
            calib: Mapping[str, Any] | None = None,
            param: Mapping[str, Any] | None = None,
            env: Mapping[str, str | None] | None = None,
            name: str | None = None) -> Node:
        if isinstance(recipe, str):
            recipe = Recipe(recipe)
        name = name or self._free_name(recipe.__name__)
        if name in self.nodes:
            raise ValueError('the workflow already has a run named %r' % name)
        if not name or os.sep in name or name.startswith('.'):
            raise ValueError('a run name must be a plain folder name, not %r'
                             % name)
        files = []
        for item in raw:
            files.extend(frame_items(item))
        node = Node(self, name, recipe, files, tag, dict(calib or {}),
                    dict(param or {}), dict(env or {}))
        if node.tag is None:
            raise ValueError('run %s: recipe %s needs a tag for its raw frames'
                             % (name, recipe.__name__))
        recipe._checked_tag(node.tag)
        recipe.calib._assigned(node.calib)  # a tag it does not take fails here
        for key, value in node.param.items():
            p = recipe.param[key]
            p.check(value)      # a wrong parameter fails here, not later
        for t, ref in node.inputs():
            input_path(ref, node, t)   # an HDUList fails here, not later
            if isinstance(ref, ProductRef) and ref.run not in self.nodes:
                raise ValueError('run %s refers to %r, which is not an earlier '
                                 'run of this workflow' % (name, ref))
        self.nodes[name] = node
        return node

    def _free_name(self, base: str) -> str:
        name, n = base, 1
        while name in self.nodes:
            n += 1
            name = '%s-%d' % (base, n)
        return name

    def order(self) -> list[Node]:
        """The runs, each after those it needs; ValueError on a cycle."""
        done: list[Node] = []
        state: dict[str, str] = {}

        def visit(node: Node, path: list[str]) -> None:
            if state.get(node.name) == 'done':
                return
            if state.get(node.name) == 'visiting':
                raise ValueError('the workflow has a cycle: %s'
                                 % ' -> '.join(path + [node.name]))
            state[node.name] = 'visiting'
            for dep in node.depends_on():
                if dep not in self.nodes:
                    raise ValueError('run %s needs run %s, which is not in '
                                     'the workflow' % (node.name, dep))
                visit(self.nodes[dep], path + [node.name])
            state[node.name] = 'done'
            done.append(node)

        for node in self.nodes.values():
            visit(node, [])
        return done

    def run(self, n_workers: int | None = None, output_dir: str = 'cplrun-output',
            timeout: float | None = None, fail_fast: bool = False,
            retries: int = 0, force: bool = False, progress: bool | None = None,
            log_dir: str | None = None, strict: bool = True,
            preflight: bool = True, force_run: bool = False,
            executor: Any = None) -> Report:
        """Runs the workflow; see :mod:`cpl.parallel`.

        ``force`` reruns runs whose results would be reused; ``force_run``
        runs despite a failed memory/disk pre-flight; ``strict=False`` skips
        runs with missing inputs instead of refusing to start."""
        return Execution(self.order(), n_workers=n_workers,
                         output_dir=output_dir, timeout=timeout,
                         fail_fast=fail_fast, retries=retries, force=force,
                         progress=progress, log_dir=log_dir, strict=strict,
                         preflight=preflight, force_run=force_run,
                         executor=executor).run()
