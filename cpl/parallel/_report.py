"""What a workflow run did: :class:`RunRecord` per run, the
:class:`Report` of them, its ``report.json`` and its text summary."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import IO

from .._records import unlink_quietly


#: status values of a run in a report
STATUSES = ('success', 'failed', 'crashed', 'timeout', 'skipped', 'cached',
            'cancelled')
DONE_OK = ('success', 'cached')


#: A finished run's line names its products' paths up to this many, else
#: how many there are and their folder.
SHOWN_PRODUCTS = 3


def products_text(products: dict) -> str:
    """'product P', 'products P, Q', or, beyond SHOWN_PRODUCTS, 'N products
    in FOLDER': the files of a run's products (tag -> path or paths)."""
    paths = [p for v in products.values()
             for p in (v if isinstance(v, list) else [v])]
    if len(paths) > SHOWN_PRODUCTS:
        folders = sorted({os.path.dirname(p) for p in paths})
        return '%d products in %s' % (len(paths), ', '.join(folders))
    return 'product%s %s' % ('' if len(paths) == 1 else 's', ', '.join(paths))


@dataclasses.dataclass
class RunRecord:
    """One run of a report."""
    name: str
    recipe: str
    status: str = 'pending'
    products: dict = dataclasses.field(default_factory=dict)
    log: str | None = None
    error: str | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    max_rss_mb: float | None = None
    omp_threads: int | None = None
    attempts: int = 0
    #: the recipe's WARNING messages: how many (None: not known, as for a
    #: crash or a reused run), and the first few different ones
    warnings: int | None = None
    warning_lines: list = dataclasses.field(default_factory=list)
    worker: str | None = None
    depends_on: list = dataclasses.field(default_factory=list)
    started: float | None = None
    #: in a folder's report.json: a run of an earlier invocation that the
    #: latest one did not include (its products are still there)
    earlier_invocation: bool = False
    #: the latest log line, while it runs (not saved)
    message: str | None = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop('message')
        return d


class Report:
    """What a workflow run did: ``runs``, one :class:`RunRecord` each, in
    dependency order; ``output_dir``; ``wall_s``."""

    def __init__(self, runs: list[RunRecord], output_dir: str,
                 wall_s: float = 0.0) -> None:
        self.runs = runs
        self.output_dir = output_dir
        self.wall_s = wall_s

    def __getitem__(self, name: str) -> RunRecord:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)

    def __iter__(self):
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def ok(self) -> bool:
        """True when every run succeeded or was reused."""
        return all(r.status in DONE_OK for r in self.runs)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.runs:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    def to_dict(self) -> dict:
        return {'output_dir': self.output_dir, 'wall_s': self.wall_s,
                'counts': self.counts(),
                'runs': [r.to_dict() for r in self.runs]}

    def to_json(self, path: str) -> None:
        tmp = path + '.tmp'
        try:
            with open(tmp, 'w', encoding='utf-8') as f:
                json.dump(self.to_dict(), f, indent=2)
            os.replace(tmp, path)
        except BaseException:
            unlink_quietly(tmp)        # a full disk leaves no stray file
            raise

    @classmethod
    def from_json(cls, path: str) -> 'Report':
        with open(path, encoding='utf-8') as f:
            doc = json.load(f)
        return cls([RunRecord(**r) for r in doc['runs']], doc['output_dir'],
                   doc.get('wall_s', 0.0))

    def summary(self, file: IO | None = None) -> None:
        """Prints the table of runs and a Problems section with each
        failure's full error and log path."""
        out = file or sys.stdout
        width = max([len(r.name) for r in self.runs] + [4])
        rwidth = max([len(r.recipe) for r in self.runs] + [6])
        row = '%-*s  %-*s  %-9s %8s %8s %8s %4s %3s %5s\n'
        out.write(row % (width, 'run', rwidth, 'recipe', 'status', 'wall s',
                         'cpu s', 'rss MB', 'omp', 'try', 'warn'))

        def num(v, fmt):
            return fmt % v if v is not None else '-'
        for r in self.runs:
            out.write(row % (
                width, r.name, rwidth, r.recipe, r.status,
                num(r.wall_s, '%.1f'), num(r.cpu_s, '%.1f'),
                num(r.max_rss_mb, '%.0f'), num(r.omp_threads, '%d'),
                r.attempts, num(r.warnings, '%d')))
        counts = ', '.join('%d %s' % (n, s) for s, n in self.counts().items())
        warned = sum(r.warnings or 0 for r in self.runs)
        if warned:
            counts += '; %d warning%s' % (warned, '' if warned == 1 else 's')
        out.write('\n%d runs in %.1f s: %s\n' % (len(self.runs), self.wall_s,
                                               counts))
        # A success with warnings is not silent; a failure's error has its
        # last warning already.
        noisy = [r for r in self.runs if r.status in DONE_OK and r.warnings]
        if noisy:
            out.write('\nWarnings:\n')
            for r in noisy:
                out.write('  %s (%s): %d warning%s\n' % (
                    r.name, r.recipe, r.warnings,
                    '' if r.warnings == 1 else 's'))
                for line in r.warning_lines:
                    out.write('      %s\n' % line)
                if r.log:
                    out.write('      log: %s\n' % r.log)
        made = [r for r in self.runs if r.status in DONE_OK and r.products]
        if made:
            out.write('\nProducts:\n')
            for r in made:
                out.write('  %s: %s\n' % (r.name, products_text(r.products)))
        problems = [r for r in self.runs if r.status not in DONE_OK]
        if problems:
            out.write('\nProblems:\n')
            for r in problems:
                out.write('  %s (%s): %s\n' % (r.name, r.recipe, r.status))
                for line in (r.error or '').splitlines():
                    out.write('      %s\n' % line)
                if r.log:
                    out.write('      log: %s\n' % r.log)


def with_earlier_runs(report: Report, path: str) -> Report:
    """report, and after its runs those of the report at path (an earlier
    invocation's) that it does not have, marked ``earlier_invocation``."""
    try:
        earlier = Report.from_json(path)
    except (OSError, ValueError, TypeError, KeyError):
        return report       # none, or not one of ours
    names = {r.name for r in report}
    kept = [dataclasses.replace(r, earlier_invocation=True)
            for r in earlier if r.name not in names]
    return Report(report.runs + kept, report.output_dir, report.wall_s)
