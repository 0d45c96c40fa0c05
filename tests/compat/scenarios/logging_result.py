"""Logging and Result: records under cpl.<recipe>.<function> with their
levels and attributes, loglevel= and logname=, the LogList views
(error, warning, info, debug); a Result's attributes, indexing,
iteration, tags, stat, dir and log; products per input frame."""
import logging

import cpl
from outcome import Captured, attempt, config, log, product, record

cpl.Recipe.path = [config['recipe_dir']]
images = config['images']

biglog = cpl.Recipe('rtest_biglog')
biglog.tag = 'RAW'
with Captured() as captured:
    res = biglog(images[0], param={'lines': 3})
record('logged', captured.summary())
record('log', log(res.log))
first = [r for r in res.log if r.levelno == logging.INFO][0]
record('record attributes', {
    'name': first.name, 'levelname': first.levelname, 'funcName':
    first.funcName, 'msg': first.msg, 'getMessage': first.getMessage(),
    'threadName': first.threadName, 'args': first.args,
    'threadid': getattr(first, 'threadid', 'none'),
    'created is a float': isinstance(first.created, float)})
record('filter', res.log.filter(logging.WARN))
record('warning line', res.log.warning)

with Captured() as captured:
    res = biglog(images[0], param={'lines': 3}, loglevel=logging.ERROR)
record('loglevel=ERROR: log', log(res.log))
record('loglevel=ERROR: logged', captured.summary())
logging.getLogger('cpl.rtest_biglog').setLevel(logging.WARN)
with Captured('cpl.rtest_biglog') as captured:
    captured.logger.setLevel(logging.WARN)
    res = biglog(images[0], param={'lines': 3})
    record('logger level WARN: logged', captured.summary())
record('logger level WARN: log', log(res.log))
logging.getLogger('cpl.rtest_biglog').setLevel(logging.NOTSET)

copy = cpl.Recipe('rtest_copy')
res = copy(images[:2], param={'per_frame': True})
record('per frame in memory', product(res.PRODUCT))
record('item', product(res['PRODUCT']))
attempt('unknown item', res.__getitem__, 'NOPE')
attempt('unknown attribute', getattr, res, 'NOPE')
record('contains', ['PRODUCT' in res, 'NOPE' in res])
record('iter', [(tag, type(value).__name__) for tag, value in res])
record('dir', res.dir and res.dir.rsplit('/', 1)[-1][:11])
record('stat', [res.stat.return_code, type(res.stat.user_time).__name__,
                type(res.stat.sys_time).__name__, res.stat.memory_is_empty])
cpl.Recipe.memory_mode = 1
res = copy(images[0], output_dir='checked')
record('memory_mode 1: memory_is_empty', res.stat.memory_is_empty)
cpl.Recipe.memory_mode = 0
record('dir with output_dir', res.dir)
