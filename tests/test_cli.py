"""The ``cplrun`` command line, called in-process through cpl.cli.main,
and, where its output goes through a pipe, as the installed command."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from astropy.io import fits

import cpl
from cpl import cli
from conftest import manifest_step, pipeline_recipe


def sof(path, *lines):
    with open(path, 'w') as f:
        f.write(''.join('%s %s\n' % line for line in lines))
    return str(path)


def test_list_shows_the_test_recipes_with_versions(capsys):
    assert cli.main(['list']) == 0
    lines = capsys.readouterr().out.splitlines()
    found = {line.split()[0]: line.split()[1] for line in lines}
    assert found['rtest_copy'] == '1.2.3'
    assert 'rtest_params' in found
    # and what each does, in one line, as esorex --recipes shows it
    (copy,) = [line for line in lines if line.split()[0] == 'rtest_copy']
    assert copy.endswith('  Copy the first RAW image to a product')


def test_info_text_and_json(capsys):
    assert cli.main(['info', 'rtest_params']) == 0
    text = capsys.readouterr().out
    assert '--int_range  (int, default 5, range 0..10)' in text
    assert 'one of mean, median, sigclip' in text
    assert 'RAW -> PARAMS' in text
    assert cli.main(['info', 'rtest_params', '--json']) == 0
    doc = json.loads(capsys.readouterr().out)
    params = {p['name']: p for p in doc['parameters']}
    assert params['int_range']['range'] == [0, 10]
    assert params['enum_string']['choices'] == ['mean', 'median', 'sigclip']
    assert params['stack.sigma.low']['fullname'] == \
        'cplrun.rtest_params.stack.sigma.low'
    assert doc['outputs'] == {'RAW': ['PARAMS']}
    assert doc['version'] == '1.2.3'


def test_unknown_recipe_is_exit_2(capsys):
    assert cli.main(['info', 'rtest_nope']) == 2
    assert "recipe 'rtest_nope' not found" in capsys.readouterr().err


def test_run_one_run_per_sof_named_by_stem(tmp_path, raw, raw2, capsys):
    a = sof(tmp_path / 'night1.sof', (raw, 'RAW'))
    b = sof(tmp_path / 'night2.sof', (raw2, 'RAW'))
    out = tmp_path / 'out'
    report_file = tmp_path / 'r.json'
    code = cli.main(['run', 'rtest_params', a, b, '-p', 'int_value=7',
                     '-o', str(out), '-j', '2', '--no-progress',
                     '--report', str(report_file)])
    assert code == 0, capsys.readouterr()
    report = json.loads(report_file.read_text())
    assert [r['name'] for r in report['runs']] == ['night1', 'night2']
    for name in ('night1', 'night2'):
        product = out / name / 'rtest_params.fits'
        assert fits.getheader(product)['ESO QC INT_VALUE'] == 7
    assert os.path.isfile(out / 'report.json')
    text = capsys.readouterr().out
    assert 'night1' in text and '2 success' in text
    # The same again is reused.
    assert cli.main(['run', 'rtest_params', a, b, '-p', 'int_value=7',
                     '-o', str(out), '--no-progress']) == 0
    assert '2 cached' in capsys.readouterr().out


def test_run_with_an_rc_file(tmp_path, raw, capsys):
    rc = tmp_path / 'p.rc'
    rc.write_text('# esorex style\ncplrun.rtest_params.int_range=9\n'
                  'esorex.caller.msg-level=info\n')
    out = tmp_path / 'out'
    assert cli.main(['run', 'rtest_params', sof(tmp_path / 's.sof', (raw, 'RAW')),
                     '--recipe-config', str(rc), '-o', str(out),
                     '--no-progress']) == 0
    assert fits.getheader(out / 's' / 'rtest_params.fits')['ESO QC INT_RANGE'] == 9


def test_run_exit_1_when_a_run_fails_with_problems_listed(tmp_path, raw, capsys):
    code = cli.main(['run', 'rtest_error', sof(tmp_path / 'bad.sof', (raw, 'RAW')),
                     '-o', str(tmp_path / 'out'), '--no-progress'])
    assert code == 1
    out = capsys.readouterr().out
    assert 'Problems:' in out and 'outer failure' in out and 'log:' in out


def test_run_exit_2_for_missing_inputs_and_nothing_created(tmp_path, capsys):
    missing = str(tmp_path / 'gone.fits')
    out = tmp_path / 'out'
    code = cli.main(['run', 'rtest_copy', sof(tmp_path / 'm.sof', (missing, 'RAW')),
                     '-o', str(out), '--no-progress'])
    assert code == 2
    assert missing in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(['run', 'rtest_copy', str(tmp_path / 'none.sof'),
                     '-o', str(out)]) == 2
    assert 'no such SOF file' in capsys.readouterr().err


def test_run_lenient_skips_and_exits_1(tmp_path, raw, capsys):
    good = sof(tmp_path / 'good.sof', (raw, 'RAW'))
    bad = sof(tmp_path / 'bad.sof', (str(tmp_path / 'gone.fits'), 'RAW'))
    code = cli.main(['run', 'rtest_copy', good, bad, '--lenient',
                     '-o', str(tmp_path / 'out'), '--no-progress'])
    assert code == 1
    text = capsys.readouterr().out
    assert '1 success' in text and '1 skipped' in text


def test_bad_parameter_is_exit_2(tmp_path, raw, capsys):
    code = cli.main(['run', 'rtest_params', sof(tmp_path / 's.sof', (raw, 'RAW')),
                     '-p', 'int_range=99', '-o', str(tmp_path / 'out')])
    assert code == 2
    assert 'outside the range' in capsys.readouterr().err


def test_timeout_option(tmp_path, raw, capsys):
    code = cli.main(['run', 'rtest_hang', sof(tmp_path / 'h.sof', (raw, 'RAW')),
                     '--timeout', '1', '-o', str(tmp_path / 'out'),
                     '--no-progress'])
    assert code == 1
    assert 'timeout' in capsys.readouterr().out


def test_workflow_file(tmp_path, raw, capsys):
    script = tmp_path / 'wf.py'
    script.write_text(
        'from cpl.parallel import Workflow\n'
        'workflow = Workflow()\n'
        'a = workflow.add("rtest_copy", %r, name="first")\n'
        'workflow.add("rtest_copy", a.PRODUCT, name="second")\n' % raw)
    out = tmp_path / 'out'
    assert cli.main(['workflow', str(script), '-o', str(out),
                     '--no-progress']) == 0
    header = fits.getheader(out / 'second' / 'rtest_copy.fits')
    assert header['ESO PRO REC2 RAW1 NAME'] == 'rtest_copy.fits'
    (tmp_path / 'nowf.py').write_text('x = 1\n')
    assert cli.main(['workflow', str(tmp_path / 'nowf.py')]) == 2


def test_demo_runs_a_real_reduction(system_path, tmp_path, capsys):
    from cpl import synthetic
    if not synthetic.available_instruments():
        pytest.skip('no MUSE, UVES or NACO pipeline installed')
    code = cli.main(['demo', str(tmp_path / 'demo'), '--no-progress'])
    text = capsys.readouterr().out
    assert code == 0, text
    report = json.loads((tmp_path / 'demo' / 'products' / 'report.json')
                        .read_text())
    statuses = {r['name']: r['status'] for r in report['runs']}
    assert set(statuses.values()) == {'success'}
    if 'uves_dark' in statuses:
        dark = report['runs'][[r['name'] for r in report['runs']]
                              .index('uves_dark')]['products']
        header = fits.getheader(dark['MASTER_DARK_BLUE'])
        assert header['ESO PRO REC1 CAL1 NAME'] == 'masterbias_blue.fits'
    assert 'Products:' in text and 'report.json' in text


# --- the --slurm-* options ------------------------------------------------------
SLURM_ARGV = ['--cluster', 'slurm', '--workers', '3',
              '--slurm-queue', 'debug', '--slurm-account', 'astro42',
              '--slurm-walltime', '01:30:00', '--slurm-job-mem', '8GB',
              '--slurm-cores-per-job', '4',
              '--slurm-job-extra=--exclusive',
              '--slurm-job-extra=--constraint=fast',
              '--slurm-python', '/opt/pipelines/bin/python',
              '--slurm-log-directory', 'slurm-logs']


@pytest.mark.parametrize('command', [['run', 'rtest_copy', 'night.sof'],
                                     ['workflow', 'night.py']])
def test_slurm_options_reach_the_cluster(command):
    # Building the manager starts nothing, so no SLURM is needed here.
    from cpl.cluster import DaskClusterManager
    parser = cli.build_parser()
    m = cli._cluster(parser.parse_args(command + SLURM_ARGV))
    assert m.cluster_type == 'slurm' and m.nworkers == 3
    assert m.slurm == dict(
        queue='debug', account='astro42', walltime='01:30:00', memory='8GB',
        cores=4, job_name=None,
        job_extra_directives=['--exclusive', '--constraint=fast'],
        python='/opt/pipelines/bin/python', local_directory=None,
        log_directory='slurm-logs', job_script_prologue=[])
    # Options left out mean what they mean in the Python API.
    m = cli._cluster(parser.parse_args(command + ['--cluster', 'slurm']))
    assert m.slurm == DaskClusterManager(cluster_type='slurm',
                                         nworkers=1).slurm


@pytest.mark.parametrize('command', [['list'], ['info', 'rtest_copy'],
                                     ['demo']])
def test_slurm_options_only_where_runs_go_to_a_cluster(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(command + ['--slurm-queue', 'debug'])
    assert info.value.code == 2
    assert 'unrecognized arguments: --slurm-queue' in capsys.readouterr().err


def test_a_failed_muse_rerun_keeps_the_masters_and_the_report_every_run(
        system_path, data_dir, tmp_path, capsys):
    folder, manifest = data_dir
    try:
        cpl.Recipe('muse_bias')
    except cpl.RecipeNotFoundError:
        pytest.skip('the MUSE pipeline is not installed')
    step = next(s for s in manifest['steps'] if s['recipe'] == 'muse_bias')
    sofs = []
    for name in ('bias_a', 'bias_b', 'bias_c'):
        sofs.append(str(tmp_path / (name + '.sof')))
        shutil.copy(step['sof'], sofs[-1])
    out = str(tmp_path / 'out')
    assert cli.main(['run', 'muse_bias'] + sofs + ['-o', out, '-j', '3',
                                                    '--no-progress']) == 0
    masters = os.path.join(out, 'bias_b')

    def contents():
        found = {}
        for name in os.listdir(masters):
            if name.endswith('.fits'):
                with open(os.path.join(masters, name), 'rb') as f:
                    found[name] = hashlib.sha256(f.read()).hexdigest()
        return found
    before = contents()
    assert len(before) == 24
    # parameters muse_bias fails with, at run time: keep 5 of 3 frames
    code = cli.main(['run', 'muse_bias', sofs[1], '-o', out, '--no-progress',
                     '-p', 'combine=minmax', '-p', 'nlow=5'])
    assert code == 1, capsys.readouterr().out
    assert contents() == before
    with open(os.path.join(out, 'report.json')) as f:
        report = json.load(f)
    assert {r['name']: (r['status'], r['earlier_invocation'])
            for r in report['runs']} == {'bias_b': ('failed', False),
                                         'bias_a': ('success', True),
                                         'bias_c': ('success', True)}
    assert report['runs'][0]['name'] == 'bias_b'


# --- real pipelines through the command line -------------------------------------------
def pipeline_step(manifest, recipe):
    pipeline_recipe(recipe)
    return manifest_step(manifest, recipe)


def test_failures_say_what_the_recipe_said(system_path, data_dir, tmp_path,
                                           capsys):
    """MUSE dark without its bias, MUSE bias of one frame: the summary's
    Problems and report.json have the recipe's own error, not only CPL's
    'An unspecified error'."""
    _folder, manifest = data_dir
    dark = pipeline_step(manifest, 'muse_dark')
    bias = pipeline_step(manifest, 'muse_bias')
    nobias = sof(tmp_path / 'dark_nobias.sof',
                 *[(f, 'DARK') for f in dark['raw']])
    onebias = sof(tmp_path / 'one_bias.sof', (bias['raw'][0], 'BIAS'))
    out = str(tmp_path / 'out')
    assert cli.main(['run', 'muse_dark', nobias, '-o', out,
                     '--no-progress']) == 1
    assert cli.main(['run', 'muse_bias', onebias, '-o', out,
                     '--no-progress']) == 1
    printed = capsys.readouterr().out
    missing = 'Required 1, found 0 frames with tag "MASTER_BIAS"'
    too_few = 'Required 3, found 1 input frames with tag "BIAS"'
    problems = printed.split('Problems:')
    assert len(problems) == 3
    assert '  dark_nobias (muse_dark): failed\n      %s' % missing \
        in problems[1]
    assert '  one_bias (muse_bias): failed\n      %s' % too_few in problems[2]
    with open(os.path.join(out, 'report.json')) as f:
        errors = {r['name']: r['error'] for r in json.load(f)['runs']}
    assert errors['dark_nobias'].startswith(missing)
    assert errors['one_bias'].startswith(too_few)
    # the kept folder is named once, not twice
    assert errors['one_bias'].count('files kept in') == 1


def test_a_success_with_warnings_is_not_silent(system_path, data_dir,
                                               tmp_path, capsys):
    """A UVES bias SOF with a frame tagged BIAS_BLU (for BIAS_BLUE): the
    recipe succeeds, warning "Unrecognized tag BIAS_BLU"; the summary and
    the report count the warnings and show the first lines."""
    _folder, manifest = data_dir
    step = pipeline_step(manifest, 'uves_cal_mbias')
    mistyped = str(tmp_path / 'extra_bias.fits')
    shutil.copy(step['raw'][0], mistyped)
    night = sof(tmp_path / 'night.sof', *[(f, 'BIAS_BLUE') for f in step['raw']],
                (mistyped, 'BIAS_BLU'))
    out = str(tmp_path / 'out')
    assert cli.main(['run', 'uves_cal_mbias', night, '-o', out,
                     '--no-progress']) == 0
    printed = capsys.readouterr().out
    header, row = printed.strip().splitlines()[:2]
    assert header.split()[-1] == 'warn' and row.split()[-1] == '2'
    assert '1 runs in' in printed and '1 success; 2 warnings' in printed
    assert '\nWarnings:\n  night (uves_cal_mbias): 2 warnings\n' \
           '      Unrecognized tag BIAS_BLU\n' in printed
    with open(os.path.join(out, 'report.json')) as f:
        (run,) = json.load(f)['runs']
    assert run['status'] == 'success' and run['warnings'] == 2
    assert run['warning_lines'][0] == 'Unrecognized tag BIAS_BLU'


def test_raw_tag_messages_name_the_tag_option(system_path, data_dir, tmp_path,
                                              capsys):
    """The command line has --tag, and says so (not 'give tag='); an empty
    SOF is called empty."""
    _folder, manifest = data_dir
    step = pipeline_step(manifest, 'muse_bias')
    mytag = sof(tmp_path / 'mybias.sof', *[(f, 'MYBIAS') for f in step['raw']])
    out = str(tmp_path / 'out')
    assert cli.main(['run', 'muse_bias', mytag, '-o', out]) == 2
    err = capsys.readouterr().err
    assert err == ('cplrun: cannot tell the raw frames of muse_bias in SOF %s '
                   'among its tags MYBIAS (it takes BIAS): give --tag TAG\n'
                   % mytag)
    assert cli.main(['run', 'muse_bias', mytag, '-o', out,
                     '--tag', 'DARK']) == 2
    assert capsys.readouterr().err == (
        'cplrun: SOF %s has no frames tagged DARK (it has MYBIAS)\n' % mytag)
    # --tag reaches the recipe, which takes no MYBIAS frames
    assert cli.main(['run', 'muse_bias', mytag, '-o', out,
                     '--tag', 'MYBIAS']) == 2
    assert capsys.readouterr().err == (
        "cplrun: recipe muse_bias takes no raw frames tagged 'MYBIAS'; its "
        "tags are ['BIAS']\n")
    empty = sof(tmp_path / 'empty.sof')
    assert cli.main(['run', 'muse_bias', empty, '-o', out]) == 2
    assert capsys.readouterr().err == \
        'cplrun: SOF %s is empty: it lists no frames\n' % empty


# --- the real command, its output through a pipe ----------------------------------------
CPLRUN = os.path.join(os.path.dirname(sys.executable), 'cplrun')


def test_through_a_pipe_each_run_is_a_line_as_it_ends(recipe_dir, raw,
                                                      tmp_path):
    """stdout a pipe (nohup, sbatch, CI): one flushed line per event, as
    it happens, and the summary at the end."""
    first = sof(tmp_path / 'first.sof', (raw, 'RAW'))
    second = sof(tmp_path / 'second.sof', (raw, 'RAW'))
    out = str(tmp_path / 'out')
    start = time.monotonic()
    proc = subprocess.Popen(
        [CPLRUN, 'run', 'rtest_hang', first, second, '-p', 'seconds=1.5',
         '-j', '1', '-o', out, '--recipe-dir', recipe_dir],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrived = []
    for line in proc.stdout:
        arrived.append((time.monotonic() - start, line.rstrip('\n')))
    ended = time.monotonic() - start
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    proc.stderr.close()
    events = [(t, line.split()[1:3]) for t, line in arrived
              if re.match(r'\d\d:\d\d:\d\d ', line)]
    assert [e for _t, e in events] == [
        ['started', 'first'], ['success', 'first'],
        ['started', 'second'], ['success', 'second']]
    (t_start1, _), (t_end1, _), _, (t_end2, _) = events
    # each line came when its event happened, not all at the end
    # (a started line may come up to a refresh, 0.25 s, after the start)
    assert t_end1 - t_start1 >= 1.0
    assert ended - t_end1 >= 1.0
    product = os.path.join(out, 'first', 'rtest_hang.fits')
    assert re.search(r' success  first \(rtest_hang\) 1\.\ds, product %s$'
                     % re.escape(product), arrived[1][1]), arrived[1][1]
    text = '\n'.join(line for _t, line in arrived)
    assert '\n2 runs in ' in text and text.rstrip().endswith(
        'Report: %s' % os.path.join(out, 'report.json'))


@pytest.mark.parametrize('command', [['list'], ['run', 'rtest_copy']])
def test_a_pipe_closed_early_ends_quietly(command, recipe_dir, raw, tmp_path):
    """cplrun list | head: the reader goes away; no '[Errno 32] Broken
    pipe', exit 0 (or, for runs, their outcome: they are not cut short)."""
    args = [CPLRUN] + command + ['--recipe-dir', recipe_dir]
    out = str(tmp_path / 'out')
    if command[0] == 'run':
        args[3:3] = [sof(tmp_path / 'a.sof', (raw, 'RAW')), '-o', out]
    read_end, write_end = os.pipe()
    os.close(read_end)                  # closed before anything is written
    try:
        proc = subprocess.run(args, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (0, '')
    if command[0] == 'run':
        with open(os.path.join(out, 'report.json')) as f:
            assert json.load(f)['runs'][0]['status'] == 'success'
        assert os.path.isfile(os.path.join(out, 'a', 'rtest_copy.fits'))


def test_one_sof_per_night_folder_all_named_alike(system_path, data_dir,
                                                  tmp_path, capsys):
    """cplrun run muse_bias n1/bias.sof n2/bias.sof: runs n1-bias and
    n2-bias; the same SOF twice is a clear error, and nothing runs."""
    _folder, manifest = data_dir
    step = pipeline_step(manifest, 'muse_bias')
    nights = []
    for night in ('n1', 'n2'):
        os.makedirs(str(tmp_path / night))
        nights.append(str(tmp_path / night / 'bias.sof'))
        shutil.copy(step['sof'], nights[-1])
    out = str(tmp_path / 'out')
    assert cli.main(['run', 'muse_bias'] + nights + ['-o', out, '-j', '2',
                                                      '--no-progress']) == 0
    with open(os.path.join(out, 'report.json')) as f:
        runs = {r['name']: r for r in json.load(f)['runs']}
    assert sorted(runs) == ['n1-bias', 'n2-bias']
    # the summary names the products, not only folders
    assert '\nProducts:\n  n1-bias: 24 products in %s\n  n2-bias: 24 ' \
        'products in %s\n' % (os.path.join(out, 'n1-bias'),
                               os.path.join(out, 'n2-bias')) \
        in capsys.readouterr().out
    for name, run in runs.items():
        assert run['status'] == 'success'
        masters = run['products']['MASTER_BIAS']        # one per IFU
        assert len(masters) == 24
        assert {os.path.dirname(m) for m in masters} == \
            {os.path.join(out, name)}
    capsys.readouterr()
    again = os.path.join(str(tmp_path), 'n1', '..', 'n1', 'bias.sof')
    assert cli.main(['run', 'muse_bias', nights[0], again, '-o',
                     str(tmp_path / 'twice')]) == 2
    assert capsys.readouterr().err == (
        'cplrun: SOF %s is given twice (as %s and %s): one run per SOF\n'
        % (nights[0], nights[0], again))
    assert not os.path.exists(str(tmp_path / 'twice'))


def test_recipe_options_after_the_recipe_as_esorex_takes_them(
        system_path, data_dir, tmp_path, capsys):
    """cplrun run muse_bias --nifu=1 bias.sof, as esorex muse_bias
    --nifu=1 bias.sof: one IFU's master, as with -p nifu=1."""
    _folder, manifest = data_dir
    step = pipeline_step(manifest, 'muse_bias')
    night = str(tmp_path / 'bias.sof')
    shutil.copy(step['sof'], night)
    out = str(tmp_path / 'out')
    assert cli.main(['run', 'muse_bias', '--nifu=1', '--merge=false', night,
                     '-o', out, '--no-progress']) == 0
    with open(os.path.join(out, 'report.json')) as f:
        (run,) = json.load(f)['runs']
    assert run['products'] == {
        'MASTER_BIAS': os.path.join(out, 'bias', 'MASTER_BIAS-01.fits')}
    # the same run with -p: reused (the same parameters)
    assert cli.main(['run', 'muse_bias', night, '-p', 'nifu=1', '-p',
                     'merge=false', '-o', out, '--no-progress']) == 0
    assert ' cached ' in capsys.readouterr().out
    # not --NAME=VALUE, or not a parameter of the recipe: exit 2, nothing runs
    assert cli.main(['run', 'muse_bias', '--nifu', '1', night, '-o',
                     str(tmp_path / 'no')]) == 2
    assert "'--nifu' is neither an option of cplrun run nor a recipe option " \
        '--NAME=VALUE (or -p NAME=VALUE)' in capsys.readouterr().err
    # no abbreviation of cplrun's options: --time is not --timeout
    assert cli.main(['run', 'muse_bias', '--time=1', night, '-o',
                     str(tmp_path / 'no')]) == 2
    assert "recipe 'muse_bias' has no parameter 'time'" in \
        capsys.readouterr().err
    assert not os.path.exists(str(tmp_path / 'no'))
    # elsewhere, unknown options are still refused
    with pytest.raises(SystemExit) as info:
        cli.main(['list', '--nifu=1'])
    assert info.value.code == 2
    assert 'unrecognized arguments: --nifu=1' in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(['--version'])
    assert info.value.code == 0
    assert capsys.readouterr().out == 'cplrun %s\n' % cpl.__version__


def test_after_ctrl_c_the_summary_says_what_ran_and_how_to_resume(
        recipe_dir, raw, tmp_path):
    done = sof(tmp_path / 'done.sof', (raw, 'RAW'))
    hung = sof(tmp_path / 'hung.sof', (raw, 'RAW'))
    out = str(tmp_path / 'out')
    proc = subprocess.Popen(
        [CPLRUN, 'run', 'rtest_hang', done, hung, '-p', 'seconds=1', '-j',
         '1', '-o', out, '--recipe-dir', recipe_dir],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if ' started  hung ' in line:
            proc.send_signal(signal.SIGINT)     # Ctrl-C while hung runs
            break
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.endswith('cplrun: interrupted\n')
    summary = rest[rest.index('\nrun '):]
    rows = {line.split()[0]: line.split()[2]
            for line in summary.strip().splitlines()[1:3]}
    assert rows == {'done': 'success', 'hung': 'cancelled'}
    assert summary.rstrip().endswith(
        'To resume, run the same command again: the runs that succeeded '
        'are reused, the others run.')
    # and so it does
    again = subprocess.run(proc.args, stdout=subprocess.PIPE, text=True,
                           timeout=60)
    assert again.returncode == 0
    assert [line.split()[1:3] for line in again.stdout.splitlines()[:3]] == [
        ['cached', 'done'], ['started', 'hung'], ['success', 'hung']]


def test_an_rc_file_of_another_recipe_is_not_passed_over_quietly(
        tmp_path, raw, capsys):
    rc = tmp_path / 'other.rc'
    rc.write_text('cplrun.rtest_params.int_range=9\n'
                  'cplrun.rtest_params.str_enum=b\n'
                  'esorex.caller.msg-level=info\n')
    night = sof(tmp_path / 's.sof', (raw, 'RAW'))
    out = str(tmp_path / 'out')
    assert cli.main(['run', 'rtest_copy', night, '--recipe-config', str(rc),
                     '-o', out, '--no-progress']) == 0
    assert capsys.readouterr().err == (
        'cplrun: warning: %s names parameters rtest_copy does not have '
        '(cplrun.rtest_params.int_range, cplrun.rtest_params.str_enum): they '
        'are ignored; it sets none of its parameters, which keep their '
        'defaults\n' % rc)
    # its own parameters and esorex's: no warning
    rc.write_text('cplrun.rtest_params.int_range=9\n'
                  'esorex.caller.msg-level=info\n')
    assert cli.main(['run', 'rtest_params', night, '--recipe-config',
                     str(rc), '-o', out, '--no-progress']) == 0
    assert capsys.readouterr().err == ''
