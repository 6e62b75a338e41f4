"""The offset guard: rewind once to the learned mark, drop stale messages meanwhile, give up
when the mark's messages are gone."""

from __future__ import annotations

from agents.offsets import OffsetGuard, mark_key


def test_nothing_learned_yet_or_repeats_are_processed() -> None:
    guard = OffsetGuard()
    assert guard.plan("p", [500, 501], None, now=0.0) == ("process", 0)
    assert guard.plan("p", [10, 11], 11, now=0.0) == ("process", 0)
    assert guard.plan("p", [11], 11, now=0.0) == ("process", 0)


def test_a_gap_rewinds_once_then_drops_until_the_mark_arrives() -> None:
    guard = OffsetGuard(retry_s=30.0)
    assert guard.plan("p", [50, 51], 40, now=0.0) == ("rewind", 2)
    assert guard.plan("p", [52], 40, now=1.0) == ("drop", 1)
    assert guard.plan("q", [7], 3, now=2.0) == ("rewind", 1), "partitions are independent"
    assert guard.plan("p", [60, 61, 40, 41], 40, now=3.0) == ("process", 2)
    assert guard.plan("p", [55], 42, now=4.0) == ("rewind", 1), "a new gap rewinds again"


def test_it_gives_up_when_the_marked_messages_are_gone() -> None:
    guard = OffsetGuard(retry_s=30.0)
    assert guard.plan("p", [50], 40, now=0.0) == ("rewind", 1)
    assert guard.plan("p", [50], 40, now=29.0) == ("drop", 1)
    assert guard.plan("p", [50], 40, now=31.0) == ("process", 0)


def test_a_moved_mark_counts_as_a_new_gap() -> None:
    guard = OffsetGuard()
    assert guard.plan("p", [50], 40, now=0.0) == ("rewind", 1)
    assert guard.plan("p", [60], 45, now=1.0) == ("rewind", 1)


def test_mark_keys_name_topic_and_partition() -> None:
    assert mark_key("staging.vm.metrics", 3) == b"staging.vm.metrics/3"
