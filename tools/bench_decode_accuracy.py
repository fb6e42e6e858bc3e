"""Does decoding at reduced scale change what the demo learns? The Fashion-MNIST demo with every
image upscaled to ``--size`` px (img2dataset's default 256: a 28-px model then decodes each JPEG
at 1/8 scale, 32 px, before its 28-px resize), bootstrapped with ``--decode cpu`` (reduced
scale) and ``--decode full`` (every image decoded at 256 px), JEST only, per seed; reference and
learner zero-shot top-1 side by side.

    OMP_NUM_THREADS=1 python tools/bench_decode_accuracy.py --out runs/bench-decode-accuracy --seeds 0 1 2

Writes OUT/accuracy.md and OUT/accuracy.json; runs resume (a finished bootstrap is not redone).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tarfile
from pathlib import Path

import PIL.Image

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.datasets.demo import build_demo_data
from jestfilter.pipeline import run_bootstrap
from _stats import mean_sd  # noqa: E402  (tools/ is on sys.path when run as a script)


def upscale_tar(source: Path, target: Path, size: int) -> None:
    """``source`` with every JPEG resized to ``size`` × ``size`` (Lanczos, quality 95), other
    members and the order unchanged."""
    with tarfile.open(source) as tar_in, tarfile.open(target, "w") as tar_out:
        for member in tar_in.getmembers():
            data = tar_in.extractfile(member).read()
            if member.name.endswith(".jpg"):
                with PIL.Image.open(io.BytesIO(data)) as image:
                    out = io.BytesIO()
                    image.convert("RGB").resize((size, size), PIL.Image.LANCZOS).save(out, format="JPEG", quality=95)
                    data = out.getvalue()
            info = tarfile.TarInfo(member.name)
            info.size, info.mtime = len(data), 0
            tar_out.addfile(info, io.BytesIO(data))


def upscaled_demo(out: Path, size: int) -> tuple[str, str, Path]:
    """The demo (built under OUT/demo) with its images at ``size`` px under OUT/demo-SIZE:
    (curated pattern, web pattern, eval folder)."""
    demo = build_demo_data(out / "demo", progress=False)
    target = out / f"demo-{size}"
    if not (target / "done").exists():
        shutil.rmtree(target, ignore_errors=True)
        for split in ("curated", "web", "eval"):
            (target / split).mkdir(parents=True)
            for path in sorted((demo.root / split).iterdir()):
                if path.suffix == ".tar":
                    upscale_tar(path, target / split / path.name, size)
                elif path.is_file() and path.suffix in (".txt", ".json"):
                    shutil.copy(path, target / split / path.name)
        (target / "done").touch()
    rebase = lambda pattern: pattern.replace(str(demo.root), str(target))  # noqa: E731
    return rebase(demo.curated), rebase(demo.web), target / "eval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--decodes", nargs="+", default=["cpu", "full"])
    args = parser.parse_args()
    curated, web, eval_dir = upscaled_demo(args.out, args.size)
    results: dict[str, dict[int, dict]] = {}
    for seed in args.seeds:
        for decode in args.decodes:
            settings = TrainSettings(seed=seed, decode=decode, workers=1, threads=1)
            cfg = BootstrapConfig(curated=[curated], web=[web], eval=str(eval_dir), compare=[],
                                  out=str(args.out / f"{decode}-seed{seed}"), progress=False, train=settings)
            metrics = run_bootstrap(cfg)
            results.setdefault(decode, {})[seed] = {
                "reference": metrics["reference"]["zeroshot_top1"], "final": metrics["final"]["zeroshot_top1"],
                "seconds": metrics["seconds"]}
            (args.out / "accuracy.json").write_text(json.dumps(results, indent=1))
    lines = [f"Demo at {args.size} px, jest-tiny-p4 (28 px), JEST (learnability), seeds {args.seeds}", "",
             "| --decode | reference zero-shot per seed | mean ± sd | JEST zero-shot per seed | mean ± sd | run s |",
             "|---|---|---|---|---|---|"]
    for decode, seeds in results.items():
        reference = [r["reference"] for r in seeds.values()]
        final = [r["final"] for r in seeds.values()]
        lines.append(f"| {decode} | {', '.join(f'{v:.3f}' for v in reference)} | {mean_sd(reference)} "
                     f"| {', '.join(f'{v:.3f}' for v in final)} | {mean_sd(final)} "
                     f"| {mean_sd([r['seconds'] for r in seeds.values()], 0)} |")
    (args.out / "accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
