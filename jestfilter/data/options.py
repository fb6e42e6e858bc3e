"""The data plane's choices, as data: how images are decoded, what a manifest records, how
many samples an output shard holds. The run settings (``jestfilter.config``) offer them as flags."""

from __future__ import annotations

SAMPLES_PER_SHARD = 10_000  # every command that writes shards, as img2dataset does (the demo's are smaller)
DECODES = {  # where and how the images are decoded (jestfilter.data.pixels)
    "auto": "gpu on a CUDA device, else cpu",
    "cpu": "in the loader's workers; a JPEG at least twice the model's input is decoded at 1/2, 1/4 or 1/8 scale "
           "(libjpeg's DCT scaling), then resized as any other image",
    "full": "in the loader's workers, every image at its stored size (the exact pixels of a plain decode; slower)",
    "gpu": "as cpu, except that the JPEGs that would be decoded at full scale go to the GPU (nvjpeg) as bytes",
}
MANIFESTS = {  # what the manifest records (jestfilter.data.manifest)
    "all": "a row for every sample read, in every pass: kept, dropped (with its scores) or rejected",
    "kept": "rows for kept and rejected samples only; dropped ones are counted per shard, pass and reason in "
            "dropped.parquet/ (5× fewer rows at f = 0.8; not with --filtered-rule top)",
}
