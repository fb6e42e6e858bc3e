"""Images are not trusted: the size an image's header announces is checked before any pixel is
decoded, so a small file announcing a huge image (a decompression bomb) costs nothing.

The header is read here for JPEG, PNG and WebP (a few µs; PIL's lazy open costs 25–120 µs a
sample, a good share of decoding a small image), and by PIL for anything else.
"""

from __future__ import annotations

import io
import struct
import warnings

import PIL.Image

from jestfilter.data.limits import max_image_pixels
from jestfilter.data.shards import CORRUPT_IMAGE, IMAGE_TOO_LARGE


class BadImage(ValueError):
    """An image that is not decoded; ``reason`` is the manifest's reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_size(data: bytes) -> None:
    """Raise ``BadImage("image_too_large")`` when ``data``'s header announces more pixels than
    ``JESTFILTER_MAX_IMAGE_PIXELS`` (``BadImage("corrupt_image")`` when it has no readable header)."""
    size = announced_size(data)
    if size is None:
        open_image(data).close()  # PIL reads the header and checks it
    elif size[0] * size[1] > max_image_pixels():
        raise BadImage(IMAGE_TOO_LARGE)


def open_image(data: bytes) -> PIL.Image.Image:
    """The image in ``data``, header read and checked, pixels not yet decoded (PIL decodes them
    on first use). Raises ``BadImage`` (``image_too_large``, ``corrupt_image``)."""
    try:
        with warnings.catch_warnings():  # PIL warns of large images; the cap below decides
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            image = PIL.Image.open(io.BytesIO(data))
    except PIL.Image.DecompressionBombError:
        raise BadImage(IMAGE_TOO_LARGE) from None
    except Exception:
        raise BadImage(CORRUPT_IMAGE) from None
    width, height = image.size
    if width * height > max_image_pixels():
        image.close()
        raise BadImage(IMAGE_TOO_LARGE)
    return image


def image_reason(error: Exception) -> str:
    """The manifest reason for an image that failed to open, decode or preprocess."""
    return error.reason if isinstance(error, BadImage) else CORRUPT_IMAGE


def announced_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG, PNG or WebP header; None for anything else or a header
    that does not parse."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except (struct.error, IndexError):
        pass
    return None


_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    frame = jpeg_frame(data)
    return None if frame is None else frame[:2]


def jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, colour components) from a JPEG's frame header; None when there is none."""
    at = 2
    try:
        while at + 4 <= len(data):
            if data[at] != 0xFF:
                return None
            marker = data[at + 1]
            if marker == 0xFF:  # fill byte
                at += 1
                continue
            if marker in (0x01, *range(0xD0, 0xDA)):  # markers without a length
                at += 2
                continue
            length = struct.unpack(">H", data[at + 2:at + 4])[0]
            if marker in _JPEG_FRAMES:
                height, width, components = struct.unpack(">HHB", data[at + 5:at + 10])
                return width, height, components
            at += 2 + length
    except (struct.error, IndexError):
        pass
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None
