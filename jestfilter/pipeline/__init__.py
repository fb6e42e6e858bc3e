"""bootstrap = reference → online JEST (+ filtered shards, manifest) → final model → evaluation,
once or in rounds (each round's final model is the next round's reference).

``run.py`` checks the config and sets up the world once; ``layout.py`` holds every path of a
run's folder and when a stage is done; ``arms.py`` the arms, built once from the config;
``stages.py`` the stages; ``estimate.py`` the plan; ``outcome.py`` metrics and report.
"""

from jestfilter.pipeline.arms import Arm, Arms, build_arms
from jestfilter.pipeline.bootstrap import Bootstrap
from jestfilter.pipeline.inputs import Inputs, prepare_data
from jestfilter.pipeline.layout import RunLayout
from jestfilter.pipeline.rounds import Rounds
from jestfilter.pipeline.run import run_bootstrap

__all__ = ["Arm", "Arms", "Bootstrap", "Inputs", "Rounds", "RunLayout", "build_arms", "prepare_data",
           "run_bootstrap"]
