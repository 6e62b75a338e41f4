"""Input offsets the worker has learned from, kept with the learned state.

Faust commits an input offset once every message below it is acknowledged, but it also
acknowledges messages it skips across a rebalance (fetched under the previous generation),
so a committed offset can run ahead of what any worker learned: a worker killed then leaves
messages nobody will read again. And a VM's state is written some time after it learned
(``NOVACRON_STATE_FLUSH_S``), so committed input can be ahead of the written states too. The
agents therefore keep, per input partition and in a changelogged table next to the VM states,
the offset before which every message's learned state is written (the *mark*: the offset of
the first message whose state is unwritten, or after the last one learned). A worker taking a
partition over restores the mark with the tables; when the first message it is given lies
beyond the mark, :func:`missing` names the offsets in between, which the agent reads from
Kafka itself and learns before the batch (VMs whose state was written later recognise those
samples as already learned).

>>> missing(first_offset=120, mark=100)    # 100..119 were committed, never learned
range(100, 120)
>>> missing(first_offset=90, mark=130) is None    # repeats: recognised as already learned
True
>>> missing(first_offset=5, mark=None) is None    # nothing learned yet from this partition
True
"""

from __future__ import annotations


def mark_key(topic: str, partition: int) -> bytes:
    """The ``input-offsets`` key of an input partition."""
    return f"{topic}/{partition}".encode()


def missing(first_offset: int, mark: int | None) -> range | None:
    """The offsets between the learned ``mark`` and the first offset given, if any."""
    if mark is None or first_offset <= mark:
        return None
    return range(mark, first_offset)
