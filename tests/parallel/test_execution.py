"""The state machine of a workflow's run statuses (cpl.parallel._execution):
the moves TRANSITIONS names are the only ones move() makes."""
import pytest

from cpl.parallel import STATUSES, RunRecord
from cpl.parallel._execution import TRANSITIONS, move


def test_every_status_of_a_report_is_reached_from_pending():
    reached, todo = set(), ['pending']
    while todo:
        for status in TRANSITIONS.get(todo.pop(), ()):
            if status not in reached:
                reached.add(status)
                todo.append(status)
    assert reached - {'running'} == set(STATUSES)


def test_a_crashed_run_alone_runs_again():
    assert [s for s, moves in TRANSITIONS.items() if 'running' in moves] \
        == ['pending', 'crashed']


def test_move_follows_the_transitions():
    record = RunRecord('bias', 'rtest_copy')
    for status in ('running', 'crashed', 'running', 'success'):
        move(record, status)
        assert record.status == status


@pytest.mark.parametrize('start, status', [
    ('success', 'running'), ('pending', 'success'), ('cached', 'skipped'),
    ('running', 'pending'), ('cancelled', 'running')])
def test_move_refuses_another_move(start, status):
    record = RunRecord('bias', 'rtest_copy', status=start)
    with pytest.raises(RuntimeError, match='run bias cannot go from %s to %s'
                       % (start, status)):
        move(record, status)
    assert record.status == start
