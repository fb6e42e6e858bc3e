"""`jestfilter info`: versions of the stack and the devices it sees (paste into bug reports)."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform

HELP = "print versions of jestfilter's stack and the devices it can use"

PACKAGES = ["torch", "torchvision", "open_clip_torch", "webdataset", "img2dataset", "faiss-cpu", "polars"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    import torch

    import jestfilter

    print(f"jestfilter {jestfilter.__version__} on Python {platform.python_version()} ({platform.machine()})")
    for name in PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"  {name:16s} {version}")
    cuda = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "none"
    print(f"  cpu threads      {torch.get_num_threads()}")
    print(f"  cuda devices     {cuda}")
    return 0
