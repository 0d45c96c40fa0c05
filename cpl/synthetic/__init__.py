"""Synthetic raw calibration frames for the installed ESO pipelines.

:func:`make_dataset` writes small but *valid* raw FITS frames (biases and
darks) for real pipeline recipes, with one esorex SOF per processing step
and a ``manifest.json``, and returns the :class:`Step` s in the order they
have to run.  Nothing is downloaded; only numpy and astropy are used.
It is meant for tests, benchmarks and demonstrations that need the real
recipes to run end to end without observation data::

    import cpl
    from cpl import synthetic
    steps = synthetic.make_dataset('/tmp/data', size='tiny',
                                   instruments=['uves', 'naco'])
    products = {}
    for step in steps:
        recipe = cpl.Recipe(step.recipe)
        products[step.name] = recipe(step.raw, tag=step.tag,
                                     param=step.params,
                                     calib=step.calib_frames(products),
                                     output_dir=step.output_dir)

The same with esorex, in dependency order and each in its own folder
(recipes write their products to the current directory first)::

    mkdir -p D && cd D && esorex --output-dir=D RECIPE [--param=value] SOF

``step.esorex_command()`` gives that command line, with ``D`` the
``step.output_dir`` the SOFs of later steps expect.

Steps
-----
==========  ==============  =========  ===================================
step        recipe          raw tag    calibration <- (step, product)
==========  ==============  =========  ===================================
muse_bias   muse_bias       BIAS
muse_dark   muse_dark       DARK       MASTER_BIAS <- muse_bias
uves_bias   uves_cal_mbias  BIAS_BLUE
uves_dark   uves_cal_mdark  DARK_BLUE  MASTER_BIAS_BLUE <- uves_bias
naco_dark   naco_img_dark   CAL_DARK
vimos_bias  vimos_ima_bias  BIAS
vimos_dark  vimos_ima_dark  DARK       MASTER_BIAS <- vimos_bias
==========  ==============  =========  ===================================

Sizes
-----
``size`` is a linear fraction of the real detector, per axis (see
:data:`SIZES`); a number in (0, 1] may be given instead of a name.

* MUSE: 24 extensions ``CHAN01`` .. ``CHAN24``, each a CCD read through
  four ports; a quadrant has 2048 x 2056 data pixels at full size (scaled)
  plus 32 pixel pre- and overscans (never scaled).  Full size is ~860 MB
  per exposure.
* UVES: blue arm, one EEV chip, 2048 x 3000 data pixels (scaled) between a
  50 pixel prescan and a 50 pixel overscan in x.
* NACO: a 1024 x 1024 float image (scaled).
* VIMOS: always full size, 4 files per exposure (one per quadrant), each
  2148 x 2440; ``size`` does not apply, ``nframes`` does.

What the recipes need (CPL 7.2, Debian's pipelines)
---------------------------------------------------
Found by running them, one keyword left out at a time; the frames carry
a few more keywords than these, as real ones do.

* 16-bit data as ESO writes them: BITPIX 16 with *floating point*
  ``BZERO = 32768.0`` and ``BSCALE = 1.0``.  The UVES recipes refuse the
  integer keywords astropy writes for unsigned data ("Keyword 'BSCALE' has
  wrong type (int). double expected"), so do not rewrite the frames with
  astropy's default scaling.
* MUSE: ``ESO DET BINX/BINY``; all 24 IFU extensions (``EXTNAME``
  ``CHANnn``; a missing one is an error), each with ``ESO DET CHIP NAME``
  and ``ID`` and, per port n = 1..4, ``ESO DET OUTn X/Y`` (the port's
  position, constants of the pipeline: 1 or 4096 in x, 1 or 4112 in y,
  whatever the size), ``NX/NY``, ``PRSCX/PRSCY`` and ``OVSCX/OVSCY`` (32
  pixels, fixed in the pipeline).  The dark also needs ``EXPTIME`` and
  the same chips and ``ESO DET READ CURID`` as the master bias.  At least
  3 exposures.  ``merge=True`` writes one ``MASTER_BIAS.fits`` instead of
  ``MASTER_BIAS-01.fits`` .. ``-24.fits``; ``nifu=-1`` reduces the 24 IFUs
  in parallel (OpenMP), the default 0 one after the other.
* UVES: ``ORIGIN``, ``MJD-OBS``, ``EXPTIME``, ``ESO DET READ SPEED``,
  ``ESO DET WIN1 BINX/BINY``, ``ESO DET OUT1 PRSCX/OVSCX`` and a linear
  ``CTYPEi/CRVALi/CRPIXi/CDELTi`` pixel system (i = 1, 2); the dark also
  ``ESO DET CHIP1 ID``.  One exposure is enough.
* NACO: ``EXPTIME``, ``ESO DET NDIT``, ``ESO DET NCORRS`` (an int),
  ``ESO DET MODE NAME``, ``ESO INS OPTI7 NAME`` (frames are grouped into
  settings by them).  At least 2 exposures.  The recipe cuts a border
  (parameter ``r``, 200 pixels by default) before measuring the read-out
  noise, which fails ("Illegal input" in ``cpl_flux_get_noise_window``)
  on frames smaller than ~512 pixels: the step scales it with the frame.
* VIMOS: the recipes group frames by ``ESO DET CHIP1 ID`` and crash if one
  of the four detectors (CCD-59A, CCD-59B, CCD-60A, CCD-60B) has no frame,
  and at random when the frames are smaller than the real ones.

Every exposure has its own noise (the recipes measure the read-out noise
from frame differences), drawn from a stream that depends only on the
seed, the instrument, the kind of frame and its number: a data set is the
same, file for file, whatever else is generated with it.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from ._frames import _Job
from ._instruments import _GENERATORS
from ._step import Step

__all__ = ['SIZES', 'INSTRUMENTS', 'DEFAULT_INSTRUMENTS', 'MIN_FRAMES',
           'Step', 'available_instruments', 'make_dataset', 'scale_of']

SIZES: dict[str, float] = {'tiny': 1 / 16, 'small': 1 / 8, 'medium': 1 / 4,
                           'large': 1 / 2, 'full': 1.0}
"""Named sizes: linear fraction of the real detector along each axis."""

INSTRUMENTS: dict[str, tuple[str, ...]] = {
    'muse': ('muse_bias', 'muse_dark'),
    'uves': ('uves_cal_mbias', 'uves_cal_mdark'),
    'naco': ('naco_img_dark',),
    'vimos': ('vimos_ima_bias', 'vimos_ima_dark'),
}
"""Supported instruments -> the recipes their steps run."""

DEFAULT_INSTRUMENTS: tuple[str, ...] = ('muse', 'uves', 'naco')
"""What :func:`make_dataset` generates unless told otherwise.  VIMOS is
left out: it is always full size (~250 MB for 3 exposures)."""

MIN_FRAMES: dict[str, int] = {'muse': 3, 'uves': 1, 'naco': 2, 'vimos': 1}
"""Fewest exposures per bias or dark set each instrument's recipes take."""


# ---------------------------------------------------------------------------
# which pipelines are there
# ---------------------------------------------------------------------------
def available_instruments(recipe_path: str | Sequence[str] | None = None
                          ) -> list[str]:
    """The instruments of :data:`INSTRUMENTS` all of whose recipes are
    installed below ``recipe_path`` (default :attr:`cpl.Recipe.path`)."""
    import cpl      # lazily: the generator itself needs no recipe

    saved = cpl.Recipe.path
    if recipe_path is not None:
        cpl.Recipe.path = recipe_path if isinstance(recipe_path, str) \
            else list(recipe_path)
    try:
        return [name for name, recipes in INSTRUMENTS.items()
                if all(cpl.Recipe.get_recipefilename(r) for r in recipes)]
    finally:
        cpl.Recipe.path = saved



# ---------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------
def scale_of(size: str | float) -> float:
    """The linear scale factor of a size name (:data:`SIZES`) or number."""
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError('unknown size %r; the sizes are %s'
                             % (size, ', '.join(SIZES)))
        return SIZES[size]
    scale = float(size)
    if not 0 < scale <= 1:
        raise ValueError('a size number is a scale factor in (0, 1], not %r'
                         % (size,))
    return scale



# ---------------------------------------------------------------------------
# the data set
# ---------------------------------------------------------------------------
def _instrument_list(instruments: str | Iterable[str] | None) -> list[str]:
    if instruments is None:
        return list(DEFAULT_INSTRUMENTS)
    if isinstance(instruments, str):
        instruments = instruments.split(',')
    chosen: list[str] = []
    for name in instruments:
        name = name.strip().lower()
        if not name:
            continue
        if name not in INSTRUMENTS:
            raise ValueError('unknown instrument %r; the instruments are %s'
                             % (name, ', '.join(INSTRUMENTS)))
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError('no instrument chosen')
    # always in the order of INSTRUMENTS, so the data set does not depend
    # on how the list was written
    return [name for name in INSTRUMENTS if name in chosen]


def _write_sof(path: str, entries: list[tuple[str, str]]) -> str:
    with open(path, 'w') as f:
        for filename, tag in entries:
            f.write('%s %s\n' % (filename, tag))
    return path


def make_dataset(outdir: str | os.PathLike, size: str | float = 'tiny',
                 instruments: str | Iterable[str] | None = None,
                 nframes: int = 3, seed: int = 1,
                 products_dir: str | os.PathLike | None = None) -> list[Step]:
    """Writes a synthetic raw data set below ``outdir`` and returns its
    :class:`Step` s in the order they must run (a bias before the dark
    that uses it).

    ``size``: a name of :data:`SIZES` or a scale factor in (0, 1] (VIMOS is
    always full size).  ``instruments``: names of :data:`INSTRUMENTS`, a
    list or comma separated; default :data:`DEFAULT_INSTRUMENTS`.
    ``nframes``: exposures per bias or dark set (at least
    :data:`MIN_FRAMES` of each instrument).  ``seed``:
    the same seed gives the same files.  ``products_dir`` (default
    ``outdir/products``): the SOF of a step that takes an earlier step's
    product names it as ``products_dir/<step name>/<file>``, i.e. expects
    each step to run with ``--output-dir=products_dir/<step name>`` (the
    step's :attr:`Step.output_dir`).

    Layout: ``raw/<instrument>/*.fits``, ``sof/<step name>.sof`` (absolute
    paths) and ``manifest.json`` (the settings, the geometry and every
    step with its esorex command line)."""
    names = _instrument_list(instruments)
    scale = scale_of(size)
    if isinstance(nframes, bool) or not isinstance(nframes, (int, np.integer)):
        raise TypeError('nframes must be an int, not %r' % (nframes,))
    for name in names:
        if nframes < MIN_FRAMES[name]:
            raise ValueError('the %s recipes need nframes >= %d, not %d'
                             % (name, MIN_FRAMES[name], nframes))
    outdir = os.path.abspath(os.fspath(outdir))
    products = os.path.abspath(os.fspath(products_dir)) if products_dir \
        is not None else os.path.join(outdir, 'products')
    for folder in (outdir, products):
        if any(c.isspace() for c in folder):
            raise ValueError('a SOF line is "PATH TAG": its paths cannot hold '
                             'white space, as %r does' % folder)
    sofdir = os.path.join(outdir, 'sof')
    os.makedirs(sofdir, exist_ok=True)

    steps: list[Step] = []
    geometry: dict[str, Any] = {}
    for name in names:
        rawdir = os.path.join(outdir, 'raw', name)
        os.makedirs(rawdir, exist_ok=True)
        made, geometry[name] = _GENERATORS[name](
            _Job(rawdir, scale, int(nframes), int(seed)))
        for step in made:
            step.instrument = name
            step.output_dir = os.path.join(products, step.name)
            step.sof = os.path.join(sofdir, step.name + '.sof')
        steps.extend(made)

    by_name = {step.name: step for step in steps}
    for step in steps:
        entries = [(path, step.tag) for path in step.raw]
        for tag, (source, product_tag) in step.calib.items():
            earlier = by_name[source]
            entries.append((os.path.join(earlier.output_dir,
                                         earlier.files[product_tag]), tag))
        _write_sof(step.sof, entries)

    manifest = {
        'generator': __name__,
        'size': size if isinstance(size, str) else None,
        'scale': scale, 'nframes': int(nframes), 'seed': int(seed),
        'instruments': names, 'outdir': outdir, 'products_dir': products,
        'geometry': geometry,
        'steps': [step.to_dict() for step in steps],
    }
    with open(os.path.join(outdir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=2)
        f.write('\n')
    return steps
