"""Recipe parameters (cpl.param): description, access, checks, and that
the values reach the recipe (rtest_params echoes them as ESO QC keys)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import cpl
from cpl.param import Parameter, ParameterList

#: name -> (type, default, range, choices) as rtest_params declares them
DECLARED = {
    'bool_value': (bool, False, None, None),
    'int_value': (int, 3, None, None),
    'int_range': (int, 5, (0, 10), None),
    'float_value': (float, 0.5, None, None),
    'float_range': (float, 1.5, (0.0, 10.0), None),
    'string_value': (str, 'hello', None, None),
    'string_null': (str, None, None, None),
    'enum_string': (str, 'median', None, ['mean', 'median', 'sigclip']),
    'enum_int': (int, 2, None, [1, 2, 4]),
    'stack.method': (str, 'average', None, ['sum', 'average']),
    'stack.sigma.low': (float, 3.0, None, None),
    'stack.sigma.high': (float, 3.0, None, None),
}

#: non-default values of every parameter
VALUES = {
    'bool_value': True, 'int_value': -7, 'int_range': 10,
    'float_value': 0.1, 'float_range': 9.75,
    'string_value': 'with space = and, comma', 'string_null': 'set',
    'enum_string': 'sigclip', 'enum_int': 4, 'stack.method': 'sum',
    'stack.sigma.low': 1.25, 'stack.sigma.high': 4.5,
}


def qc_key(name):
    return 'ESO QC ' + name.replace('.', ' ').upper()


def qc(res):
    header = res.PARAMS[0].header
    return {name: header[qc_key(name)] for name in DECLARED}


@pytest.fixture
def r():
    return cpl.Recipe('rtest_params')


def test_every_parameter_is_described(r):
    assert [p.name for p in r.param] == list(DECLARED)
    assert len(r.param) == len(DECLARED)
    for p in r.param:
        ptype, default, prange, choices = DECLARED[p.name]
        assert isinstance(p, Parameter)
        assert p.fullname == 'cplrun.rtest_params.' + p.name
        assert p.context == 'cplrun.rtest_params'
        assert p.type is ptype, p.name
        assert p.default == default, p.name
        assert type(p.default) is (ptype if default is not None
                                   else type(None)), p.name
        assert p.range == prange, p.name
        if prange is not None:
            assert all(type(v) is ptype for v in p.range), p.name
        assert p.sequence == choices, p.name
        if choices is not None:
            assert all(type(v) is ptype for v in p.sequence), p.name
        assert p.value is None
        assert p.__doc__ and ptype.__name__ in p.__doc__
        assert p.recipe == 'rtest_params'
    assert 'range 0..10' in r.param.int_range.__doc__


def test_attribute_and_item_access(r):
    p = r.param.int_value
    assert r.param['int_value'] is p
    assert r.param['cplrun.rtest_params.int_value'] is p
    assert 'int_value' in r.param
    assert 'cplrun.rtest_params.enum_int' in r.param
    assert 'no_such' not in r.param
    r.param.int_value = 7
    assert p.value == 7
    r.param['int_value'] = 8
    assert p.value == 8
    r.param['cplrun.rtest_params.int_value'] = 9
    assert r.param.int_value.value == 9
    assert str(p) == '9'
    assert repr(p) == "Parameter('int_value', value=9)"
    assert p[0] == 'int_value' and p[1] == 9


def test_dotted_names(r):
    method = r.param['stack.method']
    assert r.param.stack.method is method
    assert r.param.stack['method'] is method
    low = r.param['stack.sigma.low']
    assert r.param.stack.sigma.low is low
    assert r.param.stack['sigma.low'] is low
    assert r.param.stack.sigma['low'] is low
    assert r.param['cplrun.rtest_params.stack.sigma.low'] is low
    assert isinstance(r.param.stack, ParameterList)
    assert len(r.param.stack) == 3 and len(r.param.stack.sigma) == 2
    r.param.stack.sigma.low = 1.5
    assert low.value == 1.5
    r.param['stack.sigma.high'] = 2
    assert r.param.stack.sigma.high.value == 2.0
    assert type(r.param.stack.sigma.high.value) is float
    r.param.stack.method = 'sum'
    assert method.value == 'sum'
    # Other parameters are untouched by dotted assignments.
    assert [p.name for p in r.param if p.value is not None] == [
        'stack.method', 'stack.sigma.low', 'stack.sigma.high']


def test_group_assignment_and_reset(r):
    r.param.stack = {'method': 'sum', 'sigma.low': 0.5}
    assert r.param['stack.method'].value == 'sum'
    assert r.param['stack.sigma.low'].value == 0.5
    r.param.stack.sigma = None
    assert r.param['stack.sigma.low'].value is None
    assert r.param['stack.method'].value == 'sum'
    del r.param.stack
    assert r.param['stack.method'].value is None


def test_dir_and_iteration(r):
    names = dir(r.param)
    for name in ('bool_value', 'int_value', 'enum_string', 'stack'):
        assert name in names
    assert all(n.isidentifier() for n in names)
    assert 'stack.method' not in names
    assert dir(r.param.stack) == ['method', 'sigma']
    assert dir(r.param.stack.sigma) == ['high', 'low']
    assert [p.name for p in r.param.stack] == [
        'stack.method', 'stack.sigma.low', 'stack.sigma.high']
    as_dict = dict(iter(r.param))
    assert as_dict['int_value'] == 3 and as_dict['stack.sigma.low'] == 3.0
    assert r.param == {name: d[1] for name, d in DECLARED.items()}


def test_reset_by_none_and_del(r):
    r.param.int_value = 7
    r.param.int_value = None
    assert r.param.int_value.value is None
    r.param.float_value = 2.0
    del r.param.float_value
    assert r.param.float_value.value is None
    r.param['enum_int'] = 4
    del r.param['enum_int']
    assert r.param.enum_int.value is None
    r.param.string_value = 'x'
    r.param.string_value.value = None
    assert r.param.string_value.value is None
    r.param.bool_value = True
    del r.param
    assert all(p.value is None for p in r.param)


def test_replace_all_values(r):
    r.param.int_value = 7
    r.param = {'enum_int': 1, 'cplrun.rtest_params.stack.method': 'sum',
               'other_recipe.x': 3, 'esorex.caller.log-level': 'info'}
    values = {p.name: p.value for p in r.param if p.value is not None}
    assert values == {'enum_int': 1, 'stack.method': 'sum'}


@pytest.mark.parametrize('name, value', [
    ('bool_value', 'maybe'), ('bool_value', [True]), ('bool_value', '  '),
    ('int_value', 'seven'), ('int_value', '8.5'),
    ('int_value', [1]), ('float_value', 'abc'),
    ('float_value', None.__class__), ('string_value', [1, 2]),
    ('string_value', b'bytes'), ('enum_int', '4x')])
def test_wrong_type_is_type_error_and_value_error(r, name, value):
    # python-cpl's int('seven') raised ValueError (scripts catch it);
    # cplrun raised TypeError first: the class is both.
    with pytest.raises(cpl.param.ParameterTypeError) as info:
        r.param[name] = value
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, ValueError)
    assert name in str(info.value) and 'rtest_params' in str(info.value)
    assert repr(value) in str(info.value)
    assert r.param[name].value is None


@pytest.mark.parametrize('name, value', [
    ('int_range', 11), ('int_range', -1), ('float_range', 10.5),
    ('float_range', -0.1), ('enum_string', 'mode'), ('enum_int', 3),
    ('stack.method', 'median'), ('enum_string', 1), ('enum_int', False)])
@pytest.mark.filterwarnings('ignore:.*was passed as:cpl.CplWarning')
def test_out_of_range_or_not_in_enum_is_value_error(r, name, value):
    with pytest.raises(ValueError) as info:
        r.param[name] = value
    assert not isinstance(info.value, TypeError)
    assert name in str(info.value)
    assert r.param[name].value is None


def test_accepted_conversions(r):
    for name, value, expected in (
            ('bool_value', 'true', True), ('bool_value', 'FALSE', False),
            ('bool_value', 1, True), ('int_value', '12', 12),
            ('int_value', 4.0, 4), ('float_value', 2, 2.0),
            ('float_value', '1e-3', 0.001), ('enum_int', '4', 4),
            ('int_range', 0, 0), ('float_range', 10, 10.0)):
        r.param[name] = value
        assert r.param[name].value == expected
        assert type(r.param[name].value) is type(expected), (name, value)


def test_unknown_name_is_key_error_and_attribute_error(r):
    with pytest.raises(KeyError) as info:
        r.param['int_valeu']
    text = str(info.value)
    assert "rtest_params" in text and 'int_valeu' in text
    assert "'int_value'" in text        # the close match
    with pytest.raises(AttributeError) as info:
        r.param.no_such_thing
    assert 'rtest_params' in str(info.value)
    assert not hasattr(r.param, 'no_such_thing')
    assert not hasattr(r.param.stack, 'no_such_thing')
    assert not hasattr(r.param.stack.sigma, 'medium')
    assert getattr(r.param, 'no_such_thing', 'fallback') == 'fallback'
    with pytest.raises(KeyError):
        r.param['stack.sigma.medium']
    with pytest.raises(AttributeError):
        r.param.no_such_thing = 3
    with pytest.raises(KeyError):
        del r.param['no_such_thing']
    # Nothing was set by the failed attempts.
    assert all(p.value is None for p in r.param)


def test_recipe_without_parameters():
    r = cpl.Recipe('rtest_omp')
    assert len(r.param) == 0 and list(r.param) == []
    with pytest.raises(KeyError) as info:
        r.param['x']
    assert 'rtest_omp' in str(info.value)


def test_defaults_reach_the_recipe(r, raw):
    # A string without default reaches the recipe as "" (as with esorex
    # and python-cpl), not as NULL, on which CPL's product header code
    # crashed (strlen in cpl_dfs_setup_product_header).
    assert qc(r(raw)) == {name: '' if d[1] is None else d[1]
                          for name, d in DECLARED.items()}
    assert r.param.string_null.value is None
    assert r.param.string_null.default is None


def test_values_set_on_the_recipe_reach_it(r, raw):
    for name, value in VALUES.items():
        r.param[name] = value
    assert qc(r(raw)) == VALUES
    info = cpl.dfs.ProcessingInfo(r(raw).PARAMS)
    assert info.param['int_value'] == -7
    assert info.param['stack.sigma.low'] == 1.25
    assert info.param['bool_value'] is True


def test_values_given_to_the_call_reach_it(r, raw):
    assert qc(r(raw, param=VALUES)) == VALUES
    # ... for that call only
    assert all(p.value is None for p in r.param)
    assert qc(r(raw))['int_value'] == 3


def test_call_param_forms(r, raw):
    r.param.int_value = 7
    got = qc(r(raw, param={'stack': {'method': 'sum', 'sigma.low': 0.25},
                           'cplrun.rtest_params.enum_int': 1,
                           'int_value': None}))
    assert got['stack.method'] == 'sum' and got['stack.sigma.low'] == 0.25
    assert got['enum_int'] == 1
    assert got['int_value'] == 3        # None: the default for this call
    assert r.param.int_value.value == 7


def test_call_param_is_checked_before_running(r, raw, work_tmp):
    from conftest import run_dirs
    before = run_dirs(work_tmp)
    with pytest.raises(KeyError) as info:
        r(raw, param={'int_valu': 1})
    assert 'rtest_params' in str(info.value)
    with pytest.raises(TypeError):
        r(raw, param={'int_value': 'x'})
    with pytest.raises(ValueError):
        r(raw, param={'enum_int': 3})
    assert run_dirs(work_tmp) == before


def test_float_values_keep_their_precision(r, raw):
    # The recipe logs doubles with %.17g (FITS headers round them).
    value = 0.1 + 0.2
    res = r(raw, param={'float_value': value, 'stack.sigma.low': 1e-300})
    logged = {m.split(' = ')[0]: m.split(' = ')[1] for m in res.log.info
              if m.startswith('rtest_params: cplrun.')}
    assert float(logged['rtest_params: cplrun.rtest_params.float_value']) \
        == value
    assert float(logged['rtest_params: cplrun.rtest_params.stack.sigma.low']) \
        == 1e-300


def test_parameters_are_logged_by_the_recipe(r, raw):
    res = r(raw, param={'int_value': 42})
    assert 'rtest_params: cplrun.rtest_params.int_value = 42' in res.log.info


def test_parameter_list_pickles(r):
    r.param.int_value = 5
    copy = pickle.loads(pickle.dumps(r))
    assert copy.param.int_value.value == 5
    assert copy.param.stack.sigma.low.value is None


# --- values python-cpl took, and values no C type holds ------------------------
def refused_before_running(r, raw, work_tmp, name, value) -> list:
    """The ValueErrors of a call with param name=value and of setting it
    on the recipe, checking that nothing ran and the value stayed unset."""
    from conftest import run_dirs
    before = run_dirs(work_tmp)
    errors = []
    for attempt in (lambda: r(raw, param={name: value}),
                    lambda: setattr(r.param, name, value)):
        with pytest.raises(ValueError) as info:
            attempt()
        errors.append(info.value)
    assert r.param[name].value is None
    assert run_dirs(work_tmp) == before
    return errors


@pytest.mark.parametrize('name, value, received', [
    ('int_value', True, 1), ('int_value', False, 0), ('enum_int', True, 1),
    ('float_value', True, 1.0), ('float_value', False, 0.0),
    ('string_value', 5, '5'), ('string_value', 1.5, '1.5'),
    ('string_value', True, 'True'),
    ('bool_value', 2, True), ('bool_value', 1.0, True),
    ('bool_value', 0.0, False), ('bool_value', -1, True),
    ('bool_value', 0.5, True), ('bool_value', '', False)])
def test_other_types_python_cpl_converted_pass_with_a_warning(
        r, raw, name, value, received):
    # python-cpl converted with the parameter's type (int(True), str(5),
    # bool(2)) and passed that to the recipe: so does cplrun, and says so.
    with pytest.warns(cpl.CplWarning) as caught:
        r.param[name] = value
    text = str(caught[0].message)
    assert name in text and 'rtest_params' in text and repr(value) in text
    assert caught[0].filename == __file__
    assert r.param[name].value == received
    assert type(r.param[name].value) is type(received)
    got = qc(r(raw))[name]
    assert got == received and type(got) is type(received)


@pytest.mark.parametrize('value', ['0', 'f', 'F', 'off', 'n', ' false',
                                   'false ', 'NO '])
def test_bool_words_python_cpl_made_true_are_refused(r, raw, work_tmp,
                                                     value):
    # python-cpl passed every word but 'false' and 'no' (any case, no
    # space) to the recipe as true: a silent wrong result.
    for error in refused_before_running(r, raw, work_tmp, 'bool_value',
                                        value):
        text = str(error)
        assert 'bool_value' in text and 'rtest_params' in text
        assert repr(value) in text and 'python-cpl' in text


@pytest.mark.parametrize('value, expected', [
    ('true', True), ('True', True), ('YES', True), (' yes ', True),
    ('t', True), ('1', True), ('on', True), ('y', True),
    ('false', False), ('False', False), ('NO', False)])
def test_bool_words_pass_as_they_mean(r, raw, value, expected):
    r.param.bool_value = value
    assert r.param.bool_value.value is expected
    assert qc(r(raw))['bool_value'] is expected


def test_a_numpy_bool_passes_as_the_bool_it_is(r, raw):
    # python-cpl: bool(numpy.True_); it was refused ("takes a bool, not
    # np.True_ (bool)"), as if no script took a flag from an array
    r.param.bool_value = np.True_
    assert r.param.bool_value.value is True
    assert qc(r(raw, param={'bool_value': np.False_}))['bool_value'] is False
    assert qc(r(raw))['bool_value'] is True
    # for an int, as python-cpl's int(True), with the warning of a bool
    with pytest.warns(cpl.CplWarning, match='int_value'):
        assert qc(r(raw, param={'int_value': np.True_}))['int_value'] == 1


def test_an_empty_string_reaches_the_recipe(r, raw):
    # The runner refused it ("refuses value ''") after the run had
    # started; python-cpl passed it on.
    r.param.string_value = ''
    assert qc(r(raw))['string_value'] == ''


def test_float_for_an_int_is_truncated_with_a_warning(r, raw):
    # python-cpl: int(3.7) == 3; scripts rely on it.
    with pytest.warns(cpl.CplWarning) as caught:
        r.param.int_value = 3.7
    text = str(caught[0].message)
    assert 'int_value' in text and 'rtest_params' in text and '3.7' in text
    assert caught[0].filename == __file__     # the caller's line
    assert r.param.int_value.value == 3
    with pytest.warns(cpl.CplWarning, match='-3.7'):
        assert qc(r(raw, param={'int_value': -3.7}))['int_value'] == -3


@pytest.mark.parametrize('value', [2**32 + 7, -2**31 - 1, 1e10, 10**400])
def test_int_beyond_32_bits_is_refused_before_running(r, raw, work_tmp,
                                                      value):
    # python-cpl passed 2**32+7 on as 7, -2**31-1 as 2147483647, 1e10 as
    # 1410065408: a silent wrong result.
    for error in refused_before_running(r, raw, work_tmp, 'int_value',
                                        value):
        assert isinstance(error, cpl.param.ParameterRangeError)
        text = str(error)
        assert 'int_value' in text and 'rtest_params' in text
        assert str(value)[:12] in text
        assert '-2147483648..2147483647' in text


def test_the_ends_of_the_int_range_reach_the_recipe(r, raw):
    for value in (-2**31, 2**31 - 1):
        assert qc(r(raw, param={'int_value': value}))['int_value'] == value


def test_float_overflow_names_the_parameter(r, raw, work_tmp):
    from conftest import run_dirs
    before = run_dirs(work_tmp)
    with pytest.raises(ValueError) as info:
        r(raw, param={'float_value': 2**1100})
    # python-cpl raised a bare OverflowError: it still is one.
    assert isinstance(info.value, OverflowError)
    text = str(info.value)
    assert 'float_value' in text and 'rtest_params' in text
    assert str(2**1100)[:12] in text
    assert run_dirs(work_tmp) == before


def test_a_denormal_reaches_the_recipe(r, raw):
    # The runner refused it (strtod's ERANGE on underflow) after the run
    # had started; python-cpl passed it on.
    res = r(raw, param={'float_value': 5e-324})
    assert 'rtest_params: cplrun.rtest_params.float_value = ' \
        '4.9406564584124654e-324' in res.log.info


def test_the_runner_refuses_an_int_it_cannot_hold(r, raw):
    # The second line of defence, below the Python check: the runner
    # refuses (did: truncated) what does not fit a C int.
    from cpl._run import execute
    spec = r._spec((raw,), {})
    spec.params = [('cplrun.rtest_params.int_value', str(2**32 + 7))]
    with pytest.raises(ValueError) as info:
        execute(spec)
    assert 'int_value' in str(info.value) and '4294967303' in str(info.value)


def test_naco_img_jitter_with_its_null_string_parameters(system_path,
                                                         tmp_path):
    # naco_img_jitter declares 'off' and 'objs' without default; handed
    # NULL, CPL's product header code crashed it (SIGSEGV).  Jittered
    # frames: the synthetic NACO darks with three stars and the offsets.
    from astropy.io import fits
    import numpy as np
    from cpl import synthetic
    synthetic.make_dataset(tmp_path, instruments=['naco'], size='tiny')
    raws = []
    for i, path in enumerate(sorted((tmp_path / 'raw' / 'naco').glob('*.fits'))):
        with fits.open(str(path)) as hdulist:
            header, image = hdulist[0].header, hdulist[0].data.astype(np.float32)
        yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
        for x0, y0 in ((20, 20), (40, 30), (30, 45)):
            image += 5000 * np.exp(-((xx - x0 - 3 * i) ** 2 +
                                     (yy - y0 - 2 * i) ** 2) / 4.0)
        header['HIERARCH ESO SEQ CUMOFFSETX'] = 3.0 * i
        header['HIERARCH ESO SEQ CUMOFFSETY'] = 2.0 * i
        raws.append(str(tmp_path / ('jitter%d.fits' % i)))
        fits.PrimaryHDU(image, header).writeto(raws[-1])
    r = cpl.Recipe('naco_img_jitter')
    assert r.param.off.default is None and r.param.objs.value is None
    res = r(raws, tag='IM_JITTER_OBJ', param={'xcorr': '10 10 5 5'},
            output_dir=str(tmp_path / 'out'))
    info = cpl.dfs.ProcessingInfo(res.COADDED_IMG)
    assert info.param['off'] == '' and info.param['objs'] == ''
