"""Short soaks in processes of their own.

* ``test_short_soak`` (bench/soak.py --runs 300 --real 30): succeeding,
  failing, crashing and timing-out test recipes 4 at once, with real
  NACO/UVES runs.
* ``test_soak_mix``: each of the soak's mixes of ordinary use alone, once
  (bench/soak_mixes.py): forked children calling recipes, more
  environments at once than the pool keeps servers, reruns into used
  output folders, scripts interrupted by SIGINT in the middle of a batch.

The full soak (2,000 + 200 runs, with every mix after each of its 20
rounds) is ``python bench/soak.py``."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


def soak(tmp_path, *args, timeout):
    """The figures and the output of bench/soak.py run with args."""
    figures_file = tmp_path / 'soak.json'
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, 'bench', 'soak.py'), *args,
         '--json', str(figures_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    output = proc.stdout.decode(errors='replace')
    assert figures_file.exists(), output
    return json.loads(figures_file.read_text()), output, proc.returncode


def assert_nothing_wrong(figures, output, returncode):
    wrong = {k: n for k, n in figures['expected_vs_got'].items()
             if k.split('->')[0] != k.split('->')[1]}
    assert wrong == {}, output
    assert figures['products_lost'] == 0, output
    assert figures['processes_left'] == 0, output
    assert figures['temp_left'] == 0, output
    assert figures['rss_growth_mb'] < 20, output
    # only a runner started by a later batch (another environment) may
    # add descriptors: its two pipes
    assert figures['fds_end'] - figures['fds_first'] == 2 * (
        figures['servers_end'] - figures['servers_first']), output
    assert figures['fds_start'] == figures['fds_closed'], output
    assert returncode == 0, output


def test_short_soak(tmp_path):
    figures, output, returncode = soak(
        tmp_path, '--runs', '300', '--real', '30', '--minutes', '3',
        '--mixes', '', timeout=110)
    assert figures['test_runs'] == 300 and figures['real_runs'] == 30, output
    assert set(figures['expected_vs_got']) >= {
        'success->success', 'failed->failed', 'crashed->crashed',
        'timeout->timeout'}, output
    assert_nothing_wrong(figures, output, returncode)


#: each mix's outcomes (see bench/soak_mixes.py) and the kinds it tallies
MIXES = {
    'fork': ({'success'}, {'fork_parent', 'fork_child', 'fork_pool'}),
    'envs': ({'success'}, {'env_call', 'env_workflow'}),
    'rerun': ({'success', 'failed'},
              {'rerun_call', 'rerun_overlap', 'rerun_workflow'}),
    'sigint': ({'success', 'interrupted', 'cached'},
               {'sigint_workflow', 'sigint_call', 'sigint_rerun'}),
}


@pytest.mark.parametrize('mix', sorted(MIXES))
def test_soak_mix(tmp_path, mix):
    figures, output, returncode = soak(
        tmp_path, '--runs', '0', '--real', '0', '--mixes', mix, timeout=100)
    outcomes, kinds = MIXES[mix]
    assert figures['mixes'] == [mix], output
    assert set(figures['by_kind']) == kinds, output
    assert {k.split('->')[0] for k in figures['expected_vs_got']} == \
        outcomes, output
    assert_nothing_wrong(figures, output, returncode)
