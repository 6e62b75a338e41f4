"""The learned-offset marks: which offsets were committed but never learned."""

from __future__ import annotations

from agents.offsets import mark_key, missing


def test_only_offsets_beyond_the_mark_are_missing() -> None:
    assert missing(50, 40) == range(40, 50)
    assert missing(40, 40) is None
    assert missing(10, 40) is None
    assert missing(0, None) is None


def test_mark_keys_name_topic_and_partition() -> None:
    assert mark_key("staging.vm.metrics", 3) == b"staging.vm.metrics/3"
