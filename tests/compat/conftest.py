"""Fixtures of the differential suite (see harness.py).

* ``compat_config``: what every scenario gets (as ``outcome.config``): the
  compiled test recipes' folder, small FITS inputs, the folder of each
  installed pipeline (UVES, NACO, MUSE), and a tiny synthetic data set
  made with :func:`cpl.synthetic.make_dataset` (its steps as dicts).
* ``scenario``: ``scenario(name, intended=None)`` runs
  ``scenarios/<name>.py`` under python-cpl and under cplrun in the test's
  folder and fails with the differences.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

import cpl
from cpl import synthetic
from conftest import SYSTEM_PATH, write_image

from . import harness

PIPELINE_RECIPES = {'muse': 'muse_bias', 'uves': 'uves_cal_mbias',
                    'naco': 'naco_img_dark'}


def _pipeline_dirs() -> dict:
    """instrument -> the folder of its recipe libraries (python-cpl loads
    every library of its path on each Recipe(): one pipeline's folder
    keeps that short)."""
    saved = cpl.Recipe.path
    cpl.Recipe.path = SYSTEM_PATH
    try:
        found = {}
        for instrument, recipe in PIPELINE_RECIPES.items():
            library = cpl.Recipe.get_recipefilename(recipe)
            if library is None:
                pytest.fail('recipe %s not found in %s: install Debian\'s '
                            'cpl-plugin-%s' % (recipe, SYSTEM_PATH,
                                               instrument))
            found[instrument] = os.path.dirname(library)
        return found
    finally:
        cpl.Recipe.path = saved


@pytest.fixture(scope='session')
def compat_config(recipe_dir, fits_dir, tmp_path_factory) -> dict:
    missing = harness.python_cpl_missing()
    if missing:
        pytest.fail(missing)
    folder = str(tmp_path_factory.mktemp('compat-inputs'))
    images = [write_image(os.path.join(folder, 'img%d.fits' % i),
                          np.full((3, 3), float(i), dtype=np.float32),
                          OBJECT='img%d' % i) for i in range(4)]
    calib = write_image(os.path.join(folder, 'calib.fits'),
                        np.zeros((2, 2), np.float32), OBJECT='calib')
    steps = synthetic.make_dataset(os.path.join(folder, 'data'), 'tiny',
                                   'muse,uves,naco')
    return {'recipe_dir': recipe_dir, 'images': images, 'calib': calib,
            'pipeline_dirs': _pipeline_dirs(),
            'steps': {s.name: dataclasses.asdict(s) for s in steps},
            'work': folder}


@pytest.fixture
def scenario(compat_config, tmp_path):
    def run(name: str, intended: dict | None = None) -> tuple[dict, dict]:
        theirs, ours = harness.run_both(name, compat_config, str(tmp_path))
        harness.compare(theirs, ours, intended)
        return theirs, ours
    return run
