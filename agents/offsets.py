"""Input offsets the worker has learned from, kept with the learned state.

Faust commits an input offset once every message below it is acknowledged, but it also
acknowledges messages it skips across a rebalance (fetched under the previous generation),
so a committed offset can run ahead of what any worker learned: a worker killed then leaves
messages nobody will read again. The agents therefore keep, per input partition and in a
changelogged table next to the VM states, the offset after the last message whose state they
wrote (``mark``). A worker taking a partition over restores the mark with the tables; when the
first message it is given lies beyond the mark, the messages in between were committed but
never learned, and :class:`OffsetGuard` tells the agent to seek back to the mark (messages
already learned are then recognised as repeats and skipped).

>>> guard = OffsetGuard(retry_s=30.0)
>>> guard.plan("p0", [120, 121], mark=100, now=0.0)    # 100..119 were never learned
('rewind', 2)
>>> guard.plan("p0", [122, 123], mark=100, now=1.0)    # stale messages, fetched before
('drop', 2)
>>> guard.plan("p0", [124, 100, 101], mark=100, now=2.0)  # the rewind lands mid-batch
('process', 1)
>>> guard.plan("p0", [90, 91], mark=130, now=3.0)      # repeats are fine
('process', 0)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

Decision = Literal["process", "rewind", "drop"]


def mark_key(topic: str, partition: int) -> bytes:
    """The ``input-offsets`` key of an input partition."""
    return f"{topic}/{partition}".encode()


class OffsetGuard:
    """Per input partition: process, rewind to the mark, or drop until the rewind lands.

    Parameters
    ----------
    retry_s
        How long after a rewind messages beyond the mark are dropped while waiting for the
        re-read ones. If the mark's messages never come (deleted by retention), the guard
        gives up after this long and processes what there is.
    """

    def __init__(self, retry_s: float = 30.0) -> None:
        self.retry_s = retry_s
        #: partition -> (mark rewound to, until when to wait for it)
        self._rewinding: dict[Hashable, tuple[int, float]] = {}

    def plan(self, partition: Hashable, offsets: Sequence[int], mark: int | None,
             now: float) -> tuple[Decision, int]:
        """What to do with a batch's messages of ``partition`` (their ``offsets``, in the
        order received) given the stored ``mark`` (None: nothing learned yet): ``("process",
        i)`` to process them from index ``i`` on, else ``("rewind", n)`` (seek back to the
        mark) or ``("drop", n)``, both processing none of the ``n``. Messages fetched before a
        rewind arrive before the re-read ones, so a batch can hold both: the stale prefix is
        dropped."""
        n = len(offsets)
        if mark is None or not offsets or offsets[0] <= mark:
            self._rewinding.pop(partition, None)
            return "process", 0
        landed = next((i for i, offset in enumerate(offsets) if offset <= mark), None)
        if landed is not None:
            self._rewinding.pop(partition, None)
            return "process", landed
        pending = self._rewinding.get(partition)
        if pending is None or pending[0] != mark:
            self._rewinding[partition] = (mark, now + self.retry_s)
            return "rewind", n
        if now < pending[1]:
            return "drop", n
        del self._rewinding[partition]  # the mark's messages are gone: go on from here
        return "process", 0
