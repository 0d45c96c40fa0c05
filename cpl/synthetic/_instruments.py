"""The raw frames and steps of each instrument (see :mod:`cpl.synthetic`
for what the recipes need)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from astropy.io import fits

from ._frames import (_NIGHT, _Job, _exposure_sets, _hdu16, _header, _noise,
                      _raw_header, _rng, _scaled, _sprinkle, _write)
from ._step import Step

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
_VIMOS_SHAPE = (2440, 2148)         # never scaled (see cpl.synthetic's doc)


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

