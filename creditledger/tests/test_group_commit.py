"""The group commit queue alone (creditledger/group_commit.py), with writers that record their
groups: no database. The ledger's use of it is tested in apps/ledger/tests/test_group_commit.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from creditledger.group_commit import GroupCommit


class Recorder:
    """A writer that records each group and each item written alone, and answers `item * 10`;
    the first group waits for `release` when `hold_first` is set."""

    def __init__(self, *, hold_first: bool = False, fail_groups: bool = False) -> None:
        self.groups: list[list[int]] = []
        self.alone: list[int] = []
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.fail_groups = fail_groups

    def write_group(self, items: list[int]) -> list[int]:
        self.groups.append(list(items))
        if len(self.groups) == 1:
            assert self.release.wait(10)
        if self.fail_groups and len(items) > 1:
            raise RuntimeError("the group's transaction failed")
        if -1 in items:
            raise ValueError("a bad item")
        return [item * 10 for item in items]

    def write_alone(self, item: int) -> int:
        self.alone.append(item)
        if item == -1:
            raise ValueError("a bad item")
        return item * 10


def group_commit(recorder: Recorder, *, max_group: int = 100) -> GroupCommit[int, int]:
    return GroupCommit(
        name="test", write_group=recorder.write_group, write_alone=recorder.write_alone, max_group=lambda: max_group
    )


def submit_in_threads(queue: GroupCommit[int, int], items: list[int]) -> tuple[list[threading.Thread], dict]:
    answers: dict[int, object] = {}

    def submit(item: int) -> None:
        try:
            answers[item] = queue.submit(item)
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            answers[item] = exc

    threads = [threading.Thread(target=submit, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return threads, answers


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def joined(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "a submitter hung"


def test_a_lone_item_is_written_at_once_in_a_group_of_one():
    recorder = Recorder()
    queue = group_commit(recorder)

    assert queue.submit(7) == 70
    assert queue.submit(8) == 80
    assert recorder.groups == [[7], [8]]


def test_items_submitted_while_a_group_is_written_form_the_next_group():
    recorder = Recorder(hold_first=True)
    queue = group_commit(recorder)
    leader, answers = submit_in_threads(queue, [0])
    wait_for(lambda: len(recorder.groups) == 1)
    followers, more_answers = submit_in_threads(queue, list(range(1, 21)))
    wait_for(lambda: queue.waiting() == 20)

    recorder.release.set()
    joined(leader + followers)

    assert recorder.groups[0] == [0]
    assert sorted(recorder.groups[1]) == list(range(1, 21))
    assert len(recorder.groups) == 2
    assert {**answers, **more_answers} == {item: item * 10 for item in range(21)}


def test_a_group_never_exceeds_the_bound():
    recorder = Recorder(hold_first=True)
    queue = group_commit(recorder, max_group=4)
    leader, _ = submit_in_threads(queue, [0])
    wait_for(lambda: len(recorder.groups) == 1)
    followers, answers = submit_in_threads(queue, list(range(1, 11)))
    wait_for(lambda: queue.waiting() == 10)

    recorder.release.set()
    joined(leader + followers)

    assert [len(group) for group in recorder.groups] == [1, 4, 4, 2]
    assert answers == {item: item * 10 for item in range(1, 11)}


def test_when_a_group_fails_each_item_is_written_alone_and_a_bad_one_only_fails_itself():
    recorder = Recorder(hold_first=True, fail_groups=True)
    queue = group_commit(recorder)
    leader, _ = submit_in_threads(queue, [0])
    wait_for(lambda: len(recorder.groups) == 1)
    followers, answers = submit_in_threads(queue, [1, 2, -1, 3])
    wait_for(lambda: queue.waiting() == 4)

    recorder.release.set()
    joined(leader + followers)

    assert sorted(recorder.alone) == [-1, 1, 2, 3]
    assert isinstance(answers.pop(-1), ValueError)
    assert answers == {1: 10, 2: 20, 3: 30}


def test_a_group_of_one_hands_its_failure_to_its_thread_without_writing_it_again():
    recorder = Recorder()
    queue = group_commit(recorder)

    with pytest.raises(ValueError, match="a bad item"):
        queue.submit(-1)
    assert recorder.alone == []
    assert queue.submit(5) == 50  # the queue has a leader again
