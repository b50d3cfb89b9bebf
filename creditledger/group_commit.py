"""Group commit (issue 11, docs/adr/0021-group-commit.md): the writes that threads of one
process submit at the same time are done together, in one transaction, by one of them.

A thread that submits while no group is being written becomes the leader at once: it writes
its own item in a group of one, with no added wait. Items submitted meanwhile queue; when
the group in flight has committed, the leader takes everything waiting (up to a bound) as the
next group, and keeps leading until its own item is written. Each thread gets its own
item's answer. When a group fails as a whole, each of its items is written again alone by
its own thread, so that one bad item only fails itself; a group of one hands its failure to
its thread as it is.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from creditledger import metrics

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
AnswerT = TypeVar("AnswerT")


class _Submission(Generic[ItemT, AnswerT]):
    """One thread's item, waiting for its answer."""

    def __init__(self, item: ItemT) -> None:
        self.item = item
        self.done = False
        self.answer: AnswerT | None = None
        #: Raised to the submitting thread: its group of one failed with it.
        self.failure: BaseException | None = None
        #: Its group failed as a whole: the submitting thread writes it again alone.
        self.alone = False


class GroupCommit(Generic[ItemT, AnswerT]):
    """Submit items from any thread; each group of them is written by `write_group` (one
    transaction: one answer per item, in order), and an item of a failed group by
    `write_alone`. `max_group()` bounds a group, read at each group."""

    def __init__(
        self,
        *,
        name: str,
        write_group: Callable[[list[ItemT]], list[AnswerT]],
        write_alone: Callable[[ItemT], AnswerT],
        max_group: Callable[[], int],
    ) -> None:
        self.name = name
        self._write_group = write_group
        self._write_alone = write_alone
        self._max_group = max_group
        self._changed = threading.Condition()
        self._waiting: deque[_Submission[ItemT, AnswerT]] = deque()
        self._leading = False

    def submit(self, item: ItemT) -> AnswerT:
        """Write `item` in the next group and return its answer (or raise what it raised)."""
        submission: _Submission[ItemT, AnswerT] = _Submission(item)
        with self._changed:
            self._waiting.append(submission)
            while self._leading and not submission.done:
                self._changed.wait()
            lead = not submission.done
            if lead:
                self._leading = True
        if lead:
            self._lead_until_done(submission)
        if submission.failure is not None:
            raise submission.failure
        if submission.alone:
            return self._write_alone(item)
        return submission.answer  # type: ignore[return-value]  # set with done

    def waiting(self) -> int:
        """How many items wait for the next group."""
        with self._changed:
            return len(self._waiting)

    def _lead_until_done(self, own: _Submission[ItemT, AnswerT]) -> None:
        try:
            while not own.done:
                with self._changed:
                    size = min(len(self._waiting), max(1, self._max_group()))
                    group = [self._waiting.popleft() for _ in range(size)]
                self._write(group)
        finally:
            with self._changed:
                self._leading = False
                self._changed.notify_all()

    def _write(self, group: list[_Submission[ItemT, AnswerT]]) -> None:
        metrics.GROUP_COMMIT_SIZE.labels(writer=self.name).observe(len(group))
        try:
            answers = self._write_group([submission.item for submission in group])
            for submission, answer in zip(group, answers, strict=True):
                submission.answer = answer
                submission.done = True
        except Exception as exc:  # noqa: BLE001 - handed to its thread, or each item is written alone
            if len(group) == 1:
                group[0].failure = exc
                group[0].done = True
            else:
                logger.warning("%s: a group of %d failed (%r); each item is written alone", self.name, len(group), exc)
        finally:
            with self._changed:
                for submission in group:
                    if not submission.done:
                        submission.alone = submission.done = True
                self._changed.notify_all()
