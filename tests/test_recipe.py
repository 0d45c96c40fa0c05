"""cpl.Recipe: finding recipes, the index cache, calling, environment and
OpenMP, pickling, and that runs leave no folders behind."""
from __future__ import annotations

import glob
import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest
from astropy.io import fits

import cpl
from cpl import _index, _runner
from conftest import recipe_build, run_dirs

RTEST_NAMES = ['rtest_copy', 'rtest_params', 'rtest_crash', 'rtest_hang',
               'rtest_error', 'rtest_leak', 'rtest_biglog', 'rtest_omp']


def build_version(outdir, version, version_string):
    """The test recipes compiled with another version number."""
    os.makedirs(outdir, exist_ok=True)
    source = os.path.join(outdir, 'cplrun_test_recipes_v.c')
    with open(recipe_build.sources()[0]) as f:
        text = f.read()
    text = text.replace('#define RTEST_VERSION 10203 /* 1.2.3 */',
                        '#define RTEST_VERSION %d' % version)
    text = text.replace('"cplrun_test/1.2.3"',
                        '"cplrun_test/%s"' % version_string)
    assert '#define RTEST_VERSION %d' % version in text
    with open(source, 'w') as f:
        f.write(text)
    target = os.path.join(outdir, 'cplrun_test_recipes_v.so')
    incdir = recipe_build.find_cpl_include()
    # -I: the copy still includes the helpers next to the original
    subprocess.run(['gcc'] + recipe_build.CFLAGS + [
        '-I' + incdir, '-I' + recipe_build.HERE, source,
        '-o', target] + recipe_build.LIBS, check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.unlink(source)
    return target


@pytest.fixture(scope='module')
def newer_lib(tmp_path_factory):
    """The test recipes as version 10300 ('1.3.0'), alone in a folder."""
    return build_version(str(tmp_path_factory.mktemp('newer')), 10300,
                         '1.3.0')


@pytest.fixture
def fresh_index(monkeypatch, tmp_path):
    """An empty index: nothing in memory, an empty disk cache."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    monkeypatch.setattr(_index, '_memory', {})
    monkeypatch.setattr(_index, '_disk_loaded', False)
    calls = []
    real = _runner.describe

    def counting(files):
        calls.append(list(files))
        return real(files)
    monkeypatch.setattr(_runner, 'describe', counting)
    return calls


# --- discovery ---------------------------------------------------------------
def test_list_returns_names_with_versions_and_prints_nothing(
        fresh_index, capfd):
    found = cpl.Recipe.list()
    out, err = capfd.readouterr()
    assert (out, err) == ('', '')
    assert fresh_index, 'the runner should have described the library'
    assert isinstance(found, list)
    assert sorted(name for name, _ in found) == sorted(RTEST_NAMES)
    for name, versions in found:
        assert versions == ['1.2.3'], name


def test_find_by_name(recipe_lib):
    r = cpl.Recipe('rtest_copy')
    assert r.__name__ == 'rtest_copy'
    assert r.__file__ == recipe_lib
    assert r.version == (10203, '1.2.3')
    assert r.__version__ == '1.2.3'
    assert r.__author__ == 'cplrun developers'
    assert r.__email__ == 'cplrun@example.org'
    assert 'GNU General Public' in r.__copyright__
    assert r.description[0] == 'Copy the first RAW image to a product'
    assert 'Trivial recipe' in r.description[1]
    assert repr(r) == "Recipe('rtest_copy', version = 10203)"
    assert r.cpl_version and r.cpl_version.startswith('7.')
    assert cpl.cpl_versions == [r.cpl_version]
    assert cpl.Recipe.get_recipefilename('rtest_copy') == recipe_lib
    assert cpl.Recipe.get_libs() == [recipe_lib]


def test_doc_lists_parameters_and_frames():
    doc = cpl.Recipe('rtest_params').__doc__
    assert doc.startswith('Echo all parameters as QC keywords')
    for name in ('bool_value', 'enum_string', 'stack.sigma.low'):
        assert name in doc
    assert "RAW --> ['PARAMS']" in doc
    assert 'No parameters' in cpl.Recipe('rtest_omp').__doc__


def test_doc_is_laid_out_as_python_cpl_lays_it_out(system_path):
    # python-cpl's help text ends in two empty lines, and its wrapped
    # lists are indented one column past the text they continue
    doc = cpl.Recipe('muse_scibasic').__doc__
    assert doc.endswith("--> ['REDUCED_RESAMPLED', 'PIXTABLE_REDUCED']\n\n\n")
    assert "Calibration frames: ['MASTER_BIAS'" in doc
    assert "\n                     'TRACE_TABLE'" in doc
    assert ("ASTROMETRY --> ['ASTROMETRY_RED', 'ASTROMETRY_RESAMPLED',\n"
            "                 'PIXTABLE_ASTROMETRY']\n") in doc


def test_newest_version_and_version_selection(recipe_lib, recipe_dir,
                                              newer_lib):
    cpl.Recipe.path = [recipe_dir, os.path.dirname(newer_lib)]
    assert cpl.Recipe('rtest_copy').version == (10300, '1.3.0')
    assert cpl.Recipe('rtest_copy').__file__ == newer_lib
    for version in (10203, '1.2.3'):
        r = cpl.Recipe('rtest_copy', version=version)
        assert r.version == (10203, '1.2.3'), version
        assert r.__file__ == recipe_lib
    assert cpl.Recipe('rtest_copy', version='1.3.0').__file__ == newer_lib
    assert cpl.Recipe.get_recipefilename('rtest_copy', 10203) == recipe_lib
    listed = dict(cpl.Recipe.list())
    assert sorted(listed['rtest_copy']) == ['1.2.3', '1.3.0']
    with pytest.raises(cpl.RecipeNotFoundError) as info:
        cpl.Recipe('rtest_copy', version=999)
    assert '999' in str(info.value)


def test_find_by_filename(recipe_lib, newer_lib):
    # The library needs not be below Recipe.path.
    r = cpl.Recipe('rtest_copy', filename=newer_lib)
    assert r.version == (10300, '1.3.0') and r.__file__ == newer_lib
    r = cpl.Recipe('rtest_copy', filename=recipe_lib)
    assert r.version[0] == 10203
    with pytest.raises(cpl.RecipeNotFoundError):
        cpl.Recipe('rtest_nothere', filename=recipe_lib)


def test_the_version_found_is_the_one_that_runs(recipe_dir, newer_lib, raw):
    cpl.Recipe.path = [recipe_dir, os.path.dirname(newer_lib)]
    for version, pipe in ((None, 'cplrun_test/1.3.0'),
                          (10203, 'cplrun_test/1.2.3')):
        res = cpl.Recipe('rtest_copy', version=version)(raw)
        assert res.PRODUCT[0].header['ESO PRO REC1 PIPE ID'] == pipe


def test_unknown_recipe_suggests_close_match(recipe_dir):
    with pytest.raises(cpl.RecipeNotFoundError) as info:
        cpl.Recipe('rtest_cpy')
    assert isinstance(info.value, IOError)
    text = str(info.value)
    assert "'rtest_cpy'" in text
    assert 'did you mean rtest_copy' in text
    assert recipe_dir in text
    with pytest.raises(IOError) as info:
        cpl.Recipe('completely_different_name')
    assert 'did you mean' not in str(info.value)


def test_path_as_colon_string_and_as_list(recipe_dir, tmp_path, recipe_lib):
    empty = tmp_path / 'empty'
    empty.mkdir()
    missing = tmp_path / 'missing'
    cpl.Recipe.path = '%s:%s:%s' % (empty, missing, recipe_dir)
    assert cpl.Recipe('rtest_copy').__file__ == recipe_lib
    assert len(cpl.Recipe.list()) == len(RTEST_NAMES)
    cpl.Recipe.path = [str(empty), recipe_dir]
    assert cpl.Recipe('rtest_copy').__file__ == recipe_lib
    cpl.Recipe.path = [str(empty)]
    assert cpl.Recipe.list() == []
    with pytest.raises(cpl.RecipeNotFoundError):
        cpl.Recipe('rtest_copy')
    cpl.Recipe.path = str(empty)
    assert cpl.Recipe.list() == []


def test_libraries_in_subfolders_are_found(tmp_path, recipe_lib):
    sub = tmp_path / 'a' / 'b'
    sub.mkdir(parents=True)
    shutil.copy(recipe_lib, str(sub / 'lib.so'))
    cpl.Recipe.path = str(tmp_path)
    assert cpl.Recipe('rtest_omp').__file__ == str(sub / 'lib.so')


# --- the index cache ---------------------------------------------------------
def test_index_is_described_once_then_cached(fresh_index, recipe_lib):
    cpl.Recipe.list()
    cpl.Recipe('rtest_copy')
    cpl.Recipe.list()
    assert fresh_index == [[recipe_lib]]


def test_index_invalidated_when_mtime_changes(fresh_index, tmp_path,
                                              recipe_lib):
    lib = str(tmp_path / 'lib.so')
    shutil.copy2(recipe_lib, lib)
    cpl.Recipe.path = [str(tmp_path)]
    cpl.Recipe.list()
    assert fresh_index == [[lib]]
    st = os.stat(lib)
    os.utime(lib, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    cpl.Recipe.list()
    assert fresh_index == [[lib], [lib]]
    cpl.Recipe.list()
    assert len(fresh_index) == 2


def test_index_invalidated_when_library_is_rebuilt(tmp_path, recipe_lib,
                                                   newer_lib):
    lib = str(tmp_path / 'lib.so')
    shutil.copy(recipe_lib, lib)
    cpl.Recipe.path = [str(tmp_path)]
    assert cpl.Recipe('rtest_copy').version[0] == 10203
    shutil.copy(newer_lib, lib)    # a rebuild: new contents, new mtime
    assert cpl.Recipe('rtest_copy').version[0] == 10300
    assert dict(cpl.Recipe.list())['rtest_copy'] == ['1.3.0']
    # ... and one that is no CPL plugin any more holds no recipes
    with open(lib, 'wb') as f:
        f.write(b'not a library')
    assert cpl.Recipe.list() == []


def test_index_is_kept_on_disk(fresh_index, monkeypatch, recipe_lib):
    cpl.Recipe.list()
    files = glob.glob(os.path.join(os.environ['XDG_CACHE_HOME'], 'cplrun',
                                   'index-*.json'))
    assert len(files) == 1
    with open(files[0]) as f:
        doc = json.load(f)
    assert recipe_lib in doc['libraries']
    # A new process (simulated: empty memory) needs no runner.
    monkeypatch.setattr(_index, '_memory', {})
    monkeypatch.setattr(_index, '_disk_loaded', False)

    def no_describe(files):
        raise AssertionError('described again: %s' % files)
    monkeypatch.setattr(_runner, 'describe', no_describe)
    assert cpl.Recipe('rtest_params').version[0] == 10203


def test_index_lives_in_xdg_cache_home_only(fresh_index, tmp_path):
    cpl.Recipe.list()
    assert os.listdir(str(tmp_path / 'cache')) == ['cplrun']


# --- calling ------------------------------------------------------------------
def test_unknown_call_keyword_is_ignored_with_a_warning(raw, tmp_path):
    # python-cpl ignored them; musered passes its own (name=) through.
    r = cpl.Recipe('rtest_copy')
    out = tmp_path / 'out'
    with pytest.warns(cpl.CplWarning) as caught:
        res = r(raw=raw, name='bias', outputdir='/nowhere',
                output_dir=str(out))
    ours = [w for w in caught if w.category is cpl.CplWarning]
    assert len(ours) == 1, [str(w.message) for w in caught]
    text = str(ours[0].message)
    assert 'rtest_copy' in text and 'name' in text and 'outputdir' in text
    assert ours[0].filename == __file__
    assert res.PRODUCT == str(out / 'rtest_copy.fits')
    assert os.path.exists(res.PRODUCT)


def test_call_without_raw_frames_is_refused():
    with pytest.raises(ValueError):
        cpl.Recipe('rtest_copy')()


def test_recipe_without_declared_tags_needs_a_tag(raw):
    r = cpl.Recipe('rtest_crash')
    assert r.tags is None and r.tag is None
    r.param.mode = 'none'
    with pytest.raises(ValueError) as info:
        r(raw)
    assert 'tag' in str(info.value)
    assert 'CRASH_PRODUCT' in r(raw, tag='RAW')
    assert 'CRASH_PRODUCT' in r({'RAW': raw})
    r.tag = 'RAW'
    assert 'CRASH_PRODUCT' in r(raw)
    # Undeclared tags may be set by hand
    r.tags = ['RAW', 'OTHER']
    assert r.tags == ['RAW', 'OTHER']


def test_declared_tags():
    r = cpl.Recipe('rtest_copy')
    assert r.tags == ['RAW'] and r.tag == 'RAW'
    assert r.output == {'RAW': ['PRODUCT']}
    with pytest.raises(AttributeError):
        r.tags = ['OTHER']
    with pytest.raises(KeyError) as info:
        r.tag = 'BIAS'
    assert 'BIAS' in str(info.value)


def test_undeclared_raw_tag_is_a_cpl_error_before_running(raw, work_tmp):
    # Every frame would carry it, and the recipe would find none it takes:
    # python-cpl ran it, and the recipe failed with a CplError.  Ours is a
    # CplError too (and a KeyError, as before), raised at once.
    r = cpl.Recipe('rtest_copy')
    before = run_dirs(work_tmp)
    with pytest.raises(cpl.CplError) as info:
        r(raw, tag='BIAS')
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, cpl.frames.UnknownRawTagError)
    text = str(info.value)
    assert 'rtest_copy' in text and "'BIAS'" in text and "['RAW']" in text
    assert info.value.recipe == 'rtest_copy' and info.value.tag == 'BIAS'
    assert pickle.loads(pickle.dumps(info.value)).tag == 'BIAS'
    assert run_dirs(work_tmp) == before


def test_undeclared_tag_in_a_raw_dict_runs_with_a_warning(raw, calib_file):
    # A dict may hold frames the recipe does not use next to its raw ones
    # (as a SOF does): they are passed on, as python-cpl and esorex do.
    r = cpl.Recipe('rtest_copy')
    with pytest.warns(cpl.CplWarning) as caught:
        res = r({'RAW': raw, 'MYSTERY': calib_file})
    text = str(caught[0].message)
    assert 'rtest_copy' in text and "'MYSTERY'" in text and 'RAW' in text
    assert any('ignoring frame' in m and 'MYSTERY' in m for m in res.log.info)
    # Only undeclared frames: the recipe says what it misses.
    with pytest.warns(cpl.CplWarning):
        with pytest.raises(cpl.CplError) as info:
            r({'BIAS': raw})
    assert 'no input frame with tag RAW' in str(info.value)


def test_raw_dict_may_hold_calibration_tags(raw, calib_file, recwarn):
    # As load_sof() gives it: raw and calibration frames in one dict.
    r = cpl.Recipe('rtest_copy')
    header = r({'RAW': raw, 'CALIB': calib_file}).PRODUCT[0].header
    assert header['ESO PRO REC1 RAW1 NAME'] == 'raw1.fits'
    assert header['ESO PRO REC1 CAL1 NAME'] == 'calib.fits'
    assert not [w for w in recwarn if w.category is cpl.CplWarning]


def test_raw_in_several_forms(raw, raw2):
    r = cpl.Recipe('rtest_copy')
    for args, kwargs in (((raw,), {}), (([raw, raw2],), {}),
                         ((), {'raw': raw}), (({'RAW': [raw, raw2]},), {}),
                         ((raw, raw2), {})):
        res = r(*args, **kwargs)
        header = res.PRODUCT[0].header
        assert header['ESO PRO REC1 RAW1 NAME'] == 'raw1.fits', args
        assert header['OBJECT'] == 'raw1'


def test_bad_timeout_is_refused(raw):
    r = cpl.Recipe('rtest_copy')
    for timeout in (0, -1):
        with pytest.raises(ValueError):
            r(raw, timeout=timeout)


def test_a_recipe_object_runs_again_and_again(raw, raw2):
    r = cpl.Recipe('rtest_copy')
    for path, obj in ((raw, 'raw1'), (raw2, 'raw2'), (raw, 'raw1')):
        assert r(path).PRODUCT[0].header['OBJECT'] == obj


# --- environment and OpenMP ----------------------------------------------------
def omp_qc(res):
    header = res.OMP_PRODUCT[0].header
    return (header['ESO QC OMP TEAM'], header['ESO QC OMP MAX'],
            header['ESO QC ENV VAR'])


@pytest.fixture
def omp(monkeypatch):
    for key in list(os.environ):
        if key.startswith('OMP_') or key == 'CPLRUN_TEST_VAR':
            monkeypatch.delenv(key)
    r = cpl.Recipe('rtest_omp')
    r.tag = 'RAW'
    return r


#: libgomp's default team: the CPUs this process may run on
CPUS = len(os.sched_getaffinity(0))


def test_openmp_default_team_is_cpu_count(omp, raw):
    team, max_threads, var = omp_qc(omp(raw))
    assert team == CPUS and max_threads == CPUS
    assert var == ''


def test_openmp_num_threads_from_recipe_env(omp, raw):
    omp.env['OMP_NUM_THREADS'] = '1'
    assert omp_qc(omp(raw))[:2] == (1, 1)
    # Other recipes (and calls without it) keep the default.
    other = cpl.Recipe('rtest_omp')
    assert omp_qc(other(raw, tag='RAW'))[0] == CPUS
    omp.env['OMP_NUM_THREADS'] = '3'
    assert omp_qc(omp(raw))[:2] == (3, 3)


def test_openmp_num_threads_from_call_env(omp, raw):
    assert omp_qc(omp(raw, env={'OMP_NUM_THREADS': '1'}))[:2] == (1, 1)
    omp.env['OMP_NUM_THREADS'] = '1'
    # The call's env overrides the recipe's.
    assert omp_qc(omp(raw, env={'OMP_NUM_THREADS': '2'}))[:2] == (2, 2)


def test_environment_variable_passes_through(omp, raw, monkeypatch):
    omp.env['CPLRUN_TEST_VAR'] = 'from recipe env'
    assert omp_qc(omp(raw))[2] == 'from recipe env'
    assert omp_qc(omp(raw, env={'CPLRUN_TEST_VAR': 'from call'}))[2] == \
        'from call'
    del omp.env['CPLRUN_TEST_VAR']
    monkeypatch.setenv('CPLRUN_TEST_VAR', 'from os.environ')
    assert omp_qc(omp(raw))[2] == 'from os.environ'


def test_none_unsets_a_variable_of_os_environ(omp, raw, monkeypatch):
    monkeypatch.setenv('CPLRUN_TEST_VAR', 'inherited')
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    assert omp_qc(omp(raw)) == (1, 1, 'inherited')
    omp.env['CPLRUN_TEST_VAR'] = None
    omp.env['OMP_NUM_THREADS'] = None
    assert omp_qc(omp(raw)) == (CPUS, CPUS, '')
    omp.env.clear()
    assert omp_qc(omp(raw, env={'CPLRUN_TEST_VAR': None}))[2] == ''


def test_env_values_must_be_str(omp, raw, work_tmp):
    with pytest.raises(TypeError) as info:
        omp.env['OMP_NUM_THREADS'] = 1
    assert 'OMP_NUM_THREADS' in str(info.value)
    assert 'OMP_NUM_THREADS' not in omp.env
    with pytest.raises(TypeError):
        omp.env.update({'X': 2.5})
    with pytest.raises(TypeError):
        omp.env = {'X': b'bytes'}
    with pytest.raises(TypeError):
        omp.env[3] = 'x'
    before = run_dirs(work_tmp)
    with pytest.raises(TypeError) as info:
        omp(raw, env={'OMP_NUM_THREADS': 1})
    assert 'OMP_NUM_THREADS' in str(info.value)
    assert run_dirs(work_tmp) == before
    omp.env = {'CPLRUN_TEST_VAR': 'ok', 'OTHER': None}
    assert dict(omp.env) == {'CPLRUN_TEST_VAR': 'ok', 'OTHER': None}


def test_memory_mode_reaches_the_recipe(raw):
    leak = cpl.Recipe('rtest_leak')
    leak.tag = 'RAW'
    assert leak(raw).stat.memory_is_empty is None
    cpl.Recipe.memory_mode = 1
    assert leak(raw).stat.memory_is_empty is False


# --- pickling -----------------------------------------------------------------
def test_recipe_pickles_with_its_settings(raw, calib_file, tmp_path):
    r = cpl.Recipe('rtest_copy')
    r.param.per_frame = True
    r.calib.CALIB = calib_file
    r.env['CPLRUN_TEST_VAR'] = 'pickled'
    r.env['UNSET_ME'] = None
    r.timeout = 42.5
    r.output_dir = str(tmp_path)
    r.threaded = True
    copy = pickle.loads(pickle.dumps(r))
    assert isinstance(copy, cpl.Recipe)
    assert copy.__name__ == 'rtest_copy' and copy.__file__ == r.__file__
    assert copy.version == r.version
    assert copy.param.per_frame.value is True
    assert copy.calib.CALIB.frames == calib_file
    assert dict(copy.env) == {'CPLRUN_TEST_VAR': 'pickled', 'UNSET_ME': None}
    assert copy.timeout == 42.5
    assert copy.output_dir == str(tmp_path)
    assert copy.threaded is True
    assert copy.tag == 'RAW'
    # The copy is independent ...
    copy.param.per_frame = False
    assert r.param.per_frame.value is True
    # ... and runs.
    res = copy(raw, threaded=False, output_dir=None)
    header = res.PRODUCT[0].header
    assert header['ESO PRO REC1 CAL1 NAME'] == 'calib.fits'


def test_recipe_with_hdulist_calib_pickles(raw):
    r = cpl.Recipe('rtest_copy')
    r.calib.CALIB = fits.HDUList([fits.PrimaryHDU(header=fits.Header(
        [('OBJECT', 'in memory')]))])
    copy = pickle.loads(pickle.dumps(r))
    assert isinstance(copy.calib.CALIB.frames, fits.HDUList)
    assert copy.calib.CALIB.frames[0].header['OBJECT'] == 'in memory'
    header = copy(raw).PRODUCT[0].header
    assert header['ESO PRO REC1 CAL1 CATG'] == 'CALIB'


def test_unpickled_recipe_in_another_process(raw, tmp_path):
    r = cpl.Recipe('rtest_omp')
    r.tag = 'RAW'
    r.env['CPLRUN_TEST_VAR'] = 'travelled'
    r.env['OMP_NUM_THREADS'] = '1'
    blob = tmp_path / 'recipe.pickle'
    blob.write_bytes(pickle.dumps(r))
    script = (
        'import pickle, sys, cpl\n'
        'r = pickle.load(open(sys.argv[1], "rb"))\n'
        'h = r(sys.argv[2]).OMP_PRODUCT[0].header\n'
        'print(h["ESO QC ENV VAR"], h["ESO QC OMP TEAM"])\n')
    proc = subprocess.run([sys.executable, '-c', script, str(blob), raw],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().split() == ['travelled', '1']


# --- nothing left behind ----------------------------------------------------------
def test_refused_arguments_create_no_folder(raw, work_tmp, tmp_path):
    r = cpl.Recipe('rtest_params')
    out = tmp_path / 'out'
    before = run_dirs(work_tmp)
    with pytest.raises(KeyError):
        r(raw, param={'no_such_param': 1})
    with pytest.raises(TypeError):
        r(raw, param={'int_value': 'seven'})
    with pytest.raises(ValueError):
        r(raw, param={'int_range': 11}, output_dir=str(out))
    with pytest.raises(FileNotFoundError):
        r(str(tmp_path / 'missing.fits'), output_dir=str(out))
    assert run_dirs(work_tmp) == before
    assert not out.exists()


def test_successful_runs_leave_no_work_folder(raw, raw2, work_tmp, tmp_path,
                                              no_new_run_dirs):
    before = run_dirs(work_tmp)
    for name in ('rtest_copy', 'rtest_params'):
        cpl.Recipe(name)([raw, raw2])
    out = tmp_path / 'out'
    res = cpl.Recipe('rtest_copy')(raw, output_dir=str(out))
    assert os.path.isfile(res.PRODUCT)
    assert run_dirs(work_tmp) == before
    work = out / '.cplrun-work'
    assert not work.exists() or os.listdir(str(work)) == []
    assert sorted(os.listdir(str(out))) in (['rtest_copy.fits'],
                                            ['.cplrun-work', 'rtest_copy.fits'])


def test_a_rebuilt_library_runs_its_new_code(tmp_path, recipe_lib, newer_lib,
                                             raw):
    lib = str(tmp_path / 'lib.so')
    shutil.copy(recipe_lib, lib)
    cpl.Recipe.path = [str(tmp_path)]
    header = cpl.Recipe('rtest_copy')(raw).PRODUCT[0].header
    assert header['ESO PRO REC1 PIPE ID'] == 'cplrun_test/1.2.3'
    # Replaced (as an install does: a new file under the old name)
    os.unlink(lib)
    shutil.copy(newer_lib, lib)
    r = cpl.Recipe('rtest_copy')
    assert r.version[0] == 10300
    header = r(raw).PRODUCT[0].header
    assert header['ESO PRO REC1 PIPE ID'] == 'cplrun_test/1.3.0'
