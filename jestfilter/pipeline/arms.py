"""A bootstrap run's arms, built once from its config: the main method and each one compared.

Each arm says what it is, so no stage decides it again: its training settings, whether it is
the main arm (its model is ``final/``, its selection fills ``filtered/``), whether it is an
offline criterion (it trains uniformly on the top 1 − f of the web data by its score) and
whether it needs the reference's embeddings of the web data.
"""

from __future__ import annotations

from dataclasses import dataclass

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.selection.criteria import criterion


@dataclass(frozen=True)
class Arm:
    name: str  # the method, as --method and --compare name it
    settings: TrainSettings  # what its learner trains with (an offline arm: uniform)
    main: bool
    offline: bool
    needs_reference: bool

    @property
    def writes_filtered(self) -> bool:
        return self.main


@dataclass(frozen=True)
class Arms:
    """The arms in order, the main one first, and the reference's training settings."""

    all: tuple[Arm, ...]
    reference: TrainSettings

    @property
    def main(self) -> Arm:
        return self.all[0]

    @property
    def names(self) -> list[str]:
        return [arm.name for arm in self.all]

    @property
    def need_reference(self) -> bool:
        """Whether any arm scores with the reference, so the web data must be embedded with it."""
        return any(arm.needs_reference for arm in self.all)

    def named(self, name: str) -> Arm:
        return next(arm for arm in self.all if arm.name == name)


def build_arms(cfg: BootstrapConfig) -> Arms:
    """The run's arms, from ``cfg.methods`` (main first) and each one's settings."""
    arms = []
    for name in cfg.methods:
        chosen = criterion(name)
        arms.append(Arm(name, cfg.settings_for(name), name == cfg.train.method, chosen.offline is not None,
                        chosen.needs_reference))
    return Arms(tuple(arms), cfg.reference_settings())
