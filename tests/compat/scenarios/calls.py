"""Calling a recipe with every keyword: raw=, tag=, threaded=, loglevel=,
logname=, output_dir=, param=, calib=, env=, mtrace=; file names, dicts,
lists and HDULists as inputs; what the result holds and which files are
left in output_dir and in the working folder (python-cpl's temp_dir)."""
import logging
import os
import shutil

from astropy.io import fits

import cpl
from outcome import Captured, attempt, config, listing, record, result

cpl.Recipe.path = [config['recipe_dir']]
images, calib = config['images'], config['calib']

copy = cpl.Recipe('rtest_copy')
with Captured() as captured:
    res = copy(images[0])
    record('one file', result(res))
record('one file: type', type(res).__name__)
record('one file: logged', captured.summary())
record('one file: files left', listing('.'))

record('output_dir', result(copy(images[0], output_dir='out1')))
record('output_dir: files', listing('out1'))
copy.output_dir = 'out2'
record('attribute output_dir', result(copy(images[1])))
record('attribute output_dir: files', listing('out2'))
copy.output_dir = None

record('raw= list, param=', result(copy(raw=images[:3], output_dir='out3',
                                        param={'per_frame': True})))
record('raw= list, param=: files', listing('out3'))
record('param= leaves the attribute', copy.param.per_frame.value)
record('list of one', result(copy([images[0]], param={'per_frame': True})))
record('two positional', result(copy(images[0], images[1])))
record('dict raw, calib=', result(copy({'RAW': images[0]},
                                       calib={'CALIB': calib})))
record('calib= leaves the attribute', copy.calib.CALIB.frames)
record('tag=', result(copy(images[1], tag='RAW')))
record('positional and raw=', result(copy(images[0], raw=images[1])))
record('mtrace=', result(copy(images[0], mtrace=False)))
attempt('no raw frames', copy)
attempt('tag None', copy, images[0], tag=None)
attempt('untagged recipe without tag', cpl.Recipe('rtest_omp'), images[0])
attempt('param= unknown name', copy, images[0], param={'nope': 1})
attempt('calib= unknown tag', copy, images[0], calib={'NOPE': images[1]})
left = [name for name in os.listdir('.') if name.startswith('rtest_')]
record('argument errors: folders left', sorted(name.split('-')[0]
                                               for name in left))
for name in left:
    shutil.rmtree(name)

omp = cpl.Recipe('rtest_omp')
omp.tag = 'RAW'
omp.env['CPLRUN_TEST_VAR'] = 'attribute'
res = omp(images[0])
record('env attribute', res.OMP_PRODUCT[0].header['ESO QC ENV VAR'])
res = omp(images[0], env={'CPLRUN_TEST_VAR': 'call'})
record('env=', res.OMP_PRODUCT[0].header['ESO QC ENV VAR'])
record('env= leaves the attribute', dict(omp.env))
attempt('env= a number', lambda: omp(images[0], env={'CPLRUN_TEST_VAR': 1})
        .OMP_PRODUCT[0].header['ESO QC ENV VAR'])

params = cpl.Recipe('rtest_params')
with Captured() as captured:
    res = params(images[0], loglevel=logging.WARN)
record('loglevel=WARN', result(res))
record('loglevel=WARN: logged', captured.summary())
with Captured() as captured:
    res = params(images[0], loglevel=logging.DEBUG)
record('loglevel=DEBUG: levels', sorted({r.levelname for r in res.log}))
with Captured('mylog') as captured:
    res = params(images[0], logname='mylog')
record('logname=', result(res))
record('logname=: logged', captured.summary())

with fits.open(images[2]) as hdus:
    res = copy(hdus)
    record('HDUList raw', result(res))
    with fits.open(calib) as calib_hdus:
        res = copy(images[0], calib={'CALIB': calib_hdus})
        record('HDUList calib', result(res))
record('HDUList: files left', listing('.'))

thread = copy(images[3], threaded=True)
record('threaded=: tags', sorted(thread.tags))
record('threaded=: type', type(thread).__name__)
record('threaded=: products', result(thread))
record('threaded=: contains', 'PRODUCT' in thread)
record('threaded=: len', len(thread))
record('threaded=: item', thread['PRODUCT'][0].header['OBJECT'])
record('threaded=: iter', sorted(tag for tag, _ in thread))
copy.threaded = True
thread = copy(images[1])
record('threaded attribute', thread.PRODUCT[0].header['OBJECT'])
record('threaded=False overrides', type(copy(images[1], threaded=False)
                                        ).__name__)

os.makedirs('work')
copy.threaded = False
copy.temp_dir = 'work'
copy(images[0])
record('temp_dir: files left after a run', listing('work'))
error = cpl.Recipe('rtest_error')
error.tag = 'RAW'
error.temp_dir = 'work'
attempt('temp_dir: failing run', error, images[0])
record('temp_dir: folders left after a failed run',
       sorted(name.split('-')[0] for name in os.listdir('work')))
