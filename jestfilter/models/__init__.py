"""open_clip models: named small configs, local-dir save/load, embeddings, Flexi patch sizes."""

from jestfilter.models.factory import (
    OUR_MODELS,
    SIGLIP_INIT,
    ModelBundle,
    create_model,
    logit_bias_for_batch,
    save_local_dir,
)
from jestfilter.models.flexi import FlopCounts, encode_image, forward_flops, native_patch_size
from jestfilter.models.outputs import ModelOutputs, embed

__all__ = [
    "OUR_MODELS",
    "SIGLIP_INIT",
    "FlopCounts",
    "ModelBundle",
    "ModelOutputs",
    "create_model",
    "embed",
    "encode_image",
    "forward_flops",
    "logit_bias_for_batch",
    "native_patch_size",
    "save_local_dir",
]
