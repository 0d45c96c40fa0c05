"""What a CPL product's header says about how it was made (the ``ESO PRO
REC`` keywords written by CPL's DFS functions)."""
from __future__ import annotations

import sys
from typing import IO, Any

from astropy.io import fits

from .recipe import Recipe


def _header(source: Any) -> Any:
    if isinstance(source, str):
        with fits.open(source) as hdulist:
            return hdulist[0].header.copy()
    if isinstance(source, (fits.HDUList, list)):
        return source[0].header
    if isinstance(source, fits.PrimaryHDU):
        return source.header
    if isinstance(source, (fits.Header, dict)):
        return source
    raise ValueError('cannot read a header from a %s' % type(source).__name__)


def _typed(value: str) -> Any:
    if isinstance(value, list):
        # A name recorded more than once (UVES does that): each value.
        return [_typed(v) for v in value]
    for convert in (int, float):
        try:
            return convert(value)
        except (TypeError, ValueError):
            pass
    return {'true': True, 'false': False}.get(value, value)


def _numbered(header: Any, prefix: str, key: str, value: str) -> dict:
    """``<prefix>1 <key>`` / ``<prefix>1 <value>``, ... as key -> value, or
    key -> list of values when a key repeats."""
    found: dict[str, Any] = {}
    i = 1
    while '%s%d %s' % (prefix, i, key) in header:
        k = header['%s%d %s' % (prefix, i, key)]
        v = header.get('%s%d %s' % (prefix, i, value))
        if k not in found:
            found[k] = v
        elif isinstance(found[k], list):
            found[k].append(v)
        else:
            found[k] = [found[k], v]
        i += 1
    return found


class ProcessingInfo:
    """The processing record of a product.

    ``source``: a path, HDUList, PrimaryHDU or header; ``recno``: which
    record (1 = the first recipe that worked on the data; default: the
    last).  Attributes: ``name`` (recipe), ``product`` (PRO CATG),
    ``orig_filename``, ``pipeline``, ``version`` ((number, string)),
    ``cpl_version``, ``tag`` and ``raw`` (raw inputs), ``calib`` (tag ->
    file names), ``param`` (name -> value), ``md5sum``, ``md5sums``."""

    def __init__(self, source: Any, recno: int = -1) -> None:
        header = _header(source)
        if recno < 0:
            count = 0
            while 'HIERARCH ESO PRO REC%d ID' % (count + 1) in header:
                count += 1
            recno += count + 1
        rec = 'HIERARCH ESO PRO REC%d' % recno
        self.name = header[rec + ' ID']
        self.product = header.get('HIERARCH ESO PRO CATG')
        self.orig_filename = header.get('PIPEFILE')
        pipe_id = header.get(rec + ' PIPE ID')
        if pipe_id and '/' in pipe_id:
            self.pipeline, version = pipe_id.split('/', 1)
            number = 0
            for part in version.split('.'):
                number = number * 100 + int(part) if part.isdigit() else number
            self.version = (number, version)
        else:
            self.pipeline, self.version = None, None
        self.cpl_version = header.get(rec + ' DRS ID')
        self.md5sum = header.get('DATAMD5')
        self.calib = _numbered(header, rec + ' CAL', 'CATG', 'NAME')
        self.md5sums: dict[str, str] = {}
        self._add_md5(self.calib,
                      _numbered(header, rec + ' CAL', 'CATG', 'DATAMD5'))
        raw = _numbered(header, rec + ' RAW', 'CATG', 'NAME')
        if raw:
            self.tag = next(iter(raw))
            self.raw = raw[self.tag]
            self._add_md5(raw, _numbered(header, rec + ' RAW', 'CATG',
                                         'DATAMD5'))
        else:
            self.tag = self.raw = None
        self.param = {k: _typed(v) for k, v in
                      _numbered(header, rec + ' PARAM', 'NAME',
                                'VALUE').items()}

    def _add_md5(self, names: dict, sums: dict) -> None:
        for tag, files in names.items():
            files = files if isinstance(files, list) else [files]
            digests = sums.get(tag)
            digests = digests if isinstance(digests, list) else [digests]
            for f, d in zip(files, digests):
                if d is not None:
                    self.md5sums[f] = d

    def create_recipe(self):
        """A :class:`cpl.Recipe` set up with this record's parameters,
        calibration frames and tag."""
        recipe = Recipe(self.name)
        recipe.param = self.param
        recipe.calib = self.calib
        recipe.tag = self.tag
        return recipe

    def create_script(self, scriptfile: str | IO = sys.stdout) -> None:
        """Writes a Python script that reruns this processing step."""
        if isinstance(scriptfile, str):
            with open(scriptfile, 'w') as f:
                return self.create_script(f)
        var = self.name
        out = ['import cpl', '',
               '# Recipe: %s.%s, version %s, CPL version %s' % (
                   self.pipeline, self.name,
                   self.version[1] if self.version else None, self.cpl_version),
               '%s = cpl.Recipe(%r, version=%r)' % (
                   var, self.name, self.version[0] if self.version else None),
               '', '# Parameters:']
        out += ['%s.param[%r] = %r' % (var, k, v) for k, v in self.param.items()]
        if self.calib:
            out += ['', '# Calibration frames:']
            out += ['%s.calib[%r] = %r' % (var, k, v)
                    for k, v in self.calib.items()]
        out += ['', '# Process input frames:', '%s.tag = %r' % (var, self.tag),
                'res = %s(%r)' % (var, self.raw)]
        scriptfile.write('\n'.join(out) + '\n')

    def __str__(self) -> str:
        lines = ['Recipe: %s, Version %s, CPL version %s' % (
            self.name, self.version, self.cpl_version), 'Parameters:']
        lines += [' %s.%s.%s = %s' % (self.pipeline, self.name, k, v)
                  for k, v in self.param.items()]
        if self.calib:
            lines.append('Calibration frames:')
            for tag, files in self.calib.items():
                for f in files if isinstance(files, list) else [files]:
                    lines.append(' %s %s' % (f, tag))
        if self.raw is not None:
            lines.append('Input frames:')
            for f in self.raw if isinstance(self.raw, list) else [self.raw]:
                lines.append(' %s %s' % (f, self.tag))
        return '\n'.join(lines) + '\n'

    def printinfo(self) -> None:
        print(self)

    @staticmethod
    def list(source: Any) -> list['ProcessingInfo']:
        """Every processing record of the product, in execution order."""
        header = _header(source)
        records = []
        while 'HIERARCH ESO PRO REC%d ID' % (len(records) + 1) in header:
            records.append(ProcessingInfo(header, len(records) + 1))
        return records
