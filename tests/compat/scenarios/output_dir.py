"""Files as a script sees them: a gzipped input (.fits.gz); two calls one
after the other into one output_dir (the second replaces the first's
product, as esorex does), and the products' PIPEFILE; what is left in
output_dir."""
import gzip
import shutil

from astropy.io import fits

import cpl
from outcome import config, listing, product, record, result

cpl.Recipe.path = [config['recipe_dir']]
images = config['images']
copy = cpl.Recipe('rtest_copy')

with open(images[1], 'rb') as raw, gzip.open('img1.fits.gz', 'wb') as packed:
    shutil.copyfileobj(raw, packed)
try:
    record('gzipped input', result(copy('img1.fits.gz')))
except Exception as exc:  # noqa: BLE001 -- the class is the outcome
    record('gzipped input', exc)

first = copy(images[0], output_dir='out')
record('first call', product(first.PRODUCT))
second = copy(images[1], output_dir='out')
record('second call', product(second.PRODUCT))
record('files after two calls', listing('out'))
record('first call\'s path now holds', fits.getheader(first.PRODUCT)['OBJECT'])
copy.param.per_frame = True
third = copy(images[2:4], output_dir='out')
record('third call, per frame', product(third.PRODUCT))
record('files after three calls', listing('out'))
