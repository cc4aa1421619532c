"""Wall time per processing stage, from timing wrappers put around the stage functions.

``StageClock`` charges elapsed time to the innermost open stage, so a branch read that
happens inside a selection (NanoEvents read lazily) counts as ``read`` and not as
``select``. ``instrument_processor`` installs the wrappers for the duration of a block;
the processor's code is not changed.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

#: Stages of the calibration processor, as reported.
STAGES: tuple[str, ...] = ("read", "select", "build inputs", "infer", "fill", "other")


class StageClock:
    """Exclusive wall time per stage of nested, timed calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[str] = []
        self._since = 0.0

    def enter(self, stage: str) -> None:
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1]] += now - self._since
        self._stack.append(stage)
        self._since = now

    def exit(self) -> None:
        now = time.perf_counter()
        self.seconds[self._stack.pop()] += now - self._since
        self._since = now

    def wrap(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``function`` with its calls charged to ``stage``."""

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.enter(stage)
            try:
                return function(*args, **kwargs)
            finally:
                self.exit()

        return timed


@contextlib.contextmanager
def patched(target: Any, name: str, replacement: Any) -> Iterator[None]:
    """Set ``target.name`` to ``replacement`` inside the block and restore it afterwards."""
    original = getattr(target, name)
    setattr(target, name, replacement)
    try:
        yield
    finally:
        setattr(target, name, original)


@contextlib.contextmanager
def instrument_processor(clock: StageClock) -> Iterator[StageClock]:
    """Time the stages of ``CalibrationProcessor.process`` with ``clock`` inside the block.

    Wrapped: ``process`` (``other``), uproot's ``TBranch.array`` (``read``, which is how
    NanoEvents loads a branch on first access), ``Selection.apply`` (``select``),
    ``advcalib.inputs.build_deepjet_inputs`` (``build inputs``), ``Tagger.predict``
    (``infer``) and ``advcalib.processor.fill`` (``fill``). Time inside ``process`` but
    in none of the others stays in ``other`` (weights, probe bookkeeping, kinematics).
    """
    import uproot.behaviors.TBranch

    import advcalib.inputs
    import advcalib.processor
    from advcalib.models.tagger import Tagger
    from advcalib.selections.cuts import Selection

    targets = (
        (advcalib.processor.CalibrationProcessor, "process", "other"),
        (uproot.behaviors.TBranch.TBranch, "array", "read"),
        (Selection, "apply", "select"),
        (advcalib.inputs, "build_deepjet_inputs", "build inputs"),
        (Tagger, "predict", "infer"),
        (advcalib.processor, "fill", "fill"),
    )
    with contextlib.ExitStack() as stack:
        for target, name, stage in targets:
            stack.enter_context(patched(target, name, clock.wrap(stage, getattr(target, name))))
        yield clock
