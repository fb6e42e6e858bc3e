"""uint8 pixels → the model's input: the batched half of preprocessing, on the model's device.

Training, learner scoring, the reference's embedding cache, ``embed`` and evaluation all go
through this one path (``jestfilter.data.pixels.decode_checked``, then ``ImagePreprocess``), so
a cached reference embedding is exactly what the reference would compute in the loop. The
result matches open_clip's eval transform for square images at the model's size; other sizes
are cropped to their central square first and resized with antialiased bicubic interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass
import open_clip
import PIL.Image
import torch
import torch.nn.functional as F

from jestfilter.data.pixels import Pixels, from_pil


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize to ``size`` (square) and normalise by ``mean``/``std``, a whole batch at a time."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, model: torch.nn.Module) -> "ImagePreprocess":
        """The preprocessing open_clip's config gives ``model`` (its image size, mean and std)."""
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg["size"]
        if isinstance(size, (tuple, list)):
            if size[0] != size[1]:
                raise ValueError(f"only square model inputs are supported, got {tuple(size)}")
            size = size[0]
        return cls(int(size), tuple(cfg["mean"]), tuple(cfg["std"]))

    def to_model(self, pixels: Pixels, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[n, 3, size, size]`` float inputs from uint8 pixels (one tensor, or a list of
        ``[3, s, s]`` images of several sizes: each size is resized as one batch)."""
        if isinstance(pixels, torch.Tensor):
            return self._batch(pixels, device)
        if not len(pixels):
            return torch.empty(0, 3, self.size, self.size, device=device)
        out = torch.empty(len(pixels), 3, self.size, self.size, device=device)
        by_size: dict[tuple, list[int]] = {}
        for i, image in enumerate(pixels):
            by_size.setdefault(tuple(image.shape), []).append(i)
        for rows in by_size.values():
            out[torch.tensor(rows, device=device)] = self._batch(torch.stack([pixels[i] for i in rows]), device)
        return out

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        """One PIL image → ``[3, size, size]`` (a drop-in for open_clip's eval transform)."""
        return self.to_model(from_pil(image)[None])[0]

    def _batch(self, pixels: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        x = pixels.to(device, non_blocking=True).float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True,
                              align_corners=False).clamp_(0, 255)
        # (x / 255 − mean) / std in one multiply-add per channel
        scale = torch.tensor([1 / (255 * s) for s in self.std], device=x.device)[:, None, None]
        shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], device=x.device)[:, None, None]
        return torch.addcmul(shift, x, scale)

