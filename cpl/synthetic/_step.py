"""The steps of a synthetic data set (see :mod:`cpl.synthetic`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping


@dataclass
class Step:
    """One recipe run of a data set.

    ``name`` identifies the step (``'uves_bias'``), ``recipe`` is the
    recipe it runs (``'uves_cal_mbias'``), ``tag`` the tag of its ``raw``
    frames (absolute paths).  ``calib`` maps each calibration tag the
    recipe needs to the ``(step name, product tag)`` of an earlier step
    that makes it.  ``params`` are recipe parameters (esorex / python-cpl
    names) the synthetic frames need; ``products`` the product tags
    (``ESO PRO CATG``) the run must write, ``files`` their file names.
    ``sof`` is the step's SOF file and ``output_dir`` where the SOFs of
    later steps expect its products."""

    name: str
    recipe: str
    tag: str
    raw: list[str]
    calib: dict[str, tuple[str, str]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    products: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    instrument: str = ''
    sof: str = ''
    output_dir: str = ''

    @property
    def depends_on(self) -> list[str]:
        """Names of the steps whose products this one takes."""
        names: list[str] = []
        for step_name, _ in self.calib.values():
            if step_name not in names:
                names.append(step_name)
        return names

    def calib_frames(self, products: Mapping[str, Any]) -> dict[str, Any]:
        """The ``calib=`` argument of a :class:`cpl.Recipe` call: each
        calibration tag -> ``products[step name][product tag]``, where
        ``products`` maps the earlier steps' names to their results (a
        :class:`cpl.Result` or a dict of product tag -> path)."""
        frames = {}
        for tag, (step_name, product_tag) in self.calib.items():
            if step_name not in products:
                raise KeyError('step %s needs the products of step %s, which '
                               'has not run' % (self.name, step_name))
            frames[tag] = products[step_name][product_tag]
        return frames

    def esorex_params(self) -> list[str]:
        """``params`` as esorex options (``--name=value``)."""
        return ['--%s=%s' % (k, _esorex_value(v))
                for k, v in self.params.items()]

    def esorex_command(self, output_dir: str | None = None) -> list[str]:
        """The esorex command line of the step; run it with the output
        folder (default :attr:`output_dir`) as working directory."""
        out = output_dir or self.output_dir
        return (['esorex', '--output-dir=' + out, '--log-dir=' + out,
                 self.recipe] + self.esorex_params() + [self.sof])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the manifest's entry): the fields,
        and for tools that read the manifest rather than import this
        module, ``depends_on``, ``options`` (the esorex options),
        ``esorex_command``, and ``expected_products`` (the file names the
        run writes, in the order of ``products``) with
        ``expected_pro_catg`` (their ``ESO PRO CATG``)."""
        d = asdict(self)
        d['calib'] = {t: list(v) for t, v in self.calib.items()}
        d['depends_on'] = self.depends_on
        d['options'] = self.esorex_params()
        d['esorex_command'] = self.esorex_command()
        d['expected_products'] = [self.files[t] for t in self.products]
        d['expected_pro_catg'] = list(self.products)
        return d


def _esorex_value(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)

