"""Building blocks of synthetic raw frames: headers, 16-bit data as ESO
writes them, noise streams, the frames of one exposure set."""
from __future__ import annotations

import datetime
import os
import zlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from astropy.io import fits


_NIGHT = 59000.0            # MJD of the (arbitrary) night of all exposures


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

