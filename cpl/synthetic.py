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

import datetime
import json
import os
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from astropy.io import fits

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

_NIGHT = 59000.0            # MJD of the (arbitrary) night of all exposures


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
# building blocks of raw frames
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


def _scaled(full: int, scale: float, multiple: int = 8,
            least: int = 32) -> int:
    """A detector dimension at scale, a multiple of ``multiple`` pixels."""
    return max(least, multiple * int(round(full * scale / multiple)))


def _rng(seed: int, *key: Any) -> np.random.Generator:
    """A random stream of its own for each (instrument, kind, number...),
    stable across Python runs (no hash randomisation)."""
    words = [zlib.crc32(str(k).encode()) for k in key]
    return np.random.default_rng([int(seed) & 0xFFFFFFFF] + words)


def _iso(mjd: float) -> str:
    """MJD -> ISO 8601 with milliseconds, as in ESO headers."""
    t = datetime.datetime(1858, 11, 17) + datetime.timedelta(days=mjd)
    return t.isoformat(timespec='milliseconds')


def _header(cards: Mapping[str, Any]) -> fits.Header:
    """A header from ``keyword -> value`` or ``(value, comment)``;
    ``ESO ...`` keywords become HIERARCH cards."""
    header = fits.Header()
    for key, value in cards.items():
        if key.startswith('ESO '):
            key = 'HIERARCH ' + key
        header[key] = value
    return header


def _raw_header(instrume: str, telescope: str, prefix: str, dpr_type: str,
                dpr_tech: str, mjd: float, exptime: float) -> dict[str, Any]:
    """The keywords of every ESO raw frame's primary header."""
    return {
        'ORIGIN': 'ESO',
        'TELESCOP': telescope,
        'INSTRUME': instrume,
        'OBJECT': dpr_type,
        'DATE-OBS': _iso(mjd),
        'MJD-OBS': (mjd, 'observation start'),
        'EXPTIME': (float(exptime), 'integration time [s]'),
        'ARCFILE': '%s.%s.fits' % (prefix, _iso(mjd)),
        'ESO DPR CATG': 'CALIB',
        'ESO DPR TYPE': dpr_type,
        'ESO DPR TECH': dpr_tech,
        'ESO TPL START': _iso(_NIGHT)[:19],
    }


def _noise(rng: np.random.Generator, shape: tuple[int, ...],
           sigma: float) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)


def _adu16(image: np.ndarray) -> np.ndarray:
    """Counts as a 16-bit ADC gives them: rounded, clipped to 0..65535,
    stored as signed int16 with an offset of 32768 (BZERO)."""
    adu = np.clip(np.rint(image), 0, 65535).astype(np.int32)
    return (adu - 32768).astype(np.int16)


def _hdu16(image: np.ndarray, cards: Mapping[str, Any],
           primary: bool) -> fits.PrimaryHDU | fits.ImageHDU:
    """An HDU of unsigned 16-bit counts with *float* BZERO and BSCALE."""
    cls = fits.PrimaryHDU if primary else fits.ImageHDU
    hdu = cls(data=_adu16(image), header=_header(cards),
              do_not_scale_image_data=True)
    hdu.header['BSCALE'] = 1.0
    hdu.header['BZERO'] = 32768.0
    return hdu


def _write(path: str, hdus: list) -> str:
    fits.HDUList(hdus).writeto(path, overwrite=True, output_verify='silentfix')
    return os.path.abspath(path)


def _sprinkle(image: np.ndarray, rng: np.random.Generator, per_pixel: float,
              value: float) -> None:
    """Adds ``value`` to a random ``per_pixel`` fraction of the pixels."""
    count = max(1, int(image.size * per_pixel))
    where = rng.integers(0, image.size, size=count)
    image.flat[where] += np.float32(value)


@dataclass
class _Job:
    """What an instrument's generator is given."""
    rawdir: str
    scale: float
    nframes: int
    seed: int

    def path(self, name: str) -> str:
        return os.path.join(self.rawdir, name)


_Generator = Callable[[_Job], 'tuple[list[Step], dict[str, Any]]']


# ---------------------------------------------------------------------------
# MUSE: 24 IFUs, each a 4-port CCD in an image extension
# ---------------------------------------------------------------------------
_MUSE_IFUS = 24
_MUSE_SCAN = 32             # pre- and overscan width; fixed in the pipeline
_MUSE_GAIN = 1.1            # count / adu
_MUSE_RON = 3.0             # count
# Output port positions (ESO DET OUTn X/Y): constants of the pipeline for
# the full chip, the same whatever the size of the data.
_MUSE_PORTS = {1: (1, 1), 2: (4096, 1), 3: (4096, 4112), 4: (1, 4112)}


def _muse_exposure(path: str, kind: str, exptime: float, mjd: float,
                   nx: int, ny: int, rng: np.random.Generator) -> str:
    """A MUSE raw frame.  Each extension is the chip as read out:

        prescan | port 4 data | overscan | overscan | port 3 data | prescan
        prescan | port 1 data | overscan | overscan | port 2 data | prescan

    (top half above, bottom half below; the halves have a prescan at
    the outer and overscans at the inner edge in y too)."""
    half_w = _MUSE_SCAN + nx + _MUSE_SCAN
    half_h = _MUSE_SCAN + ny + _MUSE_SCAN
    primary = _raw_header('MUSE', 'ESO-VLT-U4', 'MUSE', kind, 'IFU', mjd,
                          exptime)
    primary.update({'ESO INS MODE': 'WFM-NOAO-N', 'ESO DET BINX': 1,
                    'ESO DET BINY': 1, 'ESO DET READ CURID': 1,
                    'ESO DET READ CURNAME': 'SCI1.0'})
    hdus: list = [fits.PrimaryHDU(header=_header(primary))]

    # per port: (y, x) of the corner of its quarter of the chip; its data
    # start one scan width in (prescan and overscan are equally wide)
    halves = {1: (0, 0), 2: (0, half_w), 3: (half_h, half_w), 4: (half_h, 0)}
    dark = exptime / 3600.0          # hours
    for ifu in range(1, _MUSE_IFUS + 1):
        cards: dict[str, Any] = {
            'EXTNAME': 'CHAN%02d' % ifu,
            'ESO DET CHIP NAME': 'MUSE-CCD%02d' % ifu,
            'ESO DET CHIP ID': 'SYN-%02d' % ifu,
            'ESO DET CHIP DATE': '2014-01-01',
            'ESO DET CHIP LIVE': True,
        }
        for port, (px, py) in _MUSE_PORTS.items():
            out = 'ESO DET OUT%d ' % port
            cards.update({out + 'X': px, out + 'Y': py,
                          out + 'NX': nx, out + 'NY': ny,
                          out + 'PRSCX': _MUSE_SCAN, out + 'PRSCY': _MUSE_SCAN,
                          out + 'OVSCX': _MUSE_SCAN, out + 'OVSCY': _MUSE_SCAN,
                          out + 'GAIN': _MUSE_GAIN, out + 'RON': _MUSE_RON})
        image = _noise(rng, (2 * half_h, 2 * half_w), _MUSE_RON / _MUSE_GAIN)
        for port, (y0, x0) in halves.items():
            # the bias level of a port covers its data and its scans
            image[y0:y0 + half_h, x0:x0 + half_w] += 1000 + 7 * ifu + 5 * port
            if dark > 0:
                dy, dx = y0 + _MUSE_SCAN, x0 + _MUSE_SCAN
                data = image[dy:dy + ny, dx:dx + nx]
                data += rng.poisson(3.0 * dark, size=data.shape
                                    ).astype(np.float32) / _MUSE_GAIN
                _sprinkle(data, rng, 2e-4, 300.0 * dark)     # hot pixels
        hdus.append(_hdu16(image, cards, primary=False))
    return _write(path, hdus)


def _exposure_sets(job: _Job, instrument: str, name: str, exposure,
                   timing: dict[str, tuple[float, float, float]], nx: int,
                   ny: int) -> dict[str, list[str]]:
    """The frames of each kind of a one-detector instrument, written by
    exposure(path, kind, exptime, mjd, nx, ny, rng); timing gives each
    kind's exposure time, start (days after _NIGHT) and spacing."""
    return {kind: [exposure(job.path(name % (kind, i + 1)), kind, exptime,
                            _NIGHT + start + i * spacing, nx, ny,
                            _rng(job.seed, instrument, kind, i))
                   for i in range(job.nframes)]
            for kind, (exptime, start, spacing) in timing.items()}


def _muse(job: _Job) -> tuple[list[Step], dict[str, Any]]:
    nx, ny = _scaled(2048, job.scale), _scaled(2056, job.scale)
    sets = _exposure_sets(job, 'muse', 'MUSE_%s_%03d.fits', _muse_exposure,
                          {'BIAS': (0.0, 0.30, 0.001),
                           'DARK': (1800.0, 0.40, 0.03)}, nx, ny)
    # nifu -1: the 24 IFUs in parallel (OpenMP); merge: one product file
    # with the 24 IFUs, not 24 files
    params = {'nifu': -1, 'merge': True}
    steps = [
        Step('muse_bias', 'muse_bias', 'BIAS', sets['BIAS'], {}, dict(params),
             ['MASTER_BIAS'], {'MASTER_BIAS': 'MASTER_BIAS.fits'}),
        Step('muse_dark', 'muse_dark', 'DARK', sets['DARK'],
             {'MASTER_BIAS': ('muse_bias', 'MASTER_BIAS')}, dict(params),
             ['MASTER_DARK'], {'MASTER_DARK': 'MASTER_DARK.fits'}),
    ]
    side = 2 * (2 * _MUSE_SCAN)
    geometry = {'extensions': _MUSE_IFUS,
                'shape': [2 * ny + side, 2 * nx + side],
                'port_data': [ny, nx]}
    return steps, geometry


# ---------------------------------------------------------------------------
# UVES blue arm: one chip in the primary HDU
# ---------------------------------------------------------------------------
_UVES_SCAN = 50             # x prescan and x overscan


def _uves_exposure(path: str, kind: str, exptime: float, mjd: float,
                   nx: int, ny: int, rng: np.random.Generator) -> str:
    width = _UVES_SCAN + nx + _UVES_SCAN
    cards = _raw_header('UVES', 'ESO-VLT-U2', 'UVES', kind, 'ECHELLE', mjd,
                        exptime)
    cards.update({
        'ESO INS PATH': 'BLUE', 'ESO INS MODE': 'BLUE',
        'ESO DET CHIPS': 1, 'ESO DET CHIP1 NAME': 'EEV',
        'ESO DET CHIP1 ID': 'CCD-44b',
        'ESO DET READ SPEED': '225kHz,1port,high_gain',
        'ESO DET WIN1 BINX': 1, 'ESO DET WIN1 BINY': 1,
        'ESO DET WIN1 UIT1': float(exptime),
        'ESO DET OUT1 NX': nx, 'ESO DET OUT1 NY': ny,
        'ESO DET OUT1 PRSCX': _UVES_SCAN, 'ESO DET OUT1 OVSCX': _UVES_SCAN,
        'ESO DET OUT1 PRSCY': 0, 'ESO DET OUT1 OVSCY': 0,
        'ESO DET OUT1 RON': 4.0, 'ESO DET OUT1 GAIN': 1.0,
        'ESO DET OUT1 CONAD': 1.0,
    })
    # a plain pixel coordinate system; the recipe rotates and rewrites it
    for axis in '12':
        cards.update({'CTYPE' + axis: 'PIXEL', 'CRVAL' + axis: 1.0,
                      'CRPIX' + axis: 1.0, 'CDELT' + axis: 1.0})
    image = 200.0 + _noise(rng, (ny, width), 4.0)
    image += np.linspace(0.0, 3.0, width, dtype=np.float32)  # a bias slope
    if exptime > 0:
        data = image[:, _UVES_SCAN:_UVES_SCAN + nx]
        data += rng.poisson(2.0 * exptime / 3600.0, size=data.shape
                            ).astype(np.float32)
    return _write(path, [_hdu16(image, cards, primary=True)])


def _uves(job: _Job) -> tuple[list[Step], dict[str, Any]]:
    nx, ny = _scaled(2048, job.scale), _scaled(3000, job.scale)
    sets = _exposure_sets(job, 'uves', 'UVES_%s_BLUE_%03d.fits',
                          _uves_exposure, {'BIAS': (0.0, 0.50, 0.001),
                                           'DARK': (3600.0, 0.60, 0.05)},
                          nx, ny)
    steps = [
        Step('uves_bias', 'uves_cal_mbias', 'BIAS_BLUE', sets['BIAS'], {}, {},
             ['MASTER_BIAS_BLUE'],
             {'MASTER_BIAS_BLUE': 'masterbias_blue.fits'}),
        Step('uves_dark', 'uves_cal_mdark', 'DARK_BLUE', sets['DARK'],
             {'MASTER_BIAS_BLUE': ('uves_bias', 'MASTER_BIAS_BLUE')}, {},
             ['MASTER_DARK_BLUE'],
             {'MASTER_DARK_BLUE': 'masterdark_blue.fits'}),
    ]
    return steps, {'shape': [ny, nx + 2 * _UVES_SCAN], 'data': [ny, nx]}


# ---------------------------------------------------------------------------
# NACO imaging: float images of the Aladdin array
# ---------------------------------------------------------------------------
_NACO_DIT = 10.0


def _naco_exposure(path: str, mjd: float, n: int,
                   rng: np.random.Generator) -> str:
    cards = _raw_header('NAOS+CONICA', 'ESO-VLT-U4', 'NACO', 'DARK', 'IMAGE',
                        mjd, _NACO_DIT)
    # the recipe groups frames by OPTI7 NAME : MODE NAME : NCORRS : DIT
    cards.update({
        'AIRMASS': 1.0, 'ESO TPL ID': 'NACO_img_cal_Darks',
        'ESO DET DIT': _NACO_DIT, 'ESO DET NDIT': 1,
        'ESO DET NCORRS': 4, 'ESO DET NCORRS NAME': 'Double_RdRstRd',
        'ESO DET MODE NAME': 'HighDynamic', 'ESO INS OPTI7 NAME': 'S13',
    })
    image = 100.0 + 0.5 * _NACO_DIT + _noise(rng, (n, n), 5.0)
    _sprinkle(image, rng, 5e-4, 5000.0)             # hot pixels
    image[:, n // 3] -= 80.0                         # a cold column
    return _write(path, [fits.PrimaryHDU(image.astype(np.float32),
                                         _header(cards))])


def _naco(job: _Job) -> tuple[list[Step], dict[str, Any]]:
    n = _scaled(1024, job.scale)
    raw = [_naco_exposure(job.path('NACO_DARK_%03d.fits' % (i + 1)),
                          _NIGHT + 0.70 + i * 0.001, n,
                          _rng(job.seed, 'naco', 'DARK', i))
           for i in range(job.nframes)]
    border = max(4, int(round(200 * n / 1024)))
    files = {'NACO_IMG_DARK_AVG': 'naco_img_dark_set01_avg.fits',
             'NACO_IMG_DARK_HOT': 'naco_img_dark_set01_hotpix.fits',
             'NACO_IMG_DARK_COLD': 'naco_img_dark_set01_coldpix.fits',
             'NACO_IMG_DARK_DEV': 'naco_img_dark_set01_devpix.fits'}
    steps = [Step('naco_dark', 'naco_img_dark', 'CAL_DARK', raw, {},
                  {'r': '%d %d %d %d' % ((border,) * 4)}, list(files), files)]
    return steps, {'shape': [n, n]}


# ---------------------------------------------------------------------------
# VIMOS imaging: one file per quadrant (detector) and exposure
# ---------------------------------------------------------------------------
_VIMOS_CHIPS = ('CCD-59A', 'CCD-59B', 'CCD-60A', 'CCD-60B')  # quadrants 1-4
_VIMOS_SHAPE = (2440, 2148)         # never scaled (see the module's doc)


def _vimos_exposure(path: str, kind: str, exptime: float, mjd: float,
                    quadrant: int, rng: np.random.Generator) -> str:
    chip = _VIMOS_CHIPS[quadrant - 1]
    cards = _raw_header('VIMOS', 'ESO-VLT-U3', 'VIMOS', kind, 'IMAGE', mjd,
                        exptime)
    cards.update({
        'ESO OCS CON QUAD': quadrant,
        'ESO DET CHIP1 ID': chip, 'ESO DET CHIP1 NAME': chip,
        'ESO DET OUT1 PRSCX': 50, 'ESO DET OUT1 OVSCX': 50,
        'ESO DET OUT1 RON': 4.5, 'ESO DET OUT1 CONAD': 1.9,
    })
    image = 200.0 + 3 * quadrant + _noise(rng, _VIMOS_SHAPE, 4.0)
    if exptime > 0:
        image += rng.poisson(2.0 * exptime / 3600.0, size=_VIMOS_SHAPE
                             ).astype(np.float32)
    return _write(path, [_hdu16(image, cards, primary=True)])


def _vimos(job: _Job) -> tuple[list[Step], dict[str, Any]]:
    sets: dict[str, list[str]] = {}
    for kind, exptime, start in (('BIAS', 0.0, 0.80), ('DARK', 600.0, 0.85)):
        sets[kind] = [
            _vimos_exposure(
                job.path('VIMOS_%s_%03d_Q%d.fits' % (kind, i + 1, q)),
                kind, exptime, _NIGHT + start + i * 0.01, q,
                _rng(job.seed, 'vimos', kind, i, q))
            for i in range(job.nframes) for q in range(1, 5)]
    steps = [
        Step('vimos_bias', 'vimos_ima_bias', 'BIAS', sets['BIAS'], {}, {},
             ['MASTER_BIAS'], {'MASTER_BIAS': 'biascomb.fits'}),
        Step('vimos_dark', 'vimos_ima_dark', 'DARK', sets['DARK'],
             {'MASTER_BIAS': ('vimos_bias', 'MASTER_BIAS')}, {},
             ['MASTER_DARK'], {'MASTER_DARK': 'darkcomb.fits'}),
    ]
    return steps, {'files_per_exposure': 4, 'shape': list(_VIMOS_SHAPE)}


_GENERATORS: dict[str, _Generator] = {
    'muse': _muse, 'uves': _uves, 'naco': _naco, 'vimos': _vimos}


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
