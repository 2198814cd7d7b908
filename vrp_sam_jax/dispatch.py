"""Overlap host work with device work: keep one device call in flight."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def one_in_flight(items: Iterable[Item], dispatch: Callable[[Item], Result]
                  ) -> Iterator[tuple[Item, Result]]:
    """(item, dispatch(item)) for each item, in order, one step late: `dispatch(item i + 1)`
    is called before item i is handed back, so an asynchronous device call (a jitted
    function) computes the next item while the caller works on the previous result."""
    pending = None
    for item in items:
        result = dispatch(item)
        if pending is not None:
            yield pending
        pending = (item, result)
    if pending is not None:
        yield pending
