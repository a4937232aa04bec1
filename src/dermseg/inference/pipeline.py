"""Overlapping the stages of a folder prediction: reading ahead and writing behind, in order, bounded.

While the network runs on one image, one background thread decodes the next ones
(:class:`ReadAhead`) and another writes the finished ones' files (:class:`WriteBehind`). Both
keep the order of the images and hold at most ``depth`` of them, so memory stays bounded and
the files written are exactly those of the one-at-a-time loop. Decoding (Pillow), the network
(PyTorch, ONNX Runtime) and PNG compression (zlib) release the GIL, so threads overlap them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ReadAhead(Generic[T, R]):
    """``fn(item)`` for each of ``items`` in one background thread, at most ``depth`` items ahead.

    Iterating yields ``(item, future)`` in the order of ``items``; ``future.result()`` is
    ``fn(item)`` or raises what it raised, so the caller handles each item's failure itself.

    Args:
        fn: the work on one item (e.g. decoding an image file).
        items: the items.
        depth: how many items may be done (or in progress) ahead of the consumer, >= 1.

    Raises:
        ValueError: ``depth`` < 1.
    """

    def __init__(self, fn: Callable[[T], R], items: Iterable[T], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._fn, self._items, self._depth = fn, iter(items), depth

    def __iter__(self) -> Iterator[tuple[T, Future[R]]]:
        window: deque[tuple[T, Future[R]]] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dermseg-read") as pool:
            try:
                for item in self._items:
                    window.append((item, pool.submit(self._fn, item)))
                    if len(window) > self._depth:
                        yield window.popleft()
                while window:
                    yield window.popleft()
            finally:  # a consumer that stops early leaves no work queued
                for _, future in window:
                    future.cancel()


class WriteBehind(Generic[T]):
    """Run write jobs in one background thread, in the order submitted, at most ``depth`` pending.

    A job that raises stops the ones after it (they are skipped, as a loop that raised would
    never have run them); :meth:`settle` re-raises its exception in the caller's thread. Use it
    as a context manager: leaving the block waits for the jobs still running and drops the rest.

    Args:
        depth: jobs that may wait or run behind the caller before :meth:`submit` blocks, >= 1.

    Raises:
        ValueError: ``depth`` < 1.
    """

    def __init__(self, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dermseg-write")
        self._pending: deque[tuple[T, Future[Any]]] = deque()
        self._stopped = False

    def __enter__(self) -> WriteBehind[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if self._stopped:
            return None  # an earlier job failed: the caller is about to see its error
        try:
            return fn(*args)
        except BaseException:
            self._stopped = True
            raise

    def submit(self, tag: T, fn: Callable[..., Any], *args: Any) -> list[tuple[T, Any]]:
        """Queue ``fn(*args)``; return the ``(tag, result)`` of the jobs that had to finish first.

        Raises:
            Exception: what an earlier job raised (see :meth:`settle`).
        """
        self._pending.append((tag, self._pool.submit(self._run, fn, args)))
        return self.settle(self._depth)

    def settle(self, keep: int = 0) -> list[tuple[T, Any]]:
        """Wait for the oldest jobs until at most ``keep`` are pending; their ``(tag, result)``.

        Raises:
            Exception: the first failed job's exception (the jobs after it are not run).
        """
        done = []
        while len(self._pending) > keep:
            tag, future = self._pending.popleft()
            done.append((tag, future.result()))
        return done
