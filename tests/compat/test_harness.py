"""The comparison itself: a test of the suite that could pass by
comparing nothing would be worthless."""
from __future__ import annotations

import pytest

from . import harness


def exc(*mro):
    return {'__exception__': mro[0], 'mro': list(mro) + ['Exception',
                                                        'BaseException',
                                                        'object']}


def test_equal_reports_have_no_differences():
    report = {'a': [1, 'x', {'b': None}], 'c': exc('CplError')}
    assert harness.differences(report, report) == []


def test_a_subclass_of_python_cpls_exception_is_accepted():
    assert harness.differences(
        {'e': exc('CplError')},
        {'e': exc('InputFileError', 'CplError', 'FileNotFoundError')}) == []


@pytest.mark.parametrize('ours', [exc('FileNotFoundError', 'OSError'), 3])
def test_another_exception_or_a_value_is_a_difference(ours):
    found = harness.differences({'e': exc('CplError')}, {'e': ours})
    assert len(found) == 1 and found[0].startswith('e: python-cpl raised '
                                                   'CplError')


def test_types_count():
    # 0 and 0.0, True and 1 are equal in Python, not here
    assert harness.differences({'t': 0.0}, {'t': 0}) == \
        ['t: python-cpl 0.0, cplrun 0']
    assert harness.differences([True], [1]) == \
        ['[0]: python-cpl true, cplrun 1']


def test_missing_keys_and_lengths_are_differences():
    assert harness.differences({'a': 1}, {'b': 1}) == [
        'a: only python-cpl has it: 1', 'b: only cplrun has it: 1']
    assert harness.differences({'l': [1, 2]}, {'l': [1]}) == \
        ['l: python-cpl [1, 2], cplrun [1]']


def test_raised_against_returned_is_one_line():
    assert harness.differences(
        {'x': {'raised': exc('KeyError', 'LookupError')}},
        {'x': {'returned': 3.0}}) == \
        ['x: python-cpl raised KeyError (LookupError), cplrun returned 3.0']


def test_texts_are_compared_line_by_line():
    found = harness.differences({'doc': 'a\nb\n'}, {'doc': 'a\nc\n'})
    assert len(found) == 1 and '-b' in found[0] and '+c' in found[0]


def test_intended_differences_are_pinned_on_both_sides():
    theirs = {'dir': '.', 'same': 1, 'nested': {'printed': 0, 'n': 2}}
    ours = {'dir': None, 'same': 1, 'nested': {'printed': 200, 'n': 2}}
    intended = {'dir': {'python-cpl': '.', 'cplrun': None},
                'nested/printed': {'python-cpl': 0, 'cplrun': 200}}
    harness.compare(dict(theirs), dict(ours), intended)
    # a side that changes from its documented value fails the comparison
    with pytest.raises(AssertionError, match='dir: cplrun now gives "x"'):
        harness.compare({'dir': '.'}, {'dir': 'x'},
                        {'dir': intended['dir']})
    with pytest.raises(AssertionError, match='recorded nothing'):
        harness.compare({'dir': '.'}, {}, {'dir': intended['dir']})
