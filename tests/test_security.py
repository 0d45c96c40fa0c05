"""What a recipe, an SOF, an .rc, a parameter or a product header could do
to the machine: nothing reaches a shell, a product path never leads out of
the run's folder (``../../x.fits``, an absolute name, a symlink), run
folders are private (0700), and a Dask scheduler other than loopback is
used only when the user names it."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

import numpy as np
import pytest
from astropy.io import fits

import cpl
from cpl.parallel import Workflow, run_batch
from conftest import REPO, recipe_processes, remove_run_dir, run_dirs

OPTS = dict(progress=False)


@pytest.fixture(autouse=True)
def _faults(fault_recipes):
    """The misbehaving recipes are on the path for every test here."""


@pytest.fixture
def no_shell(monkeypatch):
    """Fails the test if anything in this process starts a shell."""
    calls = []
    real_init = subprocess.Popen.__init__

    def checked_init(self, args, *rest, **kwargs):
        if kwargs.get('shell') or isinstance(args, (str, bytes)):
            calls.append(args)
            raise AssertionError('a shell was asked for: %r' % (args,))
        return real_init(self, args, *rest, **kwargs)

    def refused(*args, **kwargs):
        calls.append(args)
        raise AssertionError('a shell was asked for: %r' % (args,))
    monkeypatch.setattr(subprocess.Popen, '__init__', checked_init)
    monkeypatch.setattr(os, 'system', refused)
    monkeypatch.setattr(os, 'popen', refused)
    yield calls
    assert calls == []


def evil_values(folder):
    """Shell syntax that would create a file in folder if run by a shell."""
    mark = os.path.join(str(folder), 'pwned')
    return ['$(touch %s1)' % mark, '`touch %s2`' % mark,
            '; touch %s3' % mark, '| touch %s4' % mark,
            '&& touch %s5 ;' % mark, "'; rm -rf %s/* #" % folder,
            '"$(touch %s6)"' % mark, '\n touch %s7' % mark]


def nothing_happened(folder):
    return [n for n in os.listdir(str(folder)) if n.startswith('pwned')]


@pytest.fixture
def victim():
    """A folder with a short name (FITS header values are short), that a
    command run by a shell would change."""
    folder = tempfile.mkdtemp(prefix='v', dir='/tmp')
    with open(os.path.join(folder, 'keep.txt'), 'w') as f:
        f.write('still here')
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# --- no shell ------------------------------------------------------------------------------
def test_parameter_values_reach_the_recipe_verbatim(raw, victim, no_shell):
    r = cpl.Recipe('rtest_params')
    for value in evil_values(victim):
        res = r(raw, param={'string_value': value})
        logged = [m.split(': ', 1)[1] for m in res.log.info
                  if 'string_value' in m]
        assert logged[0].startswith("cplrun.rtest_params.string_value = '%s"
                                    % value.split('\n')[0])
        if '\n' not in value:
            assert res.PARAMS[0].header['ESO QC STRING_VALUE'] == \
                value.rstrip()
    assert nothing_happened(victim) == []
    assert open(os.path.join(victim, 'keep.txt')).read() == 'still here'


def test_sof_rc_environment_and_headers_reach_no_shell(raw, tmp_path, victim,
                                                       no_shell, monkeypatch):
    evil = evil_values(victim)
    # an .rc value and an environment variable
    rc = tmp_path / 'evil.rc'
    rc.write_text('cplrun.rtest_params.string_value=%s\n' % evil[0])
    r = cpl.Recipe('rtest_params')
    r.param = str(rc)
    assert r.param.string_value.value == evil[0]
    first = r(raw, output_dir=str(tmp_path / 'one'))
    omp = cpl.Recipe('rtest_omp')
    res = omp(raw, tag='RAW', env={'CPLRUN_TEST_VAR': evil[1]})
    assert res.OMP_PRODUCT[0].header['ESO QC ENV VAR'] == evil[1]
    # a product whose header holds shell syntax, as the input of a
    # workflow, read back by cpl.dfs
    header = fits.getheader(first.PARAMS)
    assert header['ESO QC STRING_VALUE'] == evil[0]
    info = cpl.dfs.ProcessingInfo(first.PARAMS)
    assert info.param['string_value'] == evil[0]
    w = Workflow()
    w.add('rtest_copy', first.PARAMS, name='from_header')
    report = w.run(output_dir=str(tmp_path / 'wf'), **OPTS)
    assert report.ok, report.runs[0].error
    # an SOF whose file names are shell syntax (relative to the current
    # folder, where a shell would run them too)
    names = ['$(touch${IFS}pwned8).fits', '`touch${IFS}pwned9`.fits',
             ';touch${IFS}pwned10;.fits', '|touch${IFS}pwned11.fits',
             '-rf.fits', '*.fits']
    for n in names:
        shutil.copyfile(raw, os.path.join(victim, n))
    with open(os.path.join(victim, 'evil.sof'), 'w') as f:
        f.write(''.join('%s RAW\n' % n for n in names))
    monkeypatch.chdir(victim)
    batch = run_batch('rtest_copy', ['evil.sof'],
                      output_dir=str(tmp_path / 'sof'), **OPTS)
    assert batch.ok, batch.runs[0].error
    header = fits.getheader(batch.runs[0].products['PRODUCT'])
    assert [header['ESO PRO REC1 RAW%d NAME' % (i + 1)]
            for i in range(len(names))] == names
    assert nothing_happened(victim) == []


def test_the_runner_calls_no_shell():
    """The C side: no system(), popen() or /bin/sh anywhere; the only
    program it starts (gdb) is started with execl and a plain argv."""
    for name in sorted(os.listdir(os.path.join(REPO, 'src_c'))):
        if not name.endswith(('.c', '.h')):
            continue
        text = open(os.path.join(REPO, 'src_c', name)).read()
        code = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
        for bad in (r'\bsystem\s*\(', r'\bpopen\s*\(', r'/bin/sh',
                    r'\bexeclp\s*\(', r'\bexecvp\s*\('):
            assert not re.search(bad, code), (name, bad)


# --- products must stay inside the run's folder ------------------------------------------
@pytest.mark.parametrize('output', [False, True])
@pytest.mark.parametrize('case', ['parent', 'absolute', 'symlink out',
                                  'symlink in', 'claimed outside'])
def test_a_product_outside_the_work_folder_is_refused(raw, tmp_path, case,
                                                      output):
    base = tmp_path / 'a' / 'b'
    base.mkdir(parents=True)
    victim = tmp_path / 'victim.fits'
    victim.write_bytes(open(raw, 'rb').read())
    victim_bytes = victim.read_bytes()
    param = {
        'parent': {'name': '../../escaped.fits'},
        'absolute': {'name': str(tmp_path / 'absolute.fits')},
        'symlink out': {'kind': 'symlink', 'target': str(victim)},
        'symlink in': {'kind': 'symlink', 'target': 'rtest_product_ok.fits',
                       'also_ok': True},
        'claimed outside': {'kind': 'none', 'name': str(victim)},
    }[case]
    out = tmp_path / 'out'
    r = cpl.Recipe('rtest_product')
    r.temp_dir = str(base)
    with pytest.raises(cpl.RecipeCrash) as info:
        r(raw, tag='RAW', param=param,
          output_dir=str(out) if output else None)
    e = info.value
    assert 'rtest_product' in str(e) and 'it was not taken' in str(e)
    assert e.log_file in str(e) and raw in str(e)
    # nothing was taken, moved or removed: not even the good product
    assert not out.exists() or os.listdir(out) == []
    assert victim.read_bytes() == victim_bytes
    if case == 'parent':
        # the recipe itself could write there; the runner took nothing
        assert (tmp_path / 'a' / 'escaped.fits').is_file()
    kept = run_dirs(str(base))
    assert kept == [os.path.basename(e.workdir)]
    if case == 'symlink in':
        assert os.path.isfile(os.path.join(e.workdir,
                                           'rtest_product_ok.fits'))
    remove_run_dir(e)


def test_an_unreadable_product_is_a_crash_and_stays(raw, tmp_path):
    r = cpl.Recipe('rtest_product')
    r.temp_dir = str(tmp_path)
    with pytest.raises(cpl.RecipeCrash) as info:
        r(raw, tag='RAW', param={'kind': 'junk'})
    e = info.value
    assert 'cannot be read as FITS: rtest_product.fits' in str(e)
    assert e.log_file in str(e) and raw in str(e)
    assert run_dirs(str(tmp_path)) == [os.path.basename(e.workdir)]
    with open(os.path.join(e.workdir, 'rtest_product.fits'), 'rb') as f:
        assert f.read().startswith(b'SIMPLE  = not FITS')
    assert 'wrote junk product' in open(e.log_file).read()
    remove_run_dir(e)


def test_refusal_in_a_batch_leaves_the_other_runs_alone(raw, tmp_path):
    w = Workflow()
    w.add('rtest_copy', raw, name='good')
    w.add('rtest_product', raw, tag='RAW', name='escape',
          param={'name': '../../../../escaped.fits'})
    w.add('rtest_copy', raw, name='good2')
    out = tmp_path / 'out'
    report = w.run(n_workers=3, output_dir=str(out), **OPTS)
    assert {r.name: r.status for r in report} == {
        'good': 'success', 'escape': 'crashed', 'good2': 'success'}
    assert 'outside its work folder' in report['escape'].error
    assert report['escape'].products == {}


# --- private run folders --------------------------------------------------------------------
def test_run_folders_are_private(raw, tmp_path, work_tmp):
    hdul = fits.HDUList([fits.PrimaryHDU(np.ones((2, 2), np.float32))])
    for output_dir in (None, str(tmp_path / 'out')):
        before = set(run_dirs(work_tmp))
        with pytest.raises(cpl.CplError) as info:
            cpl.Recipe('rtest_error')([hdul], tag='RAW',
                                      output_dir=output_dir)
        e = info.value
        assert stat.S_IMODE(os.stat(e.workdir).st_mode) == 0o700
        # the in-memory input was written inside the private folder
        written = [n for n in os.listdir(e.workdir) if n.startswith('RAW_')]
        assert len(written) == 1
        if output_dir is None:
            assert set(run_dirs(work_tmp)) - before == {
                os.path.basename(e.workdir)}
        remove_run_dir(e)
    # and while a run goes, before it has written anything
    t = cpl.Recipe('rtest_hang')(raw, tag='RAW', threaded=True)
    try:
        procs = []
        end = time.monotonic() + 10
        while not procs and time.monotonic() < end:
            procs = [p for p in recipe_processes()
                     if os.path.basename(p.cwd()).startswith('rtest_hang-')]
            time.sleep(0.02)
        assert procs
        assert stat.S_IMODE(os.stat(procs[0].cwd()).st_mode) == 0o700
    finally:
        t.cancel()


# --- Dask: loopback unless told otherwise ------------------------------------------------------
def test_a_local_dask_cluster_listens_on_loopback_only(monkeypatch):
    pytest.importorskip('distributed')
    import distributed
    from cpl.cluster import DaskClusterManager
    seen = {}

    class Stop(Exception):
        pass

    def fake_cluster(**kwargs):
        seen.update(kwargs)
        raise Stop()
    monkeypatch.setattr(distributed, 'LocalCluster', fake_cluster)
    with pytest.raises(Stop):
        DaskClusterManager(nworkers=1).start()
    assert seen['host'] == '127.0.0.1'
    assert seen['dashboard_address'].startswith('127.0.0.1:')
    # another address only when given, and then as given
    m = DaskClusterManager(scheduler_address='tcp://192.0.2.7:8786')
    assert m.cluster_type == 'address'
    assert m.scheduler_address == 'tcp://192.0.2.7:8786'
    assert DaskClusterManager().scheduler_address is None
