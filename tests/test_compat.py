"""A script written for python-cpl 0.7.4 runs unchanged on cplrun, and
(where Debian's python3-cpl is installed) gives the same answers there."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import write_image

SYSTEM_PYTHON = '/usr/bin/python3'

SCRIPT = r'''
# A python-cpl 0.7.4 style script: nothing in it knows about cplrun.
import json
import os
import sys

import cpl

recipe_dir, raw1, raw2, calib, sof, out = sys.argv[1:7]
report = {}

cpl.Recipe.path = recipe_dir
report['list'] = sorted(name for name, versions in cpl.Recipe.list())
report['versions'] = dict(cpl.Recipe.list())['rtest_copy']

copy = cpl.Recipe('rtest_copy')
report['version'] = list(copy.version)
report['author'] = copy.__author__
report['tags'] = copy.tags
report['tag'] = copy.tag
report['calib_tags'] = [c.tag for c in copy.calib]
report['param_names'] = [p.name for p in copy.param]

copy.param.per_frame = True
copy.calib.CALIB = calib
copy.output_dir = out
res = copy([raw1, raw2])
report['product_files'] = [os.path.basename(p) for p in res.PRODUCT]
info = cpl.dfs.ProcessingInfo(res.PRODUCT[0])
report['info'] = {'name': info.name, 'param': info.param,
                  'calib': info.calib, 'raw': info.raw, 'tag': info.tag,
                  'pipeline': info.pipeline, 'version': list(info.version)}
report['return_code'] = res.stat.return_code

params = cpl.Recipe('rtest_params')
params.param.int_value = 7
params.param['float_range'] = 2.5
params.param.enum_string = 'sigclip'
report['defaults'] = {p.name: p.default for p in params.param}
report['values'] = {p.name: p.value for p in params.param
                    if p.value is not None}
res = params(raw1, param={'string_value': 'from call'})
header = res.PARAMS[0].header
report['qc'] = {k: header['ESO QC ' + k] for k in (
    'INT_VALUE', 'FLOAT_RANGE', 'ENUM_STRING', 'STRING_VALUE', 'BOOL_VALUE')}
report['logged'] = [m for m in res.log.info if 'int_value' in m]
try:
    params.param.int_range = 11
except ValueError:
    report['range_error'] = True

frames = cpl.esorex.load_sof(sof)
report['sof'] = frames
recipe = cpl.Recipe('rtest_copy')
recipe.calib = dict((k, v) for k, v in frames.items() if k != 'RAW')
report['calib_from_sof'] = dict((c.tag, c.frames) for c in recipe.calib)
res = recipe(frames['RAW'])
report['sof_product'] = [res.PRODUCT[0].header['OBJECT'],
                         res.PRODUCT[0].header['ESO PRO REC1 CAL1 NAME']]

error = cpl.Recipe('rtest_error')
error.tag = 'RAW'
try:
    error(raw1)
except cpl.CplError as e:
    report['error'] = {'code': e.code, 'msg': e.msg, 'function': e.function,
                       'chain': [x.msg for x in e]}

omp = cpl.Recipe('rtest_omp')
omp.tag = 'RAW'
omp.env['CPLRUN_TEST_VAR'] = 'compat'
res = omp(raw1)
report['env'] = res.OMP_PRODUCT[0].header['ESO QC ENV VAR']

threaded = cpl.Recipe('rtest_copy', threaded=True)
t = threaded(raw2)
report['threaded'] = t.PRODUCT[0].header['OBJECT']

json.dump(report, sys.stdout, sort_keys=True)
'''


@pytest.fixture
def inputs(tmp_path):
    raw1 = write_image(str(tmp_path / 'raw1.fits'),
                       np.full((3, 3), 1.0, np.float32), OBJECT='raw1')
    raw2 = write_image(str(tmp_path / 'raw2.fits'),
                       np.full((3, 3), 2.0, np.float32), OBJECT='raw2')
    calib = write_image(str(tmp_path / 'calib.fits'),
                        np.zeros((2, 2), np.float32), OBJECT='calib')
    sof = tmp_path / 'input.sof'
    sof.write_text('# raw input\n%s RAW\n# the calibration\n%s CALIB\n'
                   % (raw1, calib))
    script = tmp_path / 'script.py'
    script.write_text(SCRIPT)
    return tmp_path, [raw1, raw2, calib, str(sof)]


def run_script(python, folder, recipe_dir, args, out, extra_env=None):
    env = dict(os.environ, **(extra_env or {}))
    # relative file names, as such scripts use them
    args = [os.path.relpath(a, str(folder)) for a in args]
    proc = subprocess.run(
        [python, str(folder / 'script.py'), recipe_dir] + args + [out],
        cwd=str(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr.decode(errors='replace')
    return json.loads(proc.stdout.decode())


EXPECTED = {
    'list': ['rtest_biglog', 'rtest_copy', 'rtest_crash', 'rtest_error',
             'rtest_hang', 'rtest_leak', 'rtest_omp', 'rtest_params'],
    'versions': ['1.2.3'],
    'version': [10203, '1.2.3'],
    'author': 'cplrun developers',
    'tags': ['RAW'], 'tag': 'RAW', 'calib_tags': ['CALIB'],
    'param_names': ['per_frame'],
    'product_files': ['rtest_copy.fits', 'rtest_copy_0000.fits',
                      'rtest_copy_0001.fits'],
    'info': {'name': 'rtest_copy', 'param': {'per_frame': True},
             'calib': {'CALIB': 'calib.fits'},
             'raw': ['raw1.fits', 'raw2.fits'], 'tag': 'RAW',
             'pipeline': 'cplrun_test', 'version': [10203, '1.2.3']},
    'return_code': 0,
    'defaults': {'bool_value': False, 'int_value': 3, 'int_range': 5,
                 'float_value': 0.5, 'float_range': 1.5,
                 'string_value': 'hello', 'string_null': None,
                 'enum_string': 'median',
                 'enum_int': 2, 'stack.method': 'average',
                 'stack.sigma.low': 3.0, 'stack.sigma.high': 3.0},
    'values': {'int_value': 7, 'float_range': 2.5,
               'enum_string': 'sigclip'},
    'qc': {'INT_VALUE': 7, 'FLOAT_RANGE': 2.5, 'ENUM_STRING': 'sigclip',
           'STRING_VALUE': 'from call', 'BOOL_VALUE': False},
    'logged': ['rtest_params: cplrun.rtest_params.int_value = 7'],
    'range_error': True,
    'sof_product': ['raw1', 'calib.fits'],
    'error': {'code': 14, 'msg': 'Illegal input: inner failure: bad value',
              'function': 'rtest_error_inner',
              'chain': ['Illegal input: inner failure: bad value',
                        'Data not found: outer failure']},
    'env': 'compat',
    'threaded': 'raw2',
}


def test_python_cpl_script_runs_on_cplrun(inputs, recipe_dir):
    folder, args = inputs
    # its run folders (a failed run keeps one) stay in the test's folder
    report = run_script(sys.executable, folder, recipe_dir, args, 'out',
                        {'TMPDIR': str(folder)})
    sof = report.pop('sof')
    assert sof == {'RAW': args[0], 'CALIB': args[2]}
    assert report.pop('calib_from_sof') == {'CALIB': args[2]}
    assert report == EXPECTED
    assert sorted(os.listdir(str(folder / 'out'))) in (
        EXPECTED['product_files'],
        ['.cplrun-work'] + EXPECTED['product_files'])


def have_python_cpl():
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    proc = subprocess.run(
        [SYSTEM_PYTHON, '-c', 'import cpl.CPL_recipe; print(cpl.__file__)'],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd='/')
    return proc.returncode == 0 and \
        proc.stdout.decode().startswith('/usr/lib/python3/')


@pytest.mark.skipif(not have_python_cpl(),
                    reason='python-cpl (Debian python3-cpl) is not installed')
def test_same_answers_as_python_cpl(inputs, recipe_dir):
    folder, args = inputs
    ours = run_script(sys.executable, folder, recipe_dir, args, 'ours',
                      {'TMPDIR': str(folder)})
    # python-cpl must not see our package.  It keeps its log FIFO in TMPDIR
    # and hangs when that path is longer than CPL's log name limit: it gets
    # the session's short temporary folder.
    env = {'PYTHONPATH': '', 'PYTHONNOUSERSITE': '1'}
    theirs = run_script(SYSTEM_PYTHON, folder, recipe_dir, args, 'theirs',
                        env)
    assert theirs == ours
