"""Run under torchrun by tests/test_distributed_bootstrap.py: rank 1 stops taking part
(it exits, or hangs), rank 0 waits for it in a collective and must fail, not wait forever."""

import os
import sys
import time

import torch

from jestfilter.distributed import barrier, init_distributed

world, _ = init_distributed(torch.device("cpu"))
if world.rank == 1:
    if sys.argv[1] == "exit":
        os._exit(0)
    time.sleep(120)
barrier(world)
