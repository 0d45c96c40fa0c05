"""Parameter and ParameterList: iteration, dict(iter(param)), attribute
and item access by name, full name and alias, groups (dotted names),
setting, deleting and resetting, checks of type, range and choices, every
attribute of a Parameter, str/repr/__doc__, assignment of a whole dict
or .rc text, and what the recipe receives."""
import cpl
from outcome import attempt, config, record

cpl.Recipe.path = [config['recipe_dir']]
images = config['images']
recipe = cpl.Recipe('rtest_params')
param = recipe.param

record('len', len(param))
record('iter names', [p.name for p in param])
record('dict(iter)', dict(iter(param)))
record('str', str(param))
record('repr', repr(param))
record('eq', param == dict(iter(param)))
record('dir', sorted(dir(param)))
record('__doc__', param.__doc__)
for p in param:
    record('attributes of ' + p.name, {
        'type': p.type, 'default': p.default, 'value': p.value,
        'range': p.range, 'sequence': p.sequence, 'context': p.context,
        'fullname': p.fullname, 'name': p.name, '__doc__': p.__doc__,
        'str': str(p), 'repr': repr(p), 'item0': p[0], 'item1': p[1],
        'class': type(p).__name__, 'enabled': getattr(p, 'enabled', 'none')})

record('contains', ['int_value' in param, 'cplrun.rtest_params.int_value'
                    in param, 'stack' in param, 'nope' in param])
record('full name item', param['cplrun.rtest_params.int_value'].name)
record('group', [type(param.stack).__name__, len(param.stack),
                 [p.name for p in param.stack], repr(param.stack)])
record('group item', param['stack.method'].default)
attempt('nested attribute', lambda: param.stack.sigma.low.default)
attempt('unknown attribute', getattr, param, 'nope')
attempt('unknown item', param.__getitem__, 'nope')
attempt('set unknown', setattr, param, 'nope', 1)

param.int_value = 7
param['float_range'] = 2.5
param.enum_string = 'sigclip'
param.bool_value = 'yes'
param.stack.method = 'sum'
record('after setting', dict(iter(param)))
attempt('int from a numeric string', setattr, param, 'int_value', '8')
record('int_value now', param.int_value.value)
attempt('float from an int', setattr, param, 'float_value', 2)
record('float_value now', [param.float_value.value,
                           type(param.float_value.value).__name__])
attempt('bool from "false"', setattr, param, 'bool_value', 'false')
record('bool_value now', param.bool_value.value)
attempt('int out of range', setattr, param, 'int_range', 11)
attempt('float out of range', setattr, param, 'float_range', -1.0)
attempt('not a choice', setattr, param, 'enum_string', 'mode')
attempt('int not a choice', setattr, param, 'enum_int', 3)
attempt('int from a word', setattr, param, 'int_value', 'seven')
attempt('float from a word', setattr, param, 'float_value', 'half')
record('after the refused values', dict(iter(param)))

res = recipe(images[0])
header = res.PARAMS[0].header
record('received', {k[7:]: header[k] for k in header if k.startswith('ESO QC')})

del param.int_value
param.float_range = None
del param['enum_string']
param.stack = None
record('after resetting', dict(iter(param)))
param.int_value.value = 4
record('value set on the parameter', param.int_value.value)
del param.int_value.value
record('value deleted on the parameter', param.int_value.value)

attempt('whole dict with an unknown name', setattr, recipe, 'param',
        {'int_value': 9, 'unknown': 3})
recipe.param = {'int_value': 9, 'cplrun.rtest_params.float_value': 1.25}
record('whole dict', dict(iter(recipe.param)))
recipe.param = 'int_range=2\nstring_value = from rc\n'
record('whole rc text', dict(iter(recipe.param)))
del recipe.param
record('deleted', dict(iter(recipe.param)))
res = recipe(images[0], param={'int_value': 5, 'stack.sigma.low': 1.5})
record('call param=', {k[7:]: res.PARAMS[0].header[k] for k in
                       ('ESO QC INT_VALUE', 'ESO QC STACK SIGMA LOW')})
