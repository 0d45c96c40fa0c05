"""FrameList and FrameConfig: the calibration frames of a recipe with a
frame configuration (rtest_copy, muse_bias) and without (rtest_omp):
listing, attribute and item access, assignment of a file, a list, a
dict, a SOF's text or file, deletion, FrameConfig's attributes, and what
the recipe receives."""
import cpl
from outcome import attempt, config, record

cpl.Recipe.path = [config['recipe_dir']]
images, calib = config['images'], config['calib']


def listed(frames):
    return sorted([f.tag, f.min, f.max, f.frames, str(f), repr(f), f[0], f[1],
                   type(f).__name__] for f in frames)


copy = cpl.Recipe('rtest_copy')
record('configured: listing', listed(copy.calib))
record('configured: len', len(copy.calib))
record('configured: contains', ['CALIB' in copy.calib, 'RAW' in copy.calib,
                                'NOPE' in copy.calib])
record('configured: dir', sorted(dir(copy.calib)))
record('configured: repr', repr(copy.calib))
record('configured: str', str(copy.calib))
copy.calib.CALIB = calib
record('set by attribute', [copy.calib.CALIB.frames, copy.calib['CALIB'].frames])
record('eq', copy.calib == dict(iter(copy.calib)))
attempt('set an unknown tag', setattr, copy.calib, 'NOPE', calib)
attempt('get an unknown tag', getattr, copy.calib, 'NOPE')
res = copy(images[0])
record('received', res.PRODUCT[0].header['ESO PRO REC1 CAL1 NAME'])
del copy.calib.CALIB
record('deleted', copy.calib.CALIB.frames)
copy.calib['CALIB'] = [calib]
record('set a list by item', copy.calib.CALIB.frames)
copy.calib = {'CALIB': calib}
record('set a dict', listed(copy.calib))
del copy.calib
record('deleted all', listed(copy.calib))
with open('calib.sof', 'w') as f:
    f.write('%s CALIB\n' % calib)
copy.calib = 'calib.sof'
record('set a SOF file', listed(copy.calib))
copy.calib = '%s CALIB\n' % calib
record('set SOF text', listed(copy.calib))
copy.calib = open('calib.sof')
record('set an open SOF', listed(copy.calib))

omp = cpl.Recipe('rtest_omp')
record('unconfigured: listing', listed(omp.calib))
omp.calib.SOMETHING = calib
omp.calib['OTHER'] = [calib, calib]
record('unconfigured: set', listed(omp.calib))
record('unconfigured: len', len(omp.calib))
del omp.calib.SOMETHING
record('unconfigured: deleted', listed(omp.calib))
omp.calib = {'A': calib}
record('unconfigured: set a dict', listed(omp.calib))

cpl.Recipe.path = [config['pipeline_dirs']['muse']]
# the counts of every MUSE recipe (merged over its raw tags)
record('muse: counts of every recipe', {
    name: sorted([c.tag, c.min, c.max] for c in cpl.Recipe(name).calib)
    for name in sorted({name for name, _ in cpl.Recipe.list()})})
dark = cpl.Recipe('muse_dark')
record('muse_dark: listing', listed(dark.calib))
record('muse_dark: output', dark.output)
record('FrameConfig docs', [f.__doc__ for f in
                            sorted(dark.calib, key=lambda f: f.tag)][:2])
config_class = cpl.FrameConfig('TAG', 1, 3)
record('FrameConfig made', [config_class.tag, config_class.min,
                            config_class.max, config_class.frames])
record('FrameConfig made: doc', config_class.__doc__)
