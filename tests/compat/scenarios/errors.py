"""CplError and RecipeCrash: a recipe that fails with a chained CPL error
(every attribute, the chain by next_error and by iteration, the log), a
threaded call that fails, crashes by signal, and the errors a script
catches with ``except cpl.CplError``: a missing input file, an int
parameter above 32 bits."""
import cpl
from outcome import attempt, config, exception, log, record

cpl.Recipe.path = [config['recipe_dir']]
images = config['images']

error = cpl.Recipe('rtest_error')
error.tag = 'RAW'


def cpl_error(exc):
    return {'class': exception(exc), 'retval': exc.retval, 'code': exc.code,
            'msg': exc.msg, 'file': exc.file,
            'line': type(exc.line).__name__, 'function': exc.function,
            'next_error': exc.next_error is not None, 'log': log(exc.log),
            'chain': [(e.code, e.msg, e.function) for e in exc],
            'by next_error': exc.next_error.msg if exc.next_error else None,
            'is an Exception': isinstance(exc, Exception)}


try:
    error(images[0])
    record('error', 'no exception')
except cpl.CplError as exc:
    record('error', cpl_error(exc))
    record('error: str first line', str(exc).splitlines()[0])

thread = error(images[0], threaded=True)
try:
    thread.tags
    record('threaded error', 'no exception')
except cpl.CplError as exc:
    record('threaded error', cpl_error(exc))
record('no error: error attribute',
       error(images[0], param={'fail': False}).error)

crash = cpl.Recipe('rtest_crash')
crash.tag = 'RAW'
for mode in ('segv', 'abort'):
    try:
        crash(images[0], param={'mode': mode})
        record('crash ' + mode, 'no exception')
    except cpl.RecipeCrash as exc:
        record('crash ' + mode, {
            'class': exception(exc), 'signal': exc.signal,
            'elements': type(exc.elements).__name__,
            'element fields': sorted({f for e in exc.elements
                                      for f in e._fields}),
            'has the crashing function': any(
                e.func == 'rtest_crash' for e in exc.elements),
            'str mentions the signal': exc.signal is not None and
            ('SIGSEGV' in str(exc) or 'SIGSEV' in str(exc)
             or 'SIGABRT' in str(exc))})
        record('crash %s: str last line, repr' % mode, [
            str(exc).splitlines()[-1].split(';')[0], repr(exc)[:13]])
attempt('crash by exit()', lambda: sorted(crash(
    images[0], param={'mode': 'exit', 'exit_code': 0}).tags))

try:
    cpl.Recipe('rtest_copy')('no-such-file.fits')
    record('missing file', 'no exception')
except cpl.CplError as exc:
    record('missing file', exception(exc))
except Exception as exc:  # noqa: BLE001 -- escaping CplError is the finding
    record('missing file', {'escaped except cpl.CplError': exception(exc)})

params = cpl.Recipe('rtest_params')
try:
    params.param.int_value = 2 ** 33 + 1
    refused = None
except Exception as exc:  # noqa: BLE001 -- the class is the outcome
    refused = exception(exc)
res = params(images[0])
record('int above 32 bits', {'refused': refused, 'received':
                             res.PARAMS[0].header['ESO QC INT_VALUE']})
