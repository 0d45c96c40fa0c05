"""Input frames: the calibration frames of a recipe, and the checks that
every input is a readable FITS file before any process starts."""
from __future__ import annotations

import difflib
import errno
import gzip
import hashlib
import io
import os
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator, Mapping

from astropy.io import fits

from .result import CplError

FITS_BLOCK = 2880
CARD_SIZE = 80


class FrameConfig:
    """One kind of frame a recipe takes: ``tag``, ``min`` and ``max``
    (how many) and ``frames``, the file name(s) or
    :class:`astropy.io.fits.HDUList` (s) assigned to it.

    Made by hand or for a recipe without frame configuration, ``min`` and
    ``max`` are None where not given (or not above 0).  For a recipe that
    declares its frames they are the recipe's numbers, as python-cpl
    reports them: 0 or -1 for no minimum, -1 for no maximum.
    :attr:`limits` reads both the same way for either."""

    def __init__(self, tag: str, min_frames: int | None = None,
                 max_frames: int | None = None, frames: Any = None) -> None:
        self.tag = tag
        self.min = min_frames if min_frames and min_frames > 0 else None
        self.max = max_frames if max_frames and max_frames > 0 else None
        self.frames = frames

    @classmethod
    def declared(cls, tag: str, min_frames: int,
                 max_frames: int) -> 'FrameConfig':
        """The configuration of tag as a recipe declares it: min and max
        kept as the recipe gives them (python-cpl's values)."""
        config = cls(tag)
        config.min, config.max = min_frames, max_frames
        return config

    @property
    def limits(self) -> tuple[int, int | None]:
        """(least, most): how many frames the recipe needs (0: optional)
        and takes at most (None: no limit)."""
        least = self.min if self.min is not None and self.min > 0 else 0
        most = self.max if self.max is not None and self.max > 0 else None
        return least, most

    @property
    def __doc__(self) -> str:
        least, most = self.limits
        if most == 1:
            text = 'one frame'
        elif most is not None:
            text = 'up to %d frames' % most
        else:
            text = 'one frame or a list of frames'
        return text if least else text + ' (optional)'

    def __getitem__(self, i: int) -> Any:
        return (self.tag, self.frames)[i]

    def __str__(self) -> str:
        return str(self.frames)

    def __repr__(self) -> str:
        return 'FrameDef(%r, frames=%r)' % (self.tag, self.frames)


class UnknownTagError(KeyError, AttributeError):
    """The recipe declares its calibration tags and this is not one."""

    def __str__(self) -> str:
        return str(self.args[0])


class FrameList:
    """The calibration frames of a recipe, one attribute per tag.

    For recipes that declare their inputs (those with a frame
    configuration, e.g. MUSE), the tags are known, with their counts, and
    an unknown tag is refused; for the others, any tag may be set."""

    def __init__(self, recipe: str, declared: list[FrameConfig] | None,
                 values: Any = None) -> None:
        object.__setattr__(self, '_recipe', recipe)
        object.__setattr__(self, '_declared', declared is not None)
        object.__setattr__(self, '_frames',
                           {c.tag: c for c in (declared or [])})
        if values is not None:
            self._update(values)

    def _config(self, tag: str, create: bool = False) -> FrameConfig:
        config = self._frames.get(tag)
        if config is not None:
            return config
        if self._declared:
            close = difflib.get_close_matches(tag, self._frames, n=3)
            raise UnknownTagError(
                "recipe '%s' takes no calibration frame tagged '%s'; "
                "its tags are %s%s" % (
                    self._recipe, tag, ', '.join(sorted(self._frames)) or 'none',
                    ' (did you mean %s?)' % ', '.join(close) if close else ''))
        if not create:
            raise UnknownTagError("no calibration frame tagged '%s' is set "
                                  "for recipe '%s'" % (tag, self._recipe))
        config = self._frames[tag] = FrameConfig(tag)
        return config

    def __iter__(self) -> Iterator[FrameConfig]:
        return iter(self._frames.values())

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, tag: str) -> bool:
        return tag in self._frames

    def __getitem__(self, tag: str) -> FrameConfig:
        return self._config(tag)

    def __setitem__(self, tag: str, frames: Any) -> None:
        self._config(tag, create=True).frames = frames

    def __delitem__(self, tag: str) -> None:
        self._config(tag).frames = None

    def __getattr__(self, tag: str) -> FrameConfig:
        if tag.startswith('__'):
            raise AttributeError(tag)
        return self._config(tag)

    def __setattr__(self, tag: str, frames: Any) -> None:
        self[tag] = frames

    def __delattr__(self, tag: str) -> None:
        del self[tag]

    def __dir__(self) -> list[str]:
        return sorted(self._frames)

    def __eq__(self, other: Any) -> bool:
        return dict(iter(self)) == other

    def __repr__(self) -> str:
        return repr(dict(iter(self)))

    __str__ = __repr__

    def _update(self, values: Any) -> None:
        items = values.items() if isinstance(values, Mapping) else values
        for tag, frames in items:
            self[tag] = frames

    def _assigned(self, overrides: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
        """tag -> frames for the tags that have frames, with a call's
        overrides applied (checked like assignments)."""
        assigned = {c.tag: c.frames for c in self if c.frames is not None}
        for tag, frames in (overrides or {}).items():
            if self._declared:
                self._config(tag)
            if frames is None:
                assigned.pop(tag, None)
            else:
                assigned[tag] = frames
        return assigned


@dataclass(frozen=True)
class MemoryFrame:
    """An in-memory input as it was when the call was made: ``name``, the
    file name the recipe sees it under (``<TAG>_<8 hex of DATAMD5>.fits``,
    as python-cpl names it), and ``data``, its FITS bytes, with ``DATAMD5``
    in the primary header."""
    name: str
    data: bytes = field(repr=False)


def datamd5(hdulist: fits.HDUList) -> str:
    """python-cpl's DATAMD5 of an HDUList: the MD5 of each HDU's data as
    held in memory (in its own byte order), each followed by zeros to the
    next 2880-byte boundary, or by a whole block of them when it ends on
    one."""
    digest = hashlib.md5()
    for hdu in hdulist:
        data = hdu.data
        if data is not None:
            digest.update(data.tobytes())
            digest.update(bytes(FITS_BLOCK - data.nbytes % FITS_BLOCK))
    return digest.hexdigest()


def memory_frame(hdulist: fits.HDUList, tag: str) -> MemoryFrame:
    """A snapshot of an in-memory input, taken at call time: later changes
    to the HDUList do not reach the run.  The caller's HDUList is left as
    it is (python-cpl wrote DATAMD5 into its header)."""
    md5 = datamd5(hdulist)
    buf = io.BytesIO()
    hdulist.writeto(buf)
    with buf.getbuffer() as data:
        end = _primary_header_end(data)
        header = fits.Header.fromstring(bytes(data[:end]).decode('ascii'))
        header['DATAMD5'] = (md5, 'MD5 checksum')
        # One copy of the bytes (a large input is held until its run).
        return MemoryFrame('%s_%s.fits' % (tag, md5[:8]), b''.join(
            (header.tostring().encode('ascii'), data[end:])))


def _primary_header_end(data: memoryview) -> int:
    """Where the primary header of FITS bytes ends, padding included."""
    for offset in range(0, len(data), CARD_SIZE):
        if bytes(data[offset:offset + 8]) == b'END     ':
            return (offset // FITS_BLOCK + 1) * FITS_BLOCK
    raise ValueError('FITS bytes without the END of the primary header')


def frame_items(frames: Any) -> list:
    """One frame or a list of them as a list."""
    if isinstance(frames, (list, tuple)) and not isinstance(frames, fits.HDUList):
        return list(frames)
    return [frames]


#: CPL's error codes (cpl_error.h) for the input errors found up front: the
#: codes the recipe's own attempt to read its input would have given.
CPL_ERROR_FILE_IO = 5
CPL_ERROR_BAD_FILE_FORMAT = 6
CPL_ERROR_FILE_NOT_FOUND = 9
CPL_ERROR_DATA_NOT_FOUND = 10


class InputError(CplError):
    """An input the recipe cannot take, found before anything runs: a
    :class:`cpl.CplError`, as python-cpl's was (the recipe failed on it).
    Attributes: those of CplError (``code``, ``msg``, ``recipe``,
    ``inputs``), ``tag`` and ``filename`` (or None)."""

    default_code = CPL_ERROR_DATA_NOT_FOUND

    def __init__(self, message: str, recipe: str | None = None,
                 tag: str | None = None, filename: str | None = None,
                 code: int | None = None) -> None:
        self.tag = tag
        self.filename = filename
        super().__init__(None, [{'code': self.default_code if code is None
                                 else code, 'message': message}],
                         recipe=recipe, inputs=[filename] if filename else None)

    def __str__(self) -> str:
        return self.msg

    def __reduce__(self):
        return (type(self), (self.msg, self.recipe, self.tag, self.filename,
                             self.code))


class UnknownRawTagError(InputError, KeyError):
    """A call's ``tag`` (or an assignment to :attr:`cpl.Recipe.tag`) names
    no raw tag of a recipe that declares them: every raw frame would carry
    it, and the recipe would find none it takes.  Also a KeyError."""


class InputFileError(InputError, ValueError):
    """An input frame is unreadable, empty or not FITS.  Also a
    ValueError."""

    default_code = CPL_ERROR_BAD_FILE_FORMAT


class MissingInputFileError(InputFileError, FileNotFoundError):
    """An input frame does not exist: also a FileNotFoundError (errno
    ENOENT, ``filename``)."""

    default_code = CPL_ERROR_FILE_NOT_FOUND

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.errno = errno.ENOENT
        self.strerror = os.strerror(errno.ENOENT)


#: What a FITS file starts with, and a gzipped one (CFITSIO, and so CPL,
#: reads ``.fits.gz`` as it is, as esorex and python-cpl do).
FITS_START = b'SIMPLE  ='
GZIP_MAGIC = b'\x1f\x8b'


def check_input_file(path: str, tag: str, recipe: str) -> None:
    """Refuses an input before anything runs, naming the file."""
    what = "input %s of recipe '%s' (tag %s)" % (path, recipe, tag)
    where = dict(recipe=recipe, tag=tag, filename=path)
    if '\0' in path:
        raise InputFileError('%s: a file name cannot hold a NUL character'
                             % what, **where)
    try:
        with open(path, 'rb') as f:
            head = f.read(len(FITS_START))
            if head.startswith(GZIP_MAGIC):
                f.seek(0)
                head = _gunzipped_start(f, len(FITS_START))
    except FileNotFoundError:
        raise MissingInputFileError('no such file: %s' % what, **where) \
            from None
    except IsADirectoryError:
        raise InputFileError('%s is a folder, not a FITS file' % what,
                             code=CPL_ERROR_FILE_IO, **where) from None
    except OSError as exc:
        raise InputFileError('cannot read %s: %s' % (what, exc.strerror),
                             code=CPL_ERROR_FILE_IO, **where) from None
    if head is None:
        raise InputFileError('%s is gzipped but damaged' % what, **where)
    if not head:
        raise InputFileError('%s is empty' % what, **where)
    if not head.startswith(FITS_START):
        raise InputFileError('%s is not a FITS file' % what, **where)


def _gunzipped_start(f: BinaryIO, size: int) -> bytes | None:
    """The first bytes of a gzipped file once uncompressed, or None when
    it is no valid gzip stream."""
    try:
        with gzip.GzipFile(fileobj=f) as unzipped:
            return unzipped.read(size)
    except (OSError, EOFError, zlib.error):
        return None
