"""open_clip models: named small configs, local-dir save/load, embeddings, Flexi patch sizes.

Every name is imported on first use, so a light module of the package (its options) can be
read without loading the heavy libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jestfilter.lazy import lazy_names

if TYPE_CHECKING:
    from jestfilter.models.factory import (ModelBundle, OUR_MODELS, SIGLIP_INIT, create_model, input_size,
                                           logit_bias_for_batch, model_spec, save_local_dir, start_model,
                                           weights_digest)
    from jestfilter.models.flexi import (FlopCounts, coarse_patch_size, coarse_view_warning, encode_image,
                                         flexi_patch_size, forward_flops, native_patch_size)
    from jestfilter.models.normalise import PixelStats, pixel_stats, stats_for_new_model
    from jestfilter.models.outputs import embed, siglip_outputs
    from jestfilter.models.preprocess import ImagePreprocess
    from jestfilter.models.text import encode_text

__all__ = [
    "OUR_MODELS",
    "PixelStats",
    "SIGLIP_INIT",
    "FlopCounts",
    "ImagePreprocess",
    "ModelBundle",
    "coarse_patch_size",
    "coarse_view_warning",
    "create_model",
    "flexi_patch_size",
    "input_size",
    "embed",
    "encode_image",
    "encode_text",
    "forward_flops",
    "logit_bias_for_batch",
    "model_spec",
    "native_patch_size",
    "pixel_stats",
    "save_local_dir",
    "start_model",
    "siglip_outputs",
    "stats_for_new_model",
    "weights_digest",
]
_WHERE = {
    **dict.fromkeys(("ModelBundle", "OUR_MODELS", "SIGLIP_INIT", "create_model", "input_size", "logit_bias_for_batch",
                     "model_spec", "save_local_dir", "start_model", "weights_digest"), "factory"),
    **dict.fromkeys(("FlopCounts", "coarse_patch_size", "coarse_view_warning", "encode_image", "flexi_patch_size",
                     "forward_flops", "native_patch_size"), "flexi"),
    **dict.fromkeys(("PixelStats", "pixel_stats", "stats_for_new_model"), "normalise"),
    **dict.fromkeys(("embed", "siglip_outputs"), "outputs"),
    **dict.fromkeys(("ImagePreprocess",), "preprocess"),
    **dict.fromkeys(("encode_text",), "text"),
}

__getattr__ = lazy_names(__name__, _WHERE)
