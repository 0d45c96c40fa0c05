"""Values of another type than the parameter's: what setting them gives
(the stored value, or the exception), what the recipe then receives
(rtest_params echoes each parameter as a QC keyword), and which cases
warned.  python-cpl converted with the parameter's type (int(True),
str(5), bool(2)), bool words first."""
import warnings

import cpl
from outcome import config, exception, record

cpl.Recipe.path = [config['recipe_dir']]
images = config['images']

CASES = {
    'int_value': [True, False, '8', ' 8 ', 'seven', '8.5', 1e3],
    'enum_int': [True],
    'float_value': [True, False, 'half', '1e3', ' 2.5 ', 2],
    'string_value': [5, 1.5, True, b'sum', [1, 2], ''],
    'bool_value': [2, 1.0, 0.0, -1, 0.5, 'True', 'TRUE', 'yes', 'No', '1',
                   '0', 't', 'f', 'off', '', ' false', 'false ', None],
}
QC_KEY = {'int_value': 'ESO QC INT_VALUE', 'enum_int': 'ESO QC ENUM_INT',
          'float_value': 'ESO QC FLOAT_VALUE',
          'string_value': 'ESO QC STRING_VALUE',
          'bool_value': 'ESO QC BOOL_VALUE'}

warned = []
for name, values in CASES.items():
    for value in values:
        case = '%s = %r' % (name, value)
        recipe = cpl.Recipe('rtest_params')
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            try:
                recipe.param[name] = value
            except Exception as exc:  # noqa: BLE001 -- the class is the outcome
                record(case, {'raised': exception(exc)})
                continue
        if any(issubclass(w.category, UserWarning) for w in caught):
            warned.append(case)
        stored = recipe.param[name].value
        res = recipe(images[0])
        record(case, {'returned': {
            'stored': [stored, type(stored).__name__],
            'received': res.PARAMS[0].header[QC_KEY[name]]}})
record('warned', warned)
