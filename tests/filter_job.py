"""A small filtering run for the resume test: keep the brighter half of every super-batch,
hand it to a FilteredOutput sink (kept samples and a manifest), checkpoint after every step.
Restarted with the same command it continues from its checkpoint."""

import argparse
import sys
import time
from pathlib import Path

import open_clip
import torch

from jestfilter.data import SuperBatchLoader, atomic_torch_save
from jestfilter.sinks import FilteredOutput
from jestfilter.sinks.filtered import selection_of


def save(path, loader, sink, step):
    atomic_torch_save(path, {"loader": loader.state_dict(), "sink": sink.state_dict(), "step": step})


def load(path, loader, sink) -> int:
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=True)
    loader.load_state_dict(state["loader"])
    sink.load_state_dict(state["sink"])
    return state["step"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pattern")
    parser.add_argument("out", type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()

    loader = SuperBatchLoader(args.pattern, 8, open_clip.SimpleTokenizer(context_length=16), workers=2,
                              shuffle_buffer=16, seed=7, passes=2)
    sink = FilteredOutput(args.out, samples_per_shard=5, extremes=False)
    sink.manifest.rows_per_part = 10
    checkpoint = args.out / "checkpoint.pt"
    step = load(checkpoint, loader, sink)
    for batch in loader:
        brightness = batch.images.float().mean(dim=(1, 2, 3))
        kept = brightness.argsort(descending=True)[: len(batch) // 2].sort().values.tolist()
        sink.record(batch, selection_of(kept, learnability=brightness), step)
        step += 1
        save(checkpoint, loader, sink, step)
        print(f"step {step}", flush=True)
        time.sleep(args.delay)
    sink.close()
    save(checkpoint, loader, sink, step)
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
