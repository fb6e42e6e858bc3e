"""The sink interface, and several sinks behind one."""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

from jestfilter.data.types import RawSample, SuperBatch
from jestfilter.selection import Selection


class Sink(Protocol):
    """What the training loop and the jobs hand each step's selection to."""

    def record(self, batch: SuperBatch, selection: Selection, step: int,
               unscored: Sequence[tuple[RawSample, str]] = (), reasons: Mapping[int, str] | None = None) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def close(self) -> Any: ...


class Sinks:
    """Each step goes to every piece. Their states share one dict (each piece keeps its own
    keys, so a checkpoint reads the same whichever pieces wrote it); ``close()`` closes each
    in order and returns what the first one returns."""

    def __init__(self, *pieces: Sink):
        self.pieces = pieces

    def record(self, batch: SuperBatch, selection: Selection, step: int,
               unscored: Sequence[tuple[RawSample, str]] = (), reasons: Mapping[int, str] | None = None) -> None:
        for piece in self.pieces:
            piece.record(batch, selection, step, unscored=unscored, reasons=reasons)

    def state_dict(self) -> dict:
        return {key: value for piece in self.pieces for key, value in piece.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        for piece in self.pieces:
            piece.load_state_dict(state)

    def close(self) -> Any:
        return [piece.close() for piece in self.pieces][0]
