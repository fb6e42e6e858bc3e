"""Run by torchrun from test_selector_distributed.py: each rank selects from its own rows.

Usage: torchrun --nproc_per_node=N tests/distributed_selection.py OUT_DIR
Writes OUT_DIR/rank{r}.json: {config name: [local indices, learner_loss]}.
"""

import json
import sys

import torch.distributed as dist
from test_selector_distributed import CONFIGS, ROWS, models

from jestfilter import Selector


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = slice(rank * ROWS // world, (rank + 1) * ROWS // world)
    results = {}
    for name, options in CONFIGS.items():
        learner, reference = (m._replace(image=m.image[mine], text=m.text[mine]) for m in models())
        selection = Selector(**options).select_with_scores(learner, reference, step=7,
                                                           group=dist.group.WORLD)
        results[name] = [selection.indices.tolist(), selection.learner_loss.tolist()]
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
