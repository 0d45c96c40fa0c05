"""cpl.esorex: load_sof (a file name, SOF text, an open file, repeated
tags), load_rc (file name, text, ~/.esorex/esorex.rc), init() with an
esorex.rc (recipe path, msg and log levels, log folder and file), the
msg and log handlers (levels, format switches, what the log file gets
from a run)."""
import logging
import os

import cpl
from outcome import attempt, config, record

images, calib = config['images'], config['calib']

with open('input.sof', 'w') as f:
    f.write('# raw frames\n%s RAW\n%s RAW\n%s CALIB\n' % (
        images[0], images[1], calib))
with open('blank-line.sof', 'w') as f:
    f.write('%s RAW\n\n%s CALIB\n' % (images[0], calib))
attempt('load_sof blank line', cpl.esorex.load_sof, 'blank-line.sof')
record('load_sof file', cpl.esorex.load_sof('input.sof'))
record('load_sof text', cpl.esorex.load_sof(
    '%s RAW\n%s CALIB' % (images[0], calib)))
with open('input.sof') as f:
    record('load_sof open file', cpl.esorex.load_sof(f))

rc_text = ('# comment\ncplrun.rtest_params.int_value=6\n'
           'cplrun.rtest_params.string_value = with spaces \n\n'
           'esorex.caller.recipe-dir=%s\n' % config['recipe_dir'])
with open('params.rc', 'w') as f:
    f.write(rc_text)
record('load_rc file', cpl.esorex.load_rc('params.rc'))
record('load_rc text', cpl.esorex.load_rc(rc_text))
attempt('load_rc default, missing', cpl.esorex.load_rc)

os.makedirs(os.path.expanduser('~/.esorex'))
os.makedirs('logs')
with open(os.path.expanduser('~/.esorex/esorex.rc'), 'w') as f:
    f.write('esorex.caller.recipe-dir=%s\n'
            'esorex.caller.msg-level=warning\n'
            'esorex.caller.log-level=debug\n'
            'esorex.caller.log-dir=%s\n'
            'esorex.caller.log-file=run.log\n'
            % (config['recipe_dir'], os.path.abspath('logs')))
record('load_rc default', cpl.esorex.load_rc())

record('msg defaults', [cpl.esorex.msg.level, cpl.esorex.msg.format,
                        cpl.esorex.msg.component, cpl.esorex.msg.time,
                        cpl.esorex.msg.threadid])
record('log defaults', [cpl.esorex.log.level, cpl.esorex.log.format,
                        cpl.esorex.log.filename, cpl.esorex.log.dir])
record('levels', [cpl.esorex.msg.DEBUG, cpl.esorex.msg.INFO,
                  cpl.esorex.msg.WARN, cpl.esorex.msg.ERROR,
                  cpl.esorex.msg.OFF])

cpl.esorex.init()
record('init: path', cpl.Recipe.path)
record('init: levels', [cpl.esorex.msg.level, cpl.esorex.log.level])
record('init: log file', [cpl.esorex.log.dir, cpl.esorex.log.filename])

cpl.esorex.msg.component = True
cpl.esorex.msg.time = True
cpl.esorex.msg.threadid = True
record('msg format switched', cpl.esorex.msg.format)
cpl.esorex.msg.format = '%(levelname)s %(message)s'
record('msg format set', cpl.esorex.msg.format)
cpl.esorex.msg.level = 'info'
record('msg level from text', cpl.esorex.msg.level)
cpl.esorex.msg.level = cpl.esorex.msg.OFF

recipe = cpl.Recipe('rtest_params')
attempt('param from an rc file with esorex settings', setattr, recipe,
        'param', 'params.rc')
with open('params-only.rc', 'w') as f:
    f.write(rc_text.rsplit('esorex', 1)[0])
recipe.param = 'params-only.rc'
record('param from an rc file', dict(iter(recipe.param)))
recipe(images[0])
logging.shutdown()
with open(os.path.join('logs', 'run.log')) as f:
    lines = f.read().splitlines()
record('log file: lines of the run',
       sorted({line.split(']', 2)[2].split(':')[0].strip()
               for line in lines if 'cpl.rtest_params' in line}))
record('log file: has the int_value line',
       any('cplrun.rtest_params.int_value = 6' in line for line in lines))
cpl.esorex.log.filename = None
record('log filename reset', cpl.esorex.log.filename)

cpl.esorex.init('esorex.caller.recipe-dir=/nowhere:/elsewhere\n')
record('init from text: path', cpl.Recipe.path)
