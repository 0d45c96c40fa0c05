"""threaded=True in loops: with set_maxthreads(1), calls started one
after the other on one HDUList changed after each call (each call must
see the frame as it was when called), and on files, collected at the
end; results in the order of the calls."""
import numpy as np
from astropy.io import fits

import cpl
from outcome import config, record

cpl.Recipe.path = [config['recipe_dir']]
images = config['images']
copy = cpl.Recipe('rtest_copy')

cpl.Recipe.set_maxthreads(1)
hdus = fits.HDUList([fits.PrimaryHDU(np.zeros((3, 3), np.float32))])
threads = []
for i in range(6):
    hdus[0].data[:] = i
    threads.append(copy(hdus, threaded=True))
hdus[0].data[:] = 99
record('one HDUList changed between calls',
       [float(t.PRODUCT[0].data[0, 0]) for t in threads])

threads = [copy(image, threaded=True) for image in images]
record('files', [t.PRODUCT[0].header['OBJECT'] for t in threads])
cpl.Recipe.set_maxthreads(2)
threads = [copy(image, threaded=True, output_dir='out%d' % i)
           for i, image in enumerate(images)]
record('files into output_dir', [t.PRODUCT for t in threads])
