"""What one sample may cost to read and decode, so a hostile shard cannot exhaust memory.

Set by environment variables, so DataLoader workers, torchrun ranks and batch jobs all see the
same values without a flag threaded through every call:

``JESTFILTER_MAX_SAMPLE_BYTES`` (default 64 MiB)
    the most bytes a sample's members may hold together; a member (or a sample) over it is
    skipped unread, in bounded memory, and the sample rejected as ``member_too_large``.
``JESTFILTER_MAX_IMAGE_PIXELS`` (default 64 million)
    the most pixels an image's header may announce; a larger one is never decoded and the
    sample is rejected as ``image_too_large`` (a 13,000² PNG of a few KB decodes to 500 MB).
``JESTFILTER_SHUFFLE_BUFFER_BYTES`` (default 1 GiB)
    the most bytes of raw samples a loader worker's shuffle buffer holds, whatever its number
    of samples (``--shuffle-buffer``): 20,000 samples of 50 KB fit, 40 of 60 MB do not.
"""

from __future__ import annotations

import os

SAMPLE_BYTES_ENV = "JESTFILTER_MAX_SAMPLE_BYTES"
IMAGE_PIXELS_ENV = "JESTFILTER_MAX_IMAGE_PIXELS"
SHUFFLE_BYTES_ENV = "JESTFILTER_SHUFFLE_BUFFER_BYTES"
DEFAULT_SAMPLE_BYTES = 64 << 20
DEFAULT_IMAGE_PIXELS = 64_000_000
DEFAULT_SHUFFLE_BYTES = 1 << 30
EXTENDED_HEADER_BYTES = 1 << 20  # a tar's long-name / PAX header (tarfile reads it whole)


def max_sample_bytes() -> int:
    return _positive(SAMPLE_BYTES_ENV, DEFAULT_SAMPLE_BYTES)


def max_image_pixels() -> int:
    return _positive(IMAGE_PIXELS_ENV, DEFAULT_IMAGE_PIXELS)


def max_shuffle_bytes() -> int:
    return _positive(SHUFFLE_BYTES_ENV, DEFAULT_SHUFFLE_BYTES)


def _positive(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)
