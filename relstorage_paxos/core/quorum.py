"""Quorum arithmetic for a fixed voting membership.

Kept apart from the protocol so that the one fact every safety argument rests on (any two
majorities intersect) lives in a few lines that are easy to check.
"""

from __future__ import annotations

from collections.abc import Iterable


def majority(members: int) -> int:
    """The size of the smallest majority of ``members`` voters."""
    assert members >= 1, members
    return members // 2 + 1


def has_majority(votes: Iterable[int], members: frozenset[int]) -> bool:
    """True if the distinct voters in ``votes`` that are members form a majority."""
    return len(members.intersection(votes)) >= majority(len(members))


def cannot_reach_majority(rejections: Iterable[int], members: frozenset[int]) -> bool:
    """True if so many members said no that the rest cannot form a majority."""
    return len(members) - len(members.intersection(rejections)) < majority(len(members))
