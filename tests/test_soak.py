"""A short soak (bench/soak.py --runs 300 --real 30): succeeding, failing,
crashing and timing-out test recipes 4 at once, with real NACO/UVES runs,
in a process of its own.  The full one (2,000 + 200 runs) is
``python bench/soak.py``."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO


def test_short_soak(tmp_path):
    figures_file = tmp_path / 'soak.json'
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, 'bench', 'soak.py'),
         '--runs', '300', '--real', '30', '--minutes', '3',
         '--json', str(figures_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=110)
    output = proc.stdout.decode(errors='replace')
    figures = json.loads(figures_file.read_text())
    assert figures['test_runs'] == 300 and figures['real_runs'] == 30, output
    wrong = {k: n for k, n in figures['expected_vs_got'].items()
             if k.split('->')[0] != k.split('->')[1]}
    assert wrong == {}, output
    assert set(figures['expected_vs_got']) == {
        'success->success', 'failed->failed', 'crashed->crashed',
        'timeout->timeout'}
    assert figures['products_lost'] == 0, output
    assert figures['processes_left'] == 0, output
    assert figures['temp_left'] == 0, output
    assert figures['rss_growth_mb'] < 20, output
    # only a runner started by a later batch (another environment) may
    # add descriptors: its two pipes
    assert figures['fds_end'] - figures['fds_first'] == 2 * (
        figures['servers_end'] - figures['servers_first']), output
    assert figures['fds_start'] == figures['fds_closed'], output
    assert proc.returncode == 0, output
