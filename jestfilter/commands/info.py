"""`jestfilter info`: versions of the stack and the devices it sees (paste into bug reports)."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform

HELP = "print versions of jestfilter's stack, which faiss is installed and the devices they can use"

PACKAGES = ["torch", "torchvision", "open_clip_torch", "webdataset", "img2dataset", "polars"]
FAISS_PACKAGES = ["faiss-cpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-gpu", "faiss"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def faiss_line() -> str:
    """Which faiss package is installed, and how many GPUs it sees."""
    from jestfilter.errors import UsageError
    from jestfilter.jobs.neighbours import gpus_seen

    found = [f"{name} {installed(name)}" for name in FAISS_PACKAGES if installed(name)]
    try:
        gpus = gpus_seen()
    except UsageError:
        return "none (dedup needs it: pip install 'jestfilter[cpu]' or 'jestfilter[gpu]')"
    line = f"{', '.join(found) or 'a faiss module'}; sees {gpus} GPU(s)"
    if len(found) > 1:
        line += " (two faiss packages share one faiss/ folder: uninstall all but one)"
    return line


def run(args: argparse.Namespace) -> int:
    import torch

    import jestfilter

    print(f"jestfilter {jestfilter.__version__} on Python {platform.python_version()} ({platform.machine()})")
    for name in PACKAGES:
        print(f"  {name:16s} {installed(name) or 'not installed'}")
    print(f"  {'faiss':16s} {faiss_line()}")
    cuda = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "none"
    print(f"  cpu threads      {torch.get_num_threads()}")
    print(f"  cuda devices     {cuda}")
    return 0
