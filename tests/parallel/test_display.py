"""The live progress display (cpl.parallel._display.LiveDisplay): rendered to a
fake terminal, and for real in a tmux session running a workflow."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from rich.console import Console

from cpl.parallel import RunRecord
from cpl.parallel._display import EventLog, LiveDisplay, format_seconds, one_line

ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')
ERASE_LINE = '\x1b[2K'


def fake_terminal(width=100, height=40):
    return Console(file=io.StringIO(), width=width, height=height,
                   force_terminal=True)


def screen(display):
    """The display drawn once, as plain text lines."""
    out = display.console.file
    out.seek(0)
    out.truncate()
    display.console.print(display)
    return ANSI.sub('', out.getvalue()).splitlines()


def row_of(lines, label):
    """Index of the line starting with label (the label column)."""
    found = [i for i, line in enumerate(lines)
             if line.split(' ', 1)[0] == label]
    assert len(found) == 1, (label, lines)
    return found[0]


def last_frame(text):
    """What a Live display left on a fake terminal: the text drawn after
    its last cursor repositioning, as plain lines."""
    return ANSI.sub('', text.rsplit(ERASE_LINE, 1)[-1]).splitlines()


def make_records(n, recipe='rtest_copy', prefix='run'):
    return [RunRecord('%s%d' % (prefix, i), recipe) for i in range(n)]


# --- helpers ---------------------------------------------------------------------

def test_format_seconds():
    assert format_seconds(None) == ''
    assert format_seconds(4.24) == '4.2s'
    assert format_seconds(187) == '3:07'
    assert format_seconds(3723) == '1:02:03'
    assert format_seconds(-1) == '0.0s'


def test_one_line():
    assert one_line('a\nb\tc\r\n') == 'a b c'
    assert one_line('\x1b[31mred\x1b[0m text\x07') == 'red text'
    assert one_line('[bold]x[/bold]') == '[bold]x[/bold]'


# --- one line per run --------------------------------------------------------------

def test_rows_one_per_run():
    now = time.time()
    records = [
        RunRecord('bias', 'muse_bias', status='success', wall_s=3.24,
                  attempts=1),
        RunRecord('flat', 'muse_flat', status='running', started=now - 75,
                  attempts=2, message='combining 12 frames'),
        RunRecord('wave', 'muse_wavecal', status='failed', wall_s=1.0,
                  attempts=1, error='CplError: no arc lines\ndetails'),
        RunRecord('sci', 'muse_scibasic'),
        RunRecord('old', 'muse_bias', status='cached'),
        RunRecord('late', 'muse_bias', status='skipped',
                  error='skipped: needs wave, which did not succeed'),
    ]
    display = LiveDisplay(records, console=fake_terminal())
    assert not display.grouped
    lines = screen(display)
    assert len(lines) == 1 + len(records)
    assert lines[0].startswith('4/6 done  1 running  1 failed  1 skipped  '
                               'elapsed ')
    rows = {r.name: lines[row_of(lines, r.name)] for r in records}
    assert rows['bias'].split() == ['bias', 'success', '3.2s']
    assert rows['flat'].split()[:5] == ['flat', 'running', '1:15', 'try',
                                        '2']
    assert rows['flat'].endswith('combining 12 frames')
    assert rows['wave'].split()[:3] == ['wave', 'failed', '1.0s']
    assert rows['wave'].endswith('CplError: no arc lines details')
    assert rows['sci'].split() == ['sci', 'pending']
    assert rows['old'].split() == ['old', 'cached']
    assert 'needs wave' in rows['late']
    # the columns line up
    assert len({line.index(' ', 4) for line in lines[1:]}) == 1
    assert len({line.index(r.status) for line, r in
                zip(lines[1:], records)}) == 1


def test_status_colours():
    records = [RunRecord('a', 'r', status=s) for s in
               ('pending', 'running', 'success', 'cached', 'failed',
                'crashed', 'timeout', 'skipped', 'cancelled')]
    display = LiveDisplay(records, console=fake_terminal())
    lines = [line for line in _raw_screen(display).splitlines()][1:]
    codes = {'pending': '2', 'running': '1;34', 'success': '32',
             'cached': '36', 'failed': '1;31', 'crashed': '1;31',
             'timeout': '1;31', 'skipped': '33', 'cancelled': '33'}
    for line, r in zip(lines, records):
        assert '\x1b[%sm%s' % (codes[r.status], r.status) in line, line


def _raw_screen(display):
    out = display.console.file
    out.seek(0)
    out.truncate()
    display.console.print(display)
    return out.getvalue()


def test_rows_never_move():
    records = make_records(8)
    display = LiveDisplay(records, console=fake_terminal())
    before = screen(display)
    positions = {r.name: row_of(before, r.name) for r in records}
    assert sorted(positions.values()) == list(range(1, 9))
    # runs start, finish, fail, are retried, in an unrelated order
    now = time.time()
    for i in (5, 2, 7, 0):
        records[i].status, records[i].started = 'running', now - i
        records[i].attempts = 1
        records[i].message = 'working on %s' % records[i].name
    middle = screen(display)
    records[5].status, records[5].wall_s = 'success', 3.0
    records[2].status, records[2].error = 'crashed', 'SIGSEGV'
    records[2].status, records[2].attempts = 'running', 2
    records[7].status, records[7].error = 'timeout', 'timed out after 1 s'
    records[1].status = 'skipped'
    after = screen(display)
    for lines in (middle, after):
        assert len(lines) == len(before)
        assert {r.name: row_of(lines, r.name) for r in records} == positions
    assert 'try 2' in after[positions['run2']]
    assert 'timeout' in after[positions['run7']]


def test_markup_in_messages_is_literal():
    records = [RunRecord('[red]name[/red]', 'r', status='running',
                         started=time.time(),
                         message='[bold]x[/bold] :smile: [link=a]b[/link]'),
               RunRecord('b', 'r', status='failed', error='[red]boom[/]')]
    display = LiveDisplay(records, console=fake_terminal())
    text = _raw_screen(display)
    plain = ANSI.sub('', text)
    assert '[bold]x[/bold] :smile: [link=a]b[/link]' in plain
    assert '[red]name[/red]' in plain
    assert '[red]boom[/]' in plain
    # and nothing of it was turned into a style
    assert '\x1b]8;' not in text        # no hyperlink
    line = [x for x in text.splitlines() if '[bold]x' in x][0]
    assert '\x1b[1mx' not in line


def test_long_message_truncated():
    message = 'start ' + 'x' * 500 + ' end\nsecond line'
    records = [RunRecord('long', 'r', status='running', started=time.time(),
                         message=message), RunRecord('next', 'r')]
    display = LiveDisplay(records, console=fake_terminal(width=100))
    lines = screen(display)
    assert len(lines) == 3              # one line each, no wrapping
    row = lines[row_of(lines, 'long')]
    assert len(row) == 100
    assert row.endswith('…')
    assert 'start xxx' in row and 'end' not in row and 'second' not in row
    assert lines[row_of(lines, 'next')].split() == ['next', 'pending']
    # narrower terminal, same display: cut to its width
    assert all(len(x) <= 50 for x in _lines_at(display, 50))


def _lines_at(display, width):
    out = io.StringIO()
    Console(file=out, width=width, height=40, force_terminal=True).print(
        display)
    return ANSI.sub('', out.getvalue()).splitlines()


def test_long_names_truncated():
    records = [RunRecord('n' * 300, 'r', status='running',
                         started=time.time(), message='msg'),
               RunRecord('short', 'r')]
    lines = screen(LiveDisplay(records, console=fake_terminal(width=100)))
    assert all(len(x) <= 100 for x in lines)
    assert 'running' in lines[1] and 'msg' in lines[1]


# --- grouped by recipe ----------------------------------------------------------------

def test_grouped_when_runs_do_not_fit():
    # 40 lines - 4 reserved = 36 rows: 36 runs fit, 37 do not
    assert not LiveDisplay(make_records(36), console=fake_terminal()).grouped
    records = (make_records(12, 'muse_bias', 'bias') +
               make_records(20, 'muse_flat', 'flat') +
               make_records(5, 'muse_scibasic', 'sci'))
    display = LiveDisplay(records, console=fake_terminal())
    assert display.grouped
    bias = records[:12]
    now = time.time()
    for i, r in enumerate(bias[:3]):
        r.status, r.started = 'running', now - 10 + i
        r.message = 'message of %s' % r.name
    for r in bias[3:10]:
        r.status, r.wall_s = 'success', 1.0
    bias[10].status = 'failed'
    for r in records[12:32]:
        r.status = 'cached'
    lines = screen(display)
    assert len(lines) == 4
    assert lines[0].startswith('28/37 done  3 running  1 failed')
    row = lines[row_of(lines, 'muse_bias')]
    assert 'muse_bias      12 runs: 3 running, 7 success, 1 failed, ' \
        '1 pending  bias0: message of bias0' == row
    assert lines[row_of(lines, 'muse_flat')].split() == [
        'muse_flat', '20', 'runs:', '20', 'cached']
    assert lines[row_of(lines, 'muse_scibasic')].endswith('5 runs: 5 pending')
    positions = {label: row_of(lines, label) for label in
                 ('muse_bias', 'muse_flat', 'muse_scibasic')}
    # a whole recipe finishes, another starts: same rows
    for r in bias:
        r.status = 'success'
    records[-1].status, records[-1].started = 'running', now
    after = screen(display)
    assert {label: row_of(after, label) for label in positions} == positions
    assert after[positions['muse_bias']].endswith('12 runs: 12 success')
    assert '1 running, 4 pending' in after[positions['muse_scibasic']]


def test_too_many_recipes_share_the_last_line():
    records = [RunRecord('run%d' % i, 'recipe%02d' % i) for i in range(60)]
    records[59].status = 'failed'
    display = LiveDisplay(records, console=fake_terminal(height=10))
    lines = screen(display)
    assert len(lines) == 1 + 6          # 10 - 4 reserved
    assert [x.split()[0] for x in lines[1:6]] == [
        'recipe00', 'recipe01', 'recipe02', 'recipe03', 'recipe04']
    assert lines[6].split()[:2] == ['+55', 'recipes']
    assert lines[6].endswith('55 runs: 1 failed, 54 pending')


def test_group_forced():
    records = make_records(3, 'a') + make_records(2, 'b', 'other')
    lines = screen(LiveDisplay(records, console=fake_terminal(), group=True))
    assert [x.split()[:2] for x in lines[1:]] == [['a', '3'], ['b', '2']]


# --- the live display -------------------------------------------------------------------

def test_live_context(capsys):
    records = make_records(3)
    console = fake_terminal()
    handler = logging.StreamHandler(sys.stderr)     # made before the display
    log = logging.getLogger('cplrun-test-progress')
    log.addHandler(handler)
    log.propagate = False
    try:
        with LiveDisplay(records, console=console) as display:
            records[0].status, records[0].started = 'running', time.time()
            display._last_refresh = 0
            display.update()
            print('printed meanwhile')
            log.warning('logged meanwhile')
            sys.stderr.write('written to stderr meanwhile\n')
            records[0].status, records[0].wall_s = 'success', 0.5
            records[1].status = 'failed'
            records[2].status = 'skipped'
        assert handler.stream is sys.stderr         # restored
    finally:
        log.removeHandler(handler)
    text = console.file.getvalue()
    captured = capsys.readouterr()
    assert 'meanwhile' not in captured.out + captured.err
    plain = ANSI.sub('', text)
    for what in ('printed', 'logged', 'written to stderr'):
        assert '%s meanwhile' % what in plain
    final = last_frame(text)
    assert final[0].startswith('3/3 done  1 failed  1 skipped')
    assert [x.split()[:2] for x in final[1:4]] == [
        ['run0', 'success'], ['run1', 'failed'], ['run2', 'skipped']]
    # the stray output is above the final table
    assert plain.rindex('written to stderr meanwhile') < plain.rindex('run0')


def test_refresh_rate_bounded():
    display = LiveDisplay(make_records(1000), console=fake_terminal(),
                          refresh_per_second=4)
    with display:
        calls = []
        real = display._live.refresh
        display._live.refresh = lambda: (calls.append(1), real())
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.6:
            display.update()
    assert 1 <= len(calls) <= 3


def test_cheap_for_many_runs():
    records = [RunRecord('run%d' % i, 'recipe%d' % (i % 7),
                         status='running', started=time.time(),
                         message='m' * 200) for i in range(1000)]
    display = LiveDisplay(records, console=fake_terminal())
    t0 = time.perf_counter()
    for _ in range(10):
        screen(display)
    assert (time.perf_counter() - t0) / 10 < 0.05


@pytest.mark.parametrize('width,height', [(1, 1), (5, 2), (20, 3), (10, 40)])
def test_tiny_terminal(width, height):
    records = make_records(4, 'a') + make_records(3, 'b', 'x')
    records[0].message, records[0].status = 'hello', 'running'
    records[0].started = time.time()
    console = fake_terminal(width, height)
    with LiveDisplay(records, console=console) as display:
        display._last_refresh = 0
        display.update()
        records[0].status = 'success'
    assert console.file.getvalue()


def test_update_outside_context():
    display = LiveDisplay(make_records(2), console=fake_terminal())
    display.update()                    # not started: nothing to do
    assert display.console.file.getvalue() == ''


# --- a real terminal ----------------------------------------------------------------------

SCRIPT = textwrap.dedent('''\
    import json, os, sys, time
    cfg = json.load(open(sys.argv[1]))
    import cpl
    from cpl.parallel import Workflow
    cpl.Recipe.path = [cfg['recipe_dir']]
    w = Workflow()
    hangs = [w.add('rtest_hang', cfg['raw'], tag='RAW',
                   param={'seconds': 1.5}, name='hang%d' % i)
             for i in range(1, 5)]
    w.add('rtest_copy', cfg['raw'], tag='RAW',
          calib={'CALIB': hangs[0].HANG_PRODUCT}, name='copy')
    report = w.run(output_dir=cfg['output_dir'], progress=True, n_workers=2)
    with open(cfg['result'] + '.tmp', 'w') as f:
        json.dump({r.name: r.status for r in report}, f)
    os.replace(cfg['result'] + '.tmp', cfg['result'])
    time.sleep(60)      # keeps the final screen until the test is done
    ''')
NAMES = ['hang1', 'hang2', 'hang3', 'hang4', 'copy']


@pytest.mark.skipif(shutil.which('tmux') is None, reason='needs tmux')
def test_live_display_in_tmux(tmp_path, recipe_dir, raw):
    script = tmp_path / 'run_workflow.py'
    script.write_text(SCRIPT)
    result = tmp_path / 'result.json'
    cfg = tmp_path / 'cfg.json'
    cfg.write_text(json.dumps({
        'recipe_dir': recipe_dir, 'raw': raw, 'result': str(result),
        'output_dir': str(tmp_path / 'out')}))
    for d in ('tmp', 'cache'):
        (tmp_path / d).mkdir()
    command = 'env TMPDIR=%s XDG_CACHE_HOME=%s %s %s %s' % tuple(
        shlex.quote(str(x)) for x in (
            tmp_path / 'tmp', tmp_path / 'cache', sys.executable, script, cfg))
    server = 'cplrun-test-%s' % uuid.uuid4().hex[:12]
    env = dict(os.environ)
    env.pop('TMUX', None)
    tmux = ['tmux', '-L', server, '-f', '/dev/null']

    def capture():
        proc = subprocess.run(tmux + ['capture-pane', '-p', '-t', server],
                              stdout=subprocess.PIPE, env=env, timeout=10)
        return proc.stdout.decode(errors='replace').splitlines()

    captures = []
    try:
        subprocess.run(tmux + ['new-session', '-d', '-s', server,
                               '-x', '120', '-y', '40', command],
                       env=env, check=True, timeout=10)
        deadline = time.monotonic() + 25
        while not result.exists():
            assert time.monotonic() < deadline, '\n'.join(
                captures[-1] if captures else ['no capture'])
            captures.append(capture())
            time.sleep(0.1)
        time.sleep(0.2)
        final = capture()
    finally:
        subprocess.run(tmux + ['kill-server'], env=env, timeout=10,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert json.loads(result.read_text()) == {n: 'success' for n in NAMES}

    def rows(lines):
        """name -> (screen line, line) of the runs seen on a screen."""
        found = {}
        for i, line in enumerate(lines):
            words = line.split()
            if words and words[0] in NAMES:
                assert words[0] not in found, lines
                found[words[0]] = (i, line)
        return found

    screens = [c for c in captures if rows(c)] + [final]
    assert len(screens) >= 3, captures
    where = {}
    for lines in screens:
        for name, (i, _line) in rows(lines).items():
            where.setdefault(name, set()).add(i)
    assert set(where) == set(NAMES)
    assert all(len(lines) == 1 for lines in where.values()), where
    # the rows in order, right under the totals line
    assert sorted(where, key=lambda n: min(where[n])) == NAMES
    running = [line for lines in screens for _i, line in rows(lines).values()
               if line.split()[1] == 'running']
    assert running, captures
    assert any('hanging' in line for line in running)
    assert any(line.split()[:2] == ['copy', 'pending']
               for lines in screens for _i, line in rows(lines).values())
    final_rows = rows(final)
    assert set(final_rows) == set(NAMES), final
    for name, (_i, line) in final_rows.items():
        assert line.split()[1] == 'success', final
    assert any(line.startswith('5/5 done') for line in final), final


# --- EventLog: a line per event, where no display can be drawn --------------------------
def test_event_log_writes_each_event_once_even_when_several_came_at_once():
    quick = RunRecord('quick', 'rtest_copy')
    slow = RunRecord('slow', 'rtest_hang')
    out = io.StringIO()
    log = EventLog([quick, slow], file=out)
    with log:
        quick.status, quick.attempts, quick.started = 'running', 1, time.time()
        log.update()
        log.update()
        # started and failed between two updates: both lines
        slow.status, slow.attempts, slow.started = 'failed', 1, time.time()
        slow.wall_s, slow.error = 0.2, 'it broke\n    (recipe rtest_hang)'
        log.update()
        quick.status, quick.wall_s, quick.warnings = 'success', 1.25, 2
        quick.products = {'PRODUCT': '/out/quick/p.fits'}
    lines = [line.split(' ', 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        'started  quick (rtest_copy)',
        'started  slow (rtest_hang)',
        'failed   slow (rtest_hang) 0.2s: it broke',
        'success  quick (rtest_copy) 1.2s, 2 warnings, product '
        '/out/quick/p.fits']


def test_event_log_stops_writing_when_its_stream_is_gone():
    run = RunRecord('a', 'rtest_copy', status='running', attempts=1,
                    started=time.time())
    out = io.StringIO()
    out.close()
    log = EventLog([run], file=out)
    log.update()                    # no error: the runs go on
    run.status = 'success'
    log.update()


def test_a_success_with_warnings_shows_them_on_its_line():
    done = RunRecord('done', 'uves_cal_mbias', status='success', wall_s=1.0,
                     attempts=1, warnings=2,
                     warning_lines=['Unrecognized tag BIAS_BLU', 'other'])
    quiet = RunRecord('quiet', 'uves_cal_mbias', status='success',
                      wall_s=1.0, attempts=1, warnings=0)
    display = LiveDisplay([done, quiet], console=fake_terminal())
    lines = screen(display)
    assert lines[row_of(lines, 'done')].endswith(
        ' 2 warnings: Unrecognized tag BIAS_BLU')
    assert lines[row_of(lines, 'quiet')].rstrip().endswith('1.0s')
