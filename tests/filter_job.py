"""A small filtering run for the resume test: keep the brighter half of every super-batch,
write the kept samples and a manifest, checkpoint after every step. Restarted with the same
command it continues from its checkpoint."""

import argparse
import sys
import time
from pathlib import Path

import open_clip

from jestfilter.data import FilteredShardWriter, Manifest, SuperBatchLoader
from jestfilter.data.checkpoint import load_data_state, save_data_state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pattern")
    parser.add_argument("out", type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()

    loader = SuperBatchLoader(args.pattern, 8, open_clip.image_transform(28, is_train=False),
                              open_clip.SimpleTokenizer(context_length=16), workers=2, shuffle_buffer=16,
                              seed=7, passes=2)
    writer = FilteredShardWriter(args.out, samples_per_shard=5)
    manifest = Manifest(args.out, rows_per_part=10)
    checkpoint = args.out / "checkpoint.pt"
    step = (load_data_state(checkpoint, loader, writer, manifest) or {}).get("step", 0)
    for batch in loader:
        brightness = batch.images.mean(dim=(1, 2, 3))
        kept = brightness.argsort(descending=True)[: len(batch) // 2].sort().values.tolist()
        shards = [writer.write(batch.samples[i]) for i in kept]
        manifest.record(batch, step=step, kept=kept, output_shards=shards, learnability=brightness)
        step += 1
        save_data_state(checkpoint, loader, writer, manifest, step=step)
        print(f"step {step}", flush=True)
        time.sleep(args.delay)
    writer.close()
    manifest.close()
    save_data_state(checkpoint, loader, writer, manifest, step=step)
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
