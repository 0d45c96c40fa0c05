"""A Recipe's attributes: name, file, version, author, email, copyright,
description, cpl_version, __doc__, tag and tags (and setting them),
output, calib and param listings, env, output_dir, temp_dir, threaded,
on test recipes and real ones (MUSE has a frame configuration, UVES
none)."""
import cpl
from outcome import attempt, config, record

cpl.Recipe.path = [config['recipe_dir']]


def describe(recipe):
    found = {}
    for attr in ('__name__', '__file__', 'version', '__version__',
                 '__author__', '__email__', '__copyright__', 'description',
                 'cpl_version', 'cpl_description', 'tag', 'tags', 'env',
                 'output_dir', 'threaded', 'memory_dump',
                 'mtrace', '__doc__'):
        try:
            found[attr] = getattr(recipe, attr)
        except Exception as exc:  # noqa: BLE001
            found[attr] = exc
    if recipe.calib:                       # a recipe with a configuration
        found['output'] = recipe.output
    found['calib'] = sorted([c.tag, c.min, c.max, c.frames]
                            for c in recipe.calib)
    found['param'] = [[p.name, p.default] for p in recipe.param]
    return found


for name in ('rtest_copy', 'rtest_params', 'rtest_omp', 'rtest_crash'):
    record(name, describe(cpl.Recipe(name)))

# muse_scibasic: calibration and product lists long enough to wrap
for name, instrument in (('muse_bias', 'muse'), ('muse_scibasic', 'muse'),
                         ('uves_cal_mbias', 'uves'),
                         ('naco_img_jitter', 'naco')):
    cpl.Recipe.path = [config['pipeline_dirs'][instrument]]
    record(name, describe(cpl.Recipe(name)))
cpl.Recipe.path = [config['recipe_dir']]

copy = cpl.Recipe('rtest_copy')
record('temp_dir default', copy.temp_dir)
attempt('set a tag of tags', setattr, copy, 'tag', 'CALIB')
attempt('set an unknown tag', setattr, copy, 'tag', 'NOPE')
record('tag after', copy.tag)
attempt('set tags of a configured recipe', setattr, copy, 'tags', ['X'])

omp = cpl.Recipe('rtest_omp')
attempt('set tags', setattr, omp, 'tags', ['RAW', 'OTHER'])
record('tags after', omp.tags)
attempt('set a tag of the new tags', setattr, omp, 'tag', 'OTHER')
attempt('set an unknown tag of tags', setattr, omp, 'tag', 'NOPE')
record('omp tag', omp.tag)
attempt('output of an unconfigured recipe', getattr, omp, 'output')

omp.env['OMP_NUM_THREADS'] = '1'
record('env', dict(omp.env))
omp.output_dir = 'out'
omp.temp_dir = None
omp.threaded = True
record('set', [omp.output_dir, omp.temp_dir, omp.threaded])
