"""Input frames: the calibration frames of a recipe, and the checks that
every input is a readable FITS file before any process starts."""
from __future__ import annotations

import difflib
import os
from typing import Any, Iterator, Mapping

from astropy.io import fits


class FrameConfig:
    """One kind of frame a recipe takes: ``tag``, ``min`` and ``max``
    (how many; None when the recipe does not say) and ``frames``, the file
    name(s) or :class:`astropy.io.fits.HDUList` (s) assigned to it."""

    def __init__(self, tag: str, min_frames: int | None = None,
                 max_frames: int | None = None, frames: Any = None) -> None:
        self.tag = tag
        self.min = min_frames if min_frames and min_frames > 0 else None
        self.max = max_frames if max_frames and max_frames > 0 else None
        self.frames = frames

    @property
    def __doc__(self) -> str:
        if self.max == 1:
            text = 'one frame'
        elif self.max is not None:
            text = 'up to %d frames' % self.max
        else:
            text = 'one frame or a list of frames'
        return text if self.min else text + ' (optional)'

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


def frame_items(frames: Any) -> list:
    """One frame or a list of them as a list."""
    if isinstance(frames, (list, tuple)) and not isinstance(frames, fits.HDUList):
        return list(frames)
    return [frames]


class InputFileError(ValueError):
    """An input frame is missing, unreadable, empty or not FITS."""


def check_input_file(path: str, tag: str, recipe: str) -> None:
    """Refuses an input before anything runs, naming the file."""
    what = "input %s of recipe '%s' (tag %s)" % (path, recipe, tag)
    if '\0' in path:
        raise InputFileError('%s: a file name cannot hold a NUL character'
                             % what)
    try:
        with open(path, 'rb') as f:
            head = f.read(80)
    except FileNotFoundError:
        raise FileNotFoundError(2, 'no such file: %s' % what, path) from None
    except IsADirectoryError:
        raise InputFileError('%s is a folder, not a FITS file' % what) from None
    except OSError as exc:
        raise InputFileError('cannot read %s: %s' % (what, exc.strerror)) \
            from None
    if not head:
        raise InputFileError('%s is empty' % what)
    if not head.startswith(b'SIMPLE  ='):
        raise InputFileError('%s is not a FITS file' % what)
