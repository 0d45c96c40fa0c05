"""Real pipelines on tiny synthetic frames: UVES bias then dark, NACO
dark, NACO jitter (whose string parameters off and objs have no default),
and the MUSE calls scripts make: an unknown tag, calib=load_sof(sof) with
the raw frames in the SOF, an int parameter set from a float."""
import os

import numpy as np
from astropy.io import fits

import cpl
from outcome import attempt, config, exception, listing, record, result

steps, dirs = config['steps'], config['pipeline_dirs']


def run(step, output_dir, **kwargs):
    recipe = cpl.Recipe(step['recipe'])
    return recipe(step['raw'], tag=step['tag'], param=step['params'],
                  output_dir=output_dir, **kwargs)


cpl.Recipe.path = [dirs['uves']]
bias = run(steps['uves_bias'], 'uves')
record('uves bias', result(bias))
dark = run(steps['uves_dark'], 'uves',
           calib={'MASTER_BIAS_BLUE': bias.MASTER_BIAS_BLUE})
record('uves dark', result(dark))
record('uves output_dir', listing('uves'))
frames = cpl.esorex.load_sof(steps['uves_dark']['sof'])
frames['MASTER_BIAS_BLUE'] = bias.MASTER_BIAS_BLUE
dark = cpl.Recipe('uves_cal_mdark')(frames['DARK_BLUE'], tag='DARK_BLUE',
                                    calib=frames)
record('uves calib=load_sof with the raw tag: frames combined',
       dark.MASTER_DARK_BLUE[0].header['ESO PRO DATANCOM'])

cpl.Recipe.path = [dirs['naco']]
record('naco dark', result(run(steps['naco_dark'], 'naco')))


def jitter_frames():
    """The NACO darks with three stars each, offset as the headers say."""
    os.makedirs('jitter')
    names = []
    for i, name in enumerate(steps['naco_dark']['raw']):
        with fits.open(name) as hdus:
            data = hdus[0].data.astype(np.float32)
            dx, dy = 5.0 * i, 3.0 * i
            y, x = np.mgrid[0:data.shape[-2], 0:data.shape[-1]]
            for cx, cy in ((0.5, 0.5), (0.25, 0.33), (0.75, 0.67)):
                cx, cy = cx * data.shape[-1] + dx, cy * data.shape[-2] + dy
                data += 20000 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 8)
            hdus[0].data = data
            hdus[0].header['HIERARCH ESO SEQ CUMOFFSETX'] = dx
            hdus[0].header['HIERARCH ESO SEQ CUMOFFSETY'] = dy
            names.append(os.path.join('jitter', 'jitter%d.fits' % i))
            hdus.writeto(names[-1])
    return names


jitter = cpl.Recipe('naco_img_jitter')
record('jitter string parameters without default',
       {p.name: [p.value, p.default] for p in jitter.param
        if p.name in ('off', 'objs')})
try:
    record('naco jitter', result(jitter(jitter_frames(), tag='IM_JITTER_OBJ',
                                        output_dir='naco')))
except Exception as exc:  # noqa: BLE001 -- the class is the outcome
    record('naco jitter', exception(exc))

cpl.Recipe.path = [dirs['muse']]
muse_bias = cpl.Recipe('muse_bias')
muse_bias.param.nifu = 1
step = steps['muse_bias']
try:
    muse_bias(step['raw'], tag='NOPE')
    record('muse unknown tag', 'no exception')
except cpl.CplError as exc:
    record('muse unknown tag', exception(exc))
except Exception as exc:  # noqa: BLE001 -- escaping CplError is the finding
    record('muse unknown tag', {'escaped except cpl.CplError': exception(exc)})

frames = cpl.esorex.load_sof(step['sof'])
record('muse sof tags', sorted(frames))
attempt('muse calib=load_sof', setattr, muse_bias, 'calib', frames)
try:
    res = muse_bias(frames[step['tag']], calib=frames, output_dir='muse-call')
    record('muse call calib=load_sof', sorted(res.tags))
except Exception as exc:  # noqa: BLE001 -- the class is the outcome
    record('muse call calib=load_sof', exception(exc))
record('muse calib after', sorted((c.tag, c.frames) for c in muse_bias.calib))
attempt('muse nifu = 3.7', setattr, muse_bias.param, 'nifu', 3.7)
record('muse nifu after', muse_bias.param.nifu.value)
muse_bias.param.nifu = 1
record('muse bias with calib from the SOF',
       result(muse_bias(frames[step['tag']], output_dir='muse')))
