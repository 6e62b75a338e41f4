"""River's half-space trees as a few flat arrays, for a VM state that pickles fast.

A VM's :class:`river.anomaly.HalfSpaceTrees` is a few hundred node objects; pickling them one
by one was most of the cost of writing a VM's state. :func:`pack` keeps each tree as arrays in
pre-order (split feature, threshold, left and right mass per node) and :func:`unpack` builds
the same trees again, so a detector restored from a state scores and learns exactly as the one
that was stored.

>>> from river import anomaly
>>> hst = anomaly.HalfSpaceTrees(n_trees=2, height=3, window_size=5, seed=1)
>>> for i in range(12):
...     hst.learn_one({"a": (i % 5) / 5, "b": 0.5})
>>> again = unpack(pack(hst))
>>> again.score_one({"a": 0.9, "b": 0.1}) == hst.score_one({"a": 0.9, "b": 0.1})
True
"""

from __future__ import annotations

import copy
import functools
import random
from array import array
from typing import Any, cast

from river import anomaly
from river.tree.padded import PaddedBranch, PaddedLeaf

#: Format of :func:`pack`'s tuples.
VERSION = 1
#: Trees as River builds them, unlearned, per (settings, feature names): see build_like.
_BUILT: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def pack(hst: anomaly.HalfSpaceTrees) -> tuple[Any, ...]:
    """``hst`` (built) as plain values: its settings and counters, then per tree the nodes'
    split features (indexes into the feature names), thresholds and masses in pre-order.

    The random generator is left out: it only draws the trees, which are built already. The
    splits never change once drawn, so they are encoded once per trees object.
    """
    attrs = {k: v for k, v in hst.__dict__.items() if k not in _NOT_ATTRS}
    structure = hst.__dict__.get("_packed_structure")
    if structure is None:
        structure = hst.__dict__["_packed_structure"] = _structure(hst)
    names, splits = structure
    trees = [(features, thresholds,
              array("q", [n.l_mass for n in nodes]).tobytes(),
              array("q", [n.r_mass for n in nodes]).tobytes())
             for (features, thresholds), nodes in zip(splits, hst._tree_nodes, strict=True)]
    return (VERSION, attrs, names, trees)


_NOT_ATTRS = ("trees", "_tree_nodes", "rng", "_packed_structure")


def _structure(hst: anomaly.HalfSpaceTrees) -> tuple[list[Any], list[tuple[bytes, bytes]]]:
    """The feature names, and per tree its splits' feature indexes and thresholds."""
    names = sorted({n.feature for nodes in hst._tree_nodes for n in nodes
                    if isinstance(n, PaddedBranch)})
    index = {name: i for i, name in enumerate(names)}
    splits = []
    for nodes in hst._tree_nodes:  # each tree's nodes in pre-order (River's iter_dfs)
        branches = [n for n in nodes if isinstance(n, PaddedBranch)]
        splits.append((array("h", [index[n.feature] for n in branches]).tobytes(),
                       array("d", [n.threshold for n in branches]).tobytes()))
    return names, splits


def unpack(packed: tuple[Any, ...]) -> anomaly.HalfSpaceTrees:
    """The trees :func:`pack` was given."""
    version, attrs, names, trees = packed
    if version != VERSION:
        raise ValueError(f"unknown half-space trees format {version}")
    hst = anomaly.HalfSpaceTrees.__new__(anomaly.HalfSpaceTrees)
    hst.__dict__.update(attrs)
    hst.rng = random.Random(hst.seed)  # never drawn from again: the trees are built
    _set_trees(hst, names, trees)
    return hst


def _set_trees(hst: anomaly.HalfSpaceTrees, names: list[Any], trees: list[Any]) -> None:
    """Give ``hst`` the trees of :func:`pack`'s ``names`` and ``trees``."""
    hst._tree_nodes = [_build(hst.height, f, t, lm, rm, names) for f, t, lm, rm in trees]
    hst.trees = [cast(PaddedBranch, nodes[0]) for nodes in hst._tree_nodes]
    hst.__dict__["_packed_structure"] = (names, [(f, t) for f, t, _, _ in trees])


@functools.cache
def _children(height: int) -> tuple[tuple[int, int] | None, ...]:
    """Per node of a full tree of ``height``, in pre-order: the pre-order indexes of its left
    and right child, or None for a leaf."""
    out: list[tuple[int, int] | None] = []

    def visit(depth: int) -> int:
        i = len(out)
        out.append(None)
        if depth < height:
            left = visit(depth + 1)
            out[i] = (left, visit(depth + 1))
        return i

    visit(0)
    return tuple(out)


def _build(height: int, features_b: bytes, thresholds_b: bytes, l_b: bytes, r_b: bytes,
           names: list[Any]) -> list[PaddedBranch | PaddedLeaf]:
    """One tree's nodes in pre-order (the root first), as River's ``iter_dfs`` lists them.

    Built from the last node back, so that both children of a branch exist before it. Each
    node gets the attributes River's constructors give it, set directly: going through their
    chain of ``__init__`` calls was most of the cost of a new VM (a unit test checks the
    nodes against River's)."""
    features, thresholds = array("h"), array("d")
    l_mass, r_mass = array("q"), array("q")
    features.frombytes(features_b)
    thresholds.frombytes(thresholds_b)
    l_mass.frombytes(l_b)
    r_mass.frombytes(r_b)
    children = _children(height)
    nodes: list[Any] = [None] * len(children)
    b = len(features)  # the branches' splits are in pre-order too: counted down likewise
    for i in range(len(children) - 1, -1, -1):
        kids = children[i]
        node: PaddedBranch | PaddedLeaf
        if kids is None:  # PaddedLeaf(r_mass=..., l_mass=...)
            node = _new(PaddedLeaf)
            node.__dict__ = {"r_mass": r_mass[i], "l_mass": l_mass[i]}
        else:  # PaddedBranch(left, right, feature, threshold, l_mass, r_mass)
            b -= 1
            node = _new(PaddedBranch)
            node.__dict__ = {"children": (nodes[kids[0]], nodes[kids[1]]),
                             "feature": names[features[b]], "threshold": thresholds[b],
                             "l_mass": l_mass[i], "r_mass": r_mass[i]}
        nodes[i] = node
    return nodes


_new = object.__new__


def build_like(hst: anomaly.HalfSpaceTrees, x: dict[str, float]) -> None:
    """Give ``hst`` (not built yet) the trees River builds on its first sample ``x``, copied
    from trees built once for the same settings and features: drawing a VM's few hundred
    random splits was most of the cost of a new VM, and with a fixed seed they are the same
    for every VM. Without a seed (trees differ per detector) River builds them as usual."""
    if hst.trees or hst.seed is None:
        return
    key = (hst.n_trees, hst.height, hst.window_size, hst.seed, tuple(sorted(x)),
           tuple(sorted(hst.limits.items())))
    packed = _BUILT.get(key)
    if packed is None:
        template = copy.deepcopy(hst)
        template.learn_one(x)  # River draws the trees, then learns x: undo the learning
        for nodes in template._tree_nodes:
            for node in nodes:
                node.l_mass = node.r_mass = 0
        template.counter = 0
        packed = _BUILT[key] = pack(template)
    _, _, names, trees = packed
    _set_trees(hst, names, trees)
