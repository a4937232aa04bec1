"""Admission control: a bounded number of images in flight and a bounded queue; beyond it, 503.

An image costs its memory while it is decoded, segmented and encoded (a 100-megapixel image
a few GB); without a cap, five concurrent uploads took five times one. A request is *admitted*
when it arrives (before its body is read): it then waits in the queue, holding no decoded
pixels, until one of ``max_in_flight`` slots is free, and runs its decode, inference and
encoding inside the slot. A request that arrives when ``max_in_flight + max_queue`` requests
are admitted already is refused at once with 503 and a ``Retry-After`` header.

Slots are taken in the worker thread that does the work (a :class:`threading.BoundedSemaphore`),
so the limits hold whichever event loop or thread a request arrives on.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from dermseg.serve.upload import UploadError

#: Default number of images decoded, segmented or encoded at the same time.
DEFAULT_MAX_IN_FLIGHT = 2

#: Default number of requests waiting for a slot (their uploads arriving, or received).
DEFAULT_MAX_QUEUE = 8

#: Largest ``max_in_flight + max_queue``: a waiting request holds a worker thread of the
#: server's pool (40 threads), and the rest of the pool must stay free for file responses.
MAX_ADMITTED = 32


class Busy(UploadError):
    """The server is full: answer 503 with ``Retry-After: retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, 503)
        self.retry_after = retry_after


class Admission:
    """Counts admitted requests and hands out in-flight slots; safe to use from several threads.

    Args:
        max_in_flight: images decoded, segmented or encoded at the same time (>= 1).
        max_queue: requests waiting for a slot (>= 0).
        retry_after: seconds a refused client is told to wait (``Retry-After``).

    Raises:
        ValueError: a limit out of range, or ``max_in_flight + max_queue`` above :data:`MAX_ADMITTED`.
    """

    def __init__(
        self,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_queue: int = DEFAULT_MAX_QUEUE,
        retry_after: int = 5,
    ) -> None:
        if max_in_flight < 1 or max_queue < 0 or retry_after < 1:
            raise ValueError(
                f"need max_in_flight >= 1, max_queue >= 0 and retry_after >= 1; got {max_in_flight}, "
                f"{max_queue} and {retry_after}"
            )
        if max_in_flight + max_queue > MAX_ADMITTED:
            raise ValueError(f"max_in_flight + max_queue must be at most {MAX_ADMITTED}")
        self.max_in_flight, self.max_queue, self.retry_after = max_in_flight, max_queue, retry_after
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self.admitted = 0
        self.peak_in_flight = 0
        self._in_flight = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for one request (queued or in flight) for the ``with`` block.

        Raises:
            Busy: ``max_in_flight + max_queue`` requests are admitted already.
        """
        with self._lock:
            if self.admitted >= self.max_in_flight + self.max_queue:
                raise Busy(
                    f"The server is busy ({self.max_in_flight} image(s) in progress, {self.max_queue} "
                    f"waiting); try again in {self.retry_after} s (--max-in-flight, --max-queue).",
                    self.retry_after,
                )
            self.admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self.admitted -= 1

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Wait for an in-flight slot (blocking this thread) and hold it for the ``with`` block."""
        with self._slots:
            with self._lock:
                self._in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self._in_flight -= 1
