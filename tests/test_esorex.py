"""cpl.esorex: SOF and rc files, init(), and esorex-like terminal and file
logging of recipe messages."""
from __future__ import annotations

import io
import logging

import pytest

import cpl
from cpl import esorex
from cpl.esorex import SofError, load_rc, load_sof


@pytest.fixture(autouse=True)
def _restore_esorex_logging():
    yield
    esorex.msg.level = esorex.CplLogger.OFF
    esorex.msg.format = None
    esorex.msg.time = esorex.msg.component = esorex.msg.threadid = False
    esorex.log.filename = None
    esorex.log.dir = None
    esorex.log.level = esorex.CplLogger.INFO
    logging.getLogger('cpl').setLevel(logging.NOTSET)


SOF = """# raw frames
/data/raw1.fits   RAW
/data/raw2.fits   RAW   RAW_GROUP

   # indented comment
/data/bias.fits MASTER_BIAS
rel/flat.fits FLAT CALIB
/data/raw2.fits RAW
"""


def test_load_sof_text_file_and_file_object(tmp_path):
    expected = {'RAW': ['/data/raw1.fits', '/data/raw2.fits'],
                'MASTER_BIAS': '/data/bias.fits', 'FLAT': 'rel/flat.fits'}
    assert load_sof(SOF) == expected
    path = tmp_path / 'x.sof'
    path.write_text(SOF)
    assert load_sof(str(path)) == expected
    with open(str(path)) as f:
        assert load_sof(f) == expected
    assert load_sof(io.StringIO(SOF)) == expected
    assert load_sof('') == {}
    assert load_sof('# only a comment\n\n') == {}


@pytest.mark.parametrize('line', ['/a/b.fits', '/a b c d', 'single'])
def test_load_sof_refuses_malformed_lines(line):
    with pytest.raises(SofError) as info:
        load_sof('/ok.fits RAW\n%s\n' % line)
    assert isinstance(info.value, ValueError)
    assert 'line 2' in str(info.value)


def test_load_rc(tmp_path):
    text = ('# esorex configuration\n'
            'esorex.caller.recipe-dir=/some/where\n'
            '\n'
            'cplrun.rtest_params.int_value = 7\n'
            'cplrun.rtest_params.string_value=a b=c\n')
    expected = {'esorex.caller.recipe-dir': '/some/where',
                'cplrun.rtest_params.int_value': '7',
                'cplrun.rtest_params.string_value': 'a b=c'}
    assert load_rc(text) == expected
    path = tmp_path / 'x.rc'
    path.write_text(text)
    assert load_rc(str(path)) == expected
    with pytest.raises(SofError):
        load_rc('no equals sign here\n')
    with pytest.raises(SofError):
        load_rc('two words=1\n')


def test_load_rc_default_file(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    (tmp_path / '.esorex').mkdir()
    (tmp_path / '.esorex' / 'esorex.rc').write_text('a.b=1\n')
    assert load_rc() == {'a.b': '1'}


def test_recipe_param_from_rc_file(tmp_path, raw):
    rc = tmp_path / 'rtest_params.rc'
    rc.write_text('esorex.caller.msg-level=info\n'
                  'cplrun.rtest_params.int_value=7\n'
                  'cplrun.rtest_params.stack.method=sum\n'
                  'cplrun.other_recipe.x=1\n')
    r = cpl.Recipe('rtest_params')
    r.param = str(rc)
    assert r.param.int_value.value == 7
    assert r.param.stack.method.value == 'sum'
    header = r(raw).PARAMS[0].header
    assert header['ESO QC INT_VALUE'] == 7
    assert header['ESO QC STACK METHOD'] == 'sum'


def test_init_sets_path_and_logging(tmp_path, recipe_dir, raw):
    rc = tmp_path / 'esorex.rc'
    rc.write_text('esorex.caller.recipe-dir=%s:%s\n'
                  'esorex.caller.msg-level=warning\n'
                  'esorex.caller.log-level=debug\n'
                  'esorex.caller.log-dir=%s\n'
                  'esorex.caller.log-file=run.log\n'
                  % (tmp_path / 'nothing', recipe_dir, tmp_path))
    cpl.Recipe.path = [str(tmp_path / 'nothing')]
    esorex.init(str(rc))
    assert cpl.Recipe.path == [str(tmp_path / 'nothing'), recipe_dir]
    assert esorex.msg.level == logging.WARNING
    assert esorex.log.level == logging.DEBUG
    cpl.Recipe('rtest_copy')(raw)
    esorex.log.handler.flush()
    with open(str(tmp_path / 'run.log')) as f:
        text = f.read()
    assert 'saved product rtest_copy.fits (PRODUCT)' in text
    assert 'rtest_copy.rtest_save' in text          # component shown


def test_msg_shows_recipe_messages_on_the_terminal(raw, capfd):
    esorex.msg.level = esorex.CplLogger.INFO
    cpl.Recipe('rtest_copy')(raw)
    err = capfd.readouterr().err
    assert '[   INFO] saved product rtest_copy.fits (PRODUCT)' in err
    esorex.msg.component = True
    cpl.Recipe('rtest_copy')(raw)
    err = capfd.readouterr().err
    assert 'cpl.rtest_copy.rtest_save: saved product' in err
    esorex.msg.level = 'warning'
    cpl.Recipe('rtest_copy')(raw)
    assert capfd.readouterr().err == ''
    esorex.msg.level = esorex.CplLogger.OFF
    assert esorex.msg.handler is None
    cpl.Recipe('rtest_copy')(raw)
    assert capfd.readouterr().err == ''


def test_msg_format_switches():
    m = esorex.msg
    assert m.format == '[%(levelname)7s] %(message)s'
    m.time = True
    m.threadid = True
    m.component = True
    assert m.format == ('%(asctime)s [%(levelname)7s][%(threadName)s] '
                        '%(name)s: %(message)s')
    m.format = '%(message)s'
    assert m.format == '%(message)s'


def test_log_file(tmp_path, raw):
    esorex.log.dir = str(tmp_path)
    esorex.log.filename = 'recipes.log'
    esorex.log.level = 'info'
    r = cpl.Recipe('rtest_biglog')
    r(raw, tag='RAW', param={'lines': 2})
    esorex.log.handler.flush()
    with open(str(tmp_path / 'recipes.log')) as f:
        text = f.read()
    assert 'biglog warning' in text
    assert 'line 000001' in text
    assert 'biglog debug' not in text       # below the level
    esorex.log.filename = None
    assert esorex.log.handler is None
