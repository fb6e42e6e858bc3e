"""Image bytes → uint8 pixels: the decoding half of preprocessing, done once per sample in the
loader's workers (the other half, resize and normalise, runs batched on the model's device:
``jestfilter.models.preprocess``).

An image becomes its central square, ``[3, s, s]`` uint8 RGB: the crop is exact (no
interpolation), so what a sample looks like never depends on the other samples of its batch.
torchvision's libjpeg-turbo/libpng/libwebp decoders are ~2× faster than PIL's here and give the
same pixels; PIL is the fallback for anything they refuse.

Decoding for the size the model needs. A caller that knows the side it will resize to passes
it as ``size``. A JPEG whose shorter side is at least twice that is then decoded at 1/2, 1/4
or 1/8 scale (libjpeg's scaling in the DCT domain, through OpenCV, else PIL's ``draft``): the largest
reduction that still leaves at least ``size`` pixels on each side, so a 512-px image for a
28-px model is decoded at 64 px, about 3× cheaper than in full, and its resize is cheaper
still. The result is then resized to ``size`` like any other image; it differs from a full
decode + resize by the filter libjpeg's reduced IDCT applies (a box-like average over each
8×8 block, against the resize's antialiased bicubic), a few grey levels on edges
(docs/benchmarks.md measures the accuracy effect). PNG, WebP and JPEGs below twice ``size`` are
decoded at their stored size, as without ``size``.

On a GPU, ``decode_checked(..., defer_jpeg=True)`` leaves a JPEG that would be decoded in full
as its bytes (after the header's size check), and ``decode_deferred`` decodes all of a batch's
on the model's device with nvjpeg (torchvision's ``decode_jpeg``), falling back to the CPU
image by image.

Images are not trusted: the size an image's header announces is checked before any pixel is
decoded (``check_size``), so a small file announcing a huge image (a decompression bomb)
costs nothing. The header is read here for JPEG, PNG and WebP (a few µs; PIL's lazy open
costs 25–120 µs a sample, a good share of decoding a small image), and by PIL for anything
else.
"""

from __future__ import annotations

import io
import struct
import warnings
from typing import Sequence

import cv2
import numpy as np
import PIL.Image
import torch
from torchvision.io import ImageReadMode, decode_image as _tv_decode, decode_jpeg as _tv_decode_jpeg

from jestfilter.data.limits import max_image_pixels
from jestfilter.data.options import DECODES
from jestfilter.data.shards import CORRUPT_IMAGE, IMAGE_TOO_LARGE

Pixels = torch.Tensor | list[torch.Tensor]  # [n, 3, s, s] uint8, or one [3, s, s] per image when sizes differ
JPEG_SCALES = (8, 4, 2)  # the reductions libjpeg decodes in the DCT domain (besides 1)


def decode_options(decode: str, device: torch.device | str, size: int) -> tuple[int | None, bool]:
    """What a run's ``--decode`` (``jestfilter.data.options.DECODES``) asks of its decoding on
    ``device`` for a model of input ``size``: (the ``size`` to decode JPEGs for, None for their
    stored size; whether JPEGs decoded at full scale are deferred to the device)."""
    if decode not in DECODES:
        raise ValueError(f"unknown --decode {decode!r}: choose one of {', '.join(DECODES)}")
    cuda = torch.device(device).type == "cuda"
    if decode == "auto":
        decode = "gpu" if cuda else "cpu"
    if decode == "gpu" and not cuda:
        raise ValueError(f"--decode gpu needs a CUDA device; this run is on {device}")
    return (None if decode == "full" else size), decode == "gpu"


def decode_checked(data: bytes, size: int | None = None, *, defer_jpeg: bool = False) -> torch.Tensor:
    """``decode_image`` behind the header's size check: a decompression bomb is never decoded.
    Raises ``BadImage`` (``image_too_large``, ``corrupt_image``) or the decoder's own error;
    ``image_reason`` turns either into the manifest's reason.

    ``defer_jpeg``: a JPEG that would be decoded at full scale comes back undecoded, as its
    bytes (a 1-D uint8 tensor), for ``decode_deferred`` on the model's device."""
    check_size(data)
    if defer_jpeg and is_jpeg(data) and jpeg_scale(data, size) == 1:
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return decode_image(data, size)


def decode_image(data: bytes, size: int | None = None) -> torch.Tensor:
    """The central square of the image in ``data`` as uint8 ``[3, s, s]`` RGB; raises on bytes
    that are no decodable image. ``size``: the side the pixels will be resized to; a JPEG at
    least twice as large is decoded at reduced scale, never below ``size`` (``jpeg_scale``)."""
    if jpeg_scale(data, size) > 1:
        return _decode_reduced(data, size)
    try:
        pixels = _tv_decode(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        if pixels.dtype != torch.uint8:  # 16-bit PNG
            pixels = (pixels.float() * (255 / 65535)).round().to(torch.uint8)
    except RuntimeError:
        with PIL.Image.open(io.BytesIO(data)) as image:
            pixels = from_pil(image)
        return pixels
    return central_square(pixels)


def is_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8"


def jpeg_scale(data: bytes, size: int | None) -> int:
    """1, 2, 4 or 8: the reduction libjpeg can decode ``data`` at for a model of input ``size``,
    the largest that leaves the shorter side at least ``size`` (1: not a JPEG, no ``size``, or
    smaller than twice ``size``)."""
    if size is None or size < 1 or not is_jpeg(data):
        return 1
    frame = jpeg_frame(data)
    if frame is None:
        return 1
    fits = min(frame[:2]) // size
    return next((scale for scale in JPEG_SCALES if fits >= scale), 1)


_CV2_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _decode_reduced(data: bytes, size: int) -> torch.Tensor:
    """A JPEG decoded at the scale ``jpeg_scale`` gives. OpenCV's libjpeg-turbo does it (25–35 %
    faster than PIL here, the same pixels); PIL's ``draft`` (same rule: the largest of 1/8, 1/4,
    1/2 whose output is at least ``size`` on both sides) takes CMYK JPEGs and anything OpenCV
    refuses, and raises on bytes that do not decode (OpenCV returns None for a truncated file)."""
    scale, components = jpeg_scale(data, size), jpeg_frame(data)[2]
    bgr = None
    if components in (1, 3):  # OpenCV's CMYK conversion is not PIL's and torchvision's
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_REDUCED[scale] | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is not None:
        pixels = central_square(torch.from_numpy(bgr).permute(2, 0, 1)).flip(0).contiguous()  # BGR → RGB
    else:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (size, size))
            pixels = from_pil(image)
    if pixels.shape[-1] < size:  # never fewer pixels than the model's input (both decoders' rule ensures it)
        raise AssertionError(f"a reduced decode gave {pixels.shape[-1]} px for a {size}-px input")
    return pixels


def from_pil(image: PIL.Image.Image) -> torch.Tensor:
    """A PIL image's central square as uint8 ``[3, s, s]`` RGB."""
    array = np.array(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    return central_square(torch.from_numpy(array).permute(2, 0, 1).contiguous())


def central_square(pixels: torch.Tensor) -> torch.Tensor:
    """The central ``min(h, w)`` square of ``[c, h, w]`` pixels (torchvision's CenterCrop offsets)."""
    height, width = pixels.shape[-2:]
    side = min(height, width)
    if height == width:
        return pixels
    top, left = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))
    return pixels[..., top:top + side, left:left + side].contiguous()


def is_deferred(image: torch.Tensor) -> bool:
    """An image ``decode_checked(defer_jpeg=True)`` left undecoded (its bytes, 1-D)."""
    return image.ndim == 1


def decode_deferred(images: Sequence[torch.Tensor], device: torch.device | str) -> tuple[Pixels, list[int]]:
    """Every deferred JPEG of ``images`` decoded on ``device`` (nvjpeg on CUDA, one batched call),
    each image as its central square there; the others moved there as they are. Returns the
    pixels of the images that decoded (``stack_pixels``) and the positions of those that did
    not (corrupt bytes behind a valid header), which the caller rejects."""
    device = torch.device(device)
    out: list[torch.Tensor | None] = [None if is_deferred(x) else x.to(device, non_blocking=True) for x in images]
    todo = [i for i, x in enumerate(images) if is_deferred(x)]
    if todo:
        try:
            decoded = _tv_decode_jpeg([images[i] for i in todo], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # one bad image fails the batch: decode them one by one
            decoded = [_decode_one(images[i], device) for i in todo]
        for i, pixels in zip(todo, decoded):
            out[i] = None if pixels is None else central_square(pixels)
    failed = [i for i, x in enumerate(out) if x is None]
    return stack_pixels([x for x in out if x is not None]), failed


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """One deferred JPEG on ``device``, else through ``decode_image`` on the CPU; None if neither can."""
    try:
        return _tv_decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        pass
    try:
        return decode_image(data.numpy().tobytes()).to(device)
    except Exception:  # each decoder raises its own types for damaged files
        return None


def stack_pixels(images: Sequence[torch.Tensor]) -> Pixels:
    """One ``[n, 3, s, s]`` tensor when every image has the same size (one transfer between
    processes), else the list (which also holds any deferred JPEG's bytes)."""
    if images and images[0].ndim == 3 and all(image.shape == images[0].shape for image in images):
        return torch.stack(list(images))
    return list(images)


# --- an image's header, checked before any pixel is decoded ---------------------------------
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
