"""The differential suite: each scenario under python-cpl and cplrun,
compared (see harness.py); differences we keep on purpose are listed in
doc/differences.rst and pinned here with both sides' values."""
from __future__ import annotations


def test_recipe_class(scenario):
    # cpl.cpl_versions: python-cpl lists the 23 CPL versions (4.0.0 to
    # 7.1.0) it was built to support, not the one installed (7.2.3);
    # cplrun gives the one its runner is linked with.
    scenario('recipe_class', intended={
        'cpl_versions count': {'python-cpl': 23, 'cplrun': 1},
        'cpl_versions': {
            'python-cpl': {'types': ['str'], 'has the linked one': False},
            'cplrun': {'types': ['str'], 'has the linked one': True}}})
