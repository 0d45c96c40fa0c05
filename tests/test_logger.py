"""Recipe messages as Python logging records (cpl.logger), big logs, and
that nothing a recipe prints reaches the terminal."""
from __future__ import annotations

import gc
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc

import pytest

import cpl
from cpl import logger
from cpl.logger import LogList, LogReader, runner_loglevel
from conftest import wait_until


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def collected():
    handler = Collect()
    logger = logging.getLogger('cpl')
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_records_go_to_cpl_recipe_function(raw, collected):
    cpl.Recipe('rtest_copy')(raw)
    names = {rec.name for rec in collected}
    assert 'cpl.rtest_copy.rtest_save' in names
    assert 'cpl.rtest_copy.cpl_dfs_product_save' in names
    saved = [rec for rec in collected
             if rec.name == 'cpl.rtest_copy.rtest_save']
    assert saved[0].getMessage() == 'saved product rtest_copy.fits (PRODUCT)'
    assert saved[0].levelno == logging.INFO
    assert saved[0].funcName == 'rtest_save'
    assert abs(saved[0].created - time.time()) < 120


def test_caplog_sees_records_with_levels(raw, caplog):
    r = cpl.Recipe('rtest_error')
    r.tag = 'RAW'
    with caplog.at_level(logging.DEBUG, logger='cpl'):
        with pytest.raises(cpl.CplError) as info:
            r(raw)
    from conftest import remove_run_dir
    remove_run_dir(info.value)
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert any(rec.name == 'cpl.rtest_error.rtest_error' and
               'rtest_error failed' in rec.getMessage() for rec in errors)
    # formatting with pytest's own format (uses %(lineno)d) works
    assert 'rtest_error failed' in caplog.text


def test_warnings_and_debug_levels(raw, collected):
    r = cpl.Recipe('rtest_biglog')
    r.tag = 'RAW'
    res = r(raw, param={'lines': 3})
    warning = [rec for rec in collected if rec.levelno == logging.WARNING]
    assert [(rec.name, rec.getMessage()) for rec in warning] == [
        ('cpl.rtest_biglog.rtest_biglog', 'biglog warning')]
    debug = [rec for rec in collected if rec.levelno == logging.DEBUG]
    assert any(rec.getMessage() == 'biglog debug' for rec in debug)
    assert res.log.warning == ['rtest_biglog: biglog warning']
    assert 'rtest_biglog: biglog debug' in res.log.debug
    assert 'rtest_biglog: biglog debug' not in res.log.info


def test_logname_keyword(raw, collected):
    handler = Collect()
    other = logging.getLogger('myapp')
    other.addHandler(handler)
    other.setLevel(logging.DEBUG)
    try:
        res = cpl.Recipe('rtest_copy')(raw, logname='myapp.copy')
    finally:
        other.removeHandler(handler)
    assert any(rec.name == 'myapp.copy.rtest_save' for rec in handler.records)
    assert not any(rec.name.startswith('cpl.rtest_copy')
                   for rec in collected)
    assert all(rec.name.startswith('myapp.copy.') for rec in res.log)


def test_loglevel_keyword(raw):
    r = cpl.Recipe('rtest_biglog')
    r.tag = 'RAW'
    res = r(raw, param={'lines': 10}, loglevel=logging.WARNING)
    cpl_records = [rec for rec in res.log if not rec.name.endswith('.output')]
    assert [rec.getMessage() for rec in cpl_records] == ['biglog warning']
    res = r(raw, param={'lines': 10}, loglevel=logging.INFO)
    assert 'rtest_biglog: biglog debug' not in res.log.debug
    assert len(res.log.info) >= 10


def test_messages_arrive_while_the_recipe_runs(raw, collected):
    r = cpl.Recipe('rtest_hang')
    r.tag = 'RAW'
    t = r(raw, threaded=True)
    try:
        assert wait_until(lambda: any(rec.getMessage() == 'hanging'
                                      for rec in collected), 10)
        assert t.running()
    finally:
        t.cancel()


def test_big_log(raw, capfd, collected):
    r = cpl.Recipe('rtest_biglog')
    r.tag = 'RAW'
    start = time.monotonic()
    res = r(raw, param={'lines': 20000})
    assert time.monotonic() - start < 30
    assert 'BIGLOG_PRODUCT' in res
    lines = [m for m in res.log.info if m.startswith('rtest_biglog: line ')]
    assert len(lines) == 20000
    assert lines[0] == 'rtest_biglog: line 000000 ' + \
        ('abcdefghijklmnopqrstuvwxyz' * 4)[:88]
    assert lines[-1].startswith('rtest_biglog: line 019999 ')
    assert len(res.log.info) >= 20000
    # what the recipe printed itself is in the log, not on the terminal
    messages = [rec.getMessage() for rec in res.log]
    assert 'stdout line 5' in messages and 'stdout line 99' in messages
    assert 'stderr line 5' in messages and 'stderr line 99' in messages
    output = [rec for rec in res.log if rec.getMessage() == 'stdout line 5']
    assert output[0].name == 'cpl.rtest_biglog.output'
    assert any(rec.getMessage() == 'stdout line 5' for rec in collected)
    out, err = capfd.readouterr()
    assert out == '' and err == ''


@pytest.mark.parametrize('loglevel', ['INFO', b'20', True, [20]])
def test_a_loglevel_that_is_no_level_is_refused_up_front(raw, loglevel,
                                                         no_new_run_dirs):
    # python-cpl refused these with a ValueError before running
    r = cpl.Recipe('rtest_biglog')
    with pytest.raises(ValueError, match='rtest_biglog.*loglevel.*%s'
                       % re.escape(repr(loglevel))):
        r(raw, tag='RAW', loglevel=loglevel)


def test_loglevel_above_info_drops_printed_lines_too(raw, collected):
    """What a recipe prints counts as INFO: loglevel=ERROR keeps it out
    of the log and of logging, as python-cpl does."""
    r = cpl.Recipe('rtest_biglog')
    r.tag = 'RAW'
    res = r(raw, param={'lines': 3}, loglevel=logging.ERROR)
    assert 'BIGLOG_PRODUCT' in res
    assert not [rec for rec in res.log if rec.name.endswith('.output')]
    assert not [rec for rec in collected if rec.name.endswith('.output')]
    full = r(raw, param={'lines': 3})
    assert [rec for rec in full.log if rec.name.endswith('.output')]
    assert [rec for rec in collected if rec.name.endswith('.output')]


def test_crashing_recipe_prints_nothing_on_the_terminal(raw, capfd):
    r = cpl.Recipe('rtest_crash')
    r.tag = 'RAW'
    r.env['CPLRUN_GDB'] = ''
    r.param.mode = 'doublefree'
    with pytest.raises(cpl.RecipeCrash) as info:
        r(raw)
    from conftest import remove_run_dir
    remove_run_dir(info.value)
    out, err = capfd.readouterr()
    assert out == '' and err == ''


def test_loglist_properties():
    def record(level, func, msg):
        rec = logging.LogRecord('cpl.x.' + func, level, None, 0, msg, None,
                                None, func)
        return rec
    log = LogList([record(logging.DEBUG, 'f', 'dbg'),
                   record(logging.INFO, 'g', 'inf'),
                   record(logging.WARNING, 'h', 'warn'),
                   record(logging.ERROR, 'k', 'err')])
    assert log.debug == ['f: dbg', 'g: inf', 'h: warn', 'k: err']
    assert log.info == ['g: inf', 'h: warn', 'k: err']
    assert log.warning == ['h: warn', 'k: err']
    assert log.error == ['k: err']


def test_log_reader_parses_cpl_lines(tmp_path):
    path = tmp_path / 'log'
    reader = LogReader(str(path), 'cpl.demo')
    reader.poll()                       # no file yet: nothing, no error
    assert reader.entries == []
    with open(str(path), 'w') as f:
        f.write('\nStart time     : 2024\nProgram name   : x\n\n'
                '10:11:12 [ INFO  ] func_a: [tid=000] first message\n'
                '10:11:13 [WARNING] func_b: [tid=003] second\n'
                '   continued line\n'
                '10:11:14 [ ERROR ] func_c: third without ')
    reader.poll()
    assert [r.getMessage() for r in reader.entries] == [
        'first message', 'second', '   continued line']
    assert reader.entries[1].threadName == 'Cpl-003'
    assert reader.entries[2].levelno == logging.WARNING   # continuation
    with open(str(path), 'a') as f:
        f.write('newline\n10:11:15 [ DEBUG ] func_d: last, no newline')
    reader.poll()
    assert reader.entries[-1].getMessage() == 'third without newline'
    assert reader.entries[-1].name == 'cpl.demo.func_c'
    reader.close()
    assert reader.entries[-1].getMessage() == 'last, no newline'
    assert reader.entries[-1].levelno == logging.DEBUG
    assert reader.last_message == 'last, no newline'


def test_runner_loglevel():
    assert runner_loglevel(None) == 'debug'
    assert runner_loglevel(logging.DEBUG) == 'debug'
    assert runner_loglevel(logging.INFO) == 'info'
    assert runner_loglevel(logging.WARNING) == 'warning'
    assert runner_loglevel(logging.ERROR) == 'error'
    assert runner_loglevel(logging.CRITICAL + 1) == 'off'


#: rtest_biglog lines for the memory test: a 19 MB log, of which the old
#: code kept 150000 records (about 90 MB of Python objects).
BIG_LOG_LINES = 150000


def test_a_huge_log_costs_bounded_memory(raw, work_tmp):
    r = cpl.Recipe('rtest_biglog')
    r.tag = 'RAW'
    tracemalloc.start()
    try:
        res = r(raw, param={'lines': BIG_LOG_LINES})
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 40 << 20 and peak < 60 << 20, (held, peak)
    kept = logger.LOG_HEAD_RECORDS + logger.LOG_TAIL_RECORDS
    assert len(res.log) == kept + 1
    assert res.log.omitted >= BIG_LOG_LINES + 202 - kept      # + output
    # the first and the last lines are there, and a note between them
    assert res.log[0].getMessage().startswith('line 000000 ')
    assert res.log.info[-1] == 'output: stderr line 99'
    note = res.log[logger.LOG_HEAD_RECORDS]
    assert note.levelno == logging.WARNING and note.funcName == 'cplrun'
    assert '%d log lines are left out' % res.log.omitted in note.getMessage()
    assert res.log.file in note.getMessage()
    assert 'cplrun: %s' % note.getMessage() in res.log.warning
    # the whole log is in the file, as long as the result lives
    with open(res.log.file, 'rb') as f:
        text = f.read()
    assert len(re.findall(rb'\] rtest_biglog: .*line \d{6} ', text)) == \
        BIG_LOG_LINES
    assert text.endswith(b'stderr line 99\n')
    path = res.log.file
    assert os.path.dirname(path) == work_tmp
    del res, f
    gc.collect()
    assert not os.path.exists(path)


def long_log(path, lines):
    with open(path, 'w') as f:
        for i in range(lines):
            f.write('10:11:12 [ INFO  ] f: line %d\n' % i)


def test_a_whole_copy_of_the_log_is_named_and_no_other_is_made(tmp_path):
    """A workflow's log copy (RunSpec.log_copy) is the whole log already."""
    kept = logger.LOG_HEAD_RECORDS + logger.LOG_TAIL_RECORDS
    log, copy = str(tmp_path / 'log'), str(tmp_path / 'copy')
    long_log(log, kept + 5)
    shutil.copyfile(log, copy)
    reader = LogReader(log, 'cpl.demo')
    reader.close()
    entries = reader.entries_outliving(copy, str(tmp_path))
    assert entries.omitted == 5 and entries.file == copy
    assert sorted(os.listdir(str(tmp_path))) == ['copy', 'log']
    # a partial copy (a full disk) is not the whole log: a file is made
    with open(copy, 'r+b') as f:
        f.truncate(100)
    entries = reader.entries_outliving(copy, str(tmp_path))
    assert entries.file not in (copy, log)
    assert os.path.getsize(entries.file) == os.path.getsize(log)
    assert entries.file in entries[logger.LOG_HEAD_RECORDS].getMessage()


def test_long_lines_are_cut_in_memory_not_in_the_file(tmp_path):
    path = tmp_path / 'log'
    line = 'x' * (3 * logger.MAX_LINE_BYTES)
    with open(str(path), 'w') as f:
        f.write('10:11:12 [ INFO  ] f: short\n')
        f.write('10:11:12 [ INFO  ] f: %s\n' % line)
        f.write('10:11:12 [ INFO  ] f: after\n10:11:12 [ INFO  ] f: %s' % line)
    reader = LogReader(str(path), 'cpl.demo')
    reader.close()
    entries = reader.entries
    messages = [r.getMessage() for r in entries]
    assert messages[0] == 'short' and messages[2] == 'after'
    assert entries.cut == 2 and entries.omitted == 0
    assert all(len(m) < logger.MAX_LINE_BYTES + 50 for m in messages)
    assert messages[1].endswith('[cut at %d bytes]' % logger.MAX_LINE_BYTES)
    assert entries.file == str(path) and str(path) in messages[-1]


KEPT_LOG_SCRIPT = r'''
import os, sys
import cpl
from cpl import logger
logger.LOG_HEAD_RECORDS = logger.LOG_TAIL_RECORDS = 5
cpl.Recipe.path = [sys.argv[1]]
res = cpl.Recipe('rtest_biglog')(sys.argv[2], tag='RAW', param={'lines': 100})
assert res.log.omitted > 0, res.log
pid = os.fork()
if pid == 0:
    sys.exit(0)         # the child's exit leaves its parent's file
os.waitpid(pid, 0)
assert os.path.isfile(res.log.file)
print(res.log.file)
'''


def test_a_kept_whole_log_goes_at_exit_not_at_a_childs(recipe_dir, raw,
                                                       tmp_path):
    proc = subprocess.run(
        [sys.executable, '-c', KEPT_LOG_SCRIPT, recipe_dir, raw],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
        env=dict(os.environ, TMPDIR=str(tmp_path)))
    out = proc.stdout.decode(errors='replace')
    assert proc.returncode == 0, out
    path = out.splitlines()[-1]
    assert os.path.dirname(path) == str(tmp_path)
    assert not os.path.exists(path)
    assert os.listdir(str(tmp_path)) == []
