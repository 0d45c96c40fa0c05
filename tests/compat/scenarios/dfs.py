"""cpl.dfs.ProcessingInfo on real products (a test recipe's and a UVES
master bias, the second one of two records), from a path, an HDUList, a
PrimaryHDU or a header; every attribute, list(), create_recipe(),
create_script(), printing; and on a product made from in-memory inputs."""
import io

from astropy.io import fits

import cpl
from outcome import attempt, config, record

images, calib = config['images'], config['calib']


def info(source, recno=-1):
    pi = cpl.dfs.ProcessingInfo(source, recno)
    return {attr: getattr(pi, attr) for attr in (
        'name', 'product', 'orig_filename', 'pipeline', 'version',
        'cpl_version', 'tag', 'raw', 'calib', 'param', 'md5sum', 'md5sums')}


cpl.Recipe.path = [config['recipe_dir']]
copy = cpl.Recipe('rtest_copy')
copy.param.per_frame = True
res = copy(images[:2], calib={'CALIB': calib}, output_dir='copy')
product = res.PRODUCT[0]
record('test recipe', info(product))
with fits.open(product) as hdus:
    record('from an HDUList', info(hdus) == info(product))
    record('from a PrimaryHDU', info(hdus[0]) == info(product))
    record('from a header', info(hdus[0].header) == info(product))
attempt('from a number', cpl.dfs.ProcessingInfo, 3)
record('list', [pi.name for pi in cpl.dfs.ProcessingInfo.list(product)])
pi = cpl.dfs.ProcessingInfo(product)
recipe = pi.create_recipe()
record('create_recipe', [recipe.__name__, dict(iter(recipe.param)), recipe.tag,
                         sorted((c.tag, c.frames) for c in recipe.calib)])
script = io.StringIO()
pi.create_script(script)
record('create_script', script.getvalue())
attempt('create_script to a file name', pi.create_script, 'rerun.py')
attempt('str', str, pi)

step = config['steps']['uves_bias']
cpl.Recipe.path = [config['pipeline_dirs']['uves']]
bias = cpl.Recipe(step['recipe'])
res = bias(step['raw'], tag=step['tag'], output_dir='uves', param=step['params'])
master = res[step['products'][0]]
record('uves master bias', info(master))
dark_step = config['steps']['uves_dark']
dark = cpl.Recipe(dark_step['recipe'])
res = dark(dark_step['raw'], tag=dark_step['tag'], output_dir='uves',
           calib={'MASTER_BIAS_BLUE': master}, param=dark_step['params'])
dark_product = res[dark_step['products'][0]]
pi = attempt('uves master dark', cpl.dfs.ProcessingInfo, dark_product)
record('uves master dark: repeated parameter names',
       pi and {k: v for k, v in pi.param.items() if isinstance(v, list)})
record('uves master dark: calib', pi and pi.calib)
attempt('uves list', lambda: [p.name for p in
                              cpl.dfs.ProcessingInfo.list(dark_product)])

cpl.Recipe.path = [config['recipe_dir']]
with fits.open(images[3]) as raw, fits.open(calib) as calib_hdus:
    res = cpl.Recipe('rtest_copy')(raw, calib={'CALIB': calib_hdus})
record('in-memory inputs', info(res.PRODUCT))
