"""What one URL may cost img2dataset's downloader: bytes read, and seconds in all.

img2dataset reads each response whole (``urllib``'s ``r.read()``) under a timeout that applies
to each read on its own: an endless body fills memory, and a server that sends a byte every few
seconds holds a download thread as long as it likes. It has no setting for either. Its worker
processes therefore run its own ``Downloader`` with one thing added: before the first shard,
the process installs an ``urllib`` opener (``urllib.request.install_opener``, urllib's own
extension point, which img2dataset's ``urlopen`` calls go through) whose connections stop
reading past ``max_bytes`` or ``seconds`` (status line and headers included). The download
then fails with a one-line reason, recorded by img2dataset like any failed download.

Everything else (fetching, retries, resizing, writing shards) stays img2dataset's own. This
module imports img2dataset: import it only to ingest.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib
import io
import socket
import time
import urllib.request
from typing import Iterator, NamedTuple

from img2dataset.downloader import Downloader

_MAIN = importlib.import_module("img2dataset.main")  # the module: the package's ``main`` attribute is its function


class Limits(NamedTuple):
    """The most bytes one download may read, and the most seconds it may take after connecting."""

    max_bytes: int
    seconds: float


class DownloadTooLarge(ValueError):
    """A response longer than the byte limit."""


class LimitedDownloader(Downloader):
    """img2dataset's ``Downloader`` whose process first puts ``limits`` on every download."""

    def __init__(self, *args, limits: Limits, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits

    def __call__(self, row):
        install(self.limits)  # in the worker process, before its threads download anything
        return super().__call__(row)


@contextlib.contextmanager
def limited_downloads(limits: Limits) -> Iterator[None]:
    """While ``img2dataset.download`` runs, it builds ``LimitedDownloader``s (it looks its
    ``Downloader`` up by name when called, and pickles the instance to its workers)."""
    original = _MAIN.Downloader
    _MAIN.Downloader = functools.partial(LimitedDownloader, limits=limits)
    try:
        yield
    finally:
        _MAIN.Downloader = original


@functools.cache
def install(limits: Limits) -> None:
    """Make every ``urllib.request.urlopen`` of this process read under ``limits`` (once)."""
    urllib.request.install_opener(urllib.request.build_opener(_HTTPHandler(limits), _HTTPSHandler(limits)))


class _Reader(io.RawIOBase):
    """A socket's bytes (its own unbuffered reader, ``raw``), each read under what is left of
    the deadline and of the byte budget."""

    def __init__(self, sock: socket.socket, limits: Limits, timeout: float | None):
        self.sock, self.limits, self.timeout = sock, limits, timeout
        self.raw = sock.makefile("rb", buffering=0)  # the socket stays open while this reads
        self.deadline = time.monotonic() + limits.seconds
        self.left = limits.max_bytes

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()
        super().close()

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"download took over {self.limits.seconds:g} s")
        self.sock.settimeout(remaining if self.timeout is None else min(remaining, self.timeout))
        view = memoryview(buffer)
        try:
            n = self.raw.readinto(view[: min(len(view), self.left + 1)])  # one byte over tells it is over
        except TimeoutError:
            if time.monotonic() >= self.deadline:
                raise TimeoutError(f"download took over {self.limits.seconds:g} s") from None
            raise
        self.left -= n
        if self.left < 0:
            raise DownloadTooLarge(f"response over {self.limits.max_bytes:,} bytes")
        return n


class _Socket:
    """A connected socket whose reading side is a ``_Reader`` (http.client reads through ``makefile``)."""

    def __init__(self, sock: socket.socket, limits: Limits, timeout: float | None):
        self._sock, self._limits, self._timeout = sock, limits, timeout

    def makefile(self, mode: str = "r", *args, **kwargs):
        if "r" not in mode:
            return self._sock.makefile(mode, *args, **kwargs)
        return io.BufferedReader(_Reader(self._sock, self._limits, self._timeout))

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _Limited:
    """An ``http.client`` connection whose socket reads under ``limits``."""

    def __init__(self, *args, limits: Limits, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits

    def connect(self) -> None:
        super().connect()  # TCP (and TLS): bounded by the connection's own timeout
        timeout = None if self.timeout is socket._GLOBAL_DEFAULT_TIMEOUT else self.timeout
        self.sock = _Socket(self.sock, self.limits, timeout)


class _HTTPConnection(_Limited, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Limited, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, limits: Limits):
        super().__init__()
        self.limits = limits

    def http_open(self, req):
        return self.do_open(_HTTPConnection, req, limits=self.limits)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, limits: Limits):
        super().__init__()
        self.limits = limits

    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self._context, limits=self.limits)
