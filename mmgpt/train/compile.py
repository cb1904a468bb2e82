"""``compile: true | false | auto``: the decoder's training forward (and its backward) through
``torch.compile``.

* ``false`` (the default): eager.
* ``true``: compiled from the first step.
* ``auto``: measured on this run's own steps. Step 2 runs eager and is timed; the decoder is
  compiled before step 3, whose time minus step 4's is the compile time, and step 4's time
  against step 2's is the saving per step. The compiled decoder is kept when the steps left
  times the saving exceed twice the compile time; otherwise the run goes on eager. Both numbers
  are logged (and land in ``summary.json``). The first compiled steps are paid either way, so
  ``auto`` costs one compile on a machine where compiling does not pay.

The module's weights and their names do not change (``nn.Module.compile`` compiles its call in
place), so checkpoints and resume are the same with and without it. Shapes that vary from batch
to batch (padded rows) are compiled dynamic after the first recompile.
"""

from __future__ import annotations

import logging
from typing import Literal

from torch import nn

log = logging.getLogger(__name__)

Setting = Literal["auto"] | bool
EAGER_STEP, FIRST_COMPILED, TIMED_COMPILED = 1, 2, 3  # steps of this run (0-based) that ``auto`` times


def compile_module(module: nn.Module) -> None:
    """Compile ``module``'s call in place (its parameters and their names stay)."""
    module.compile(dynamic=None)


def uncompile_module(module: nn.Module) -> None:
    """Undo :func:`compile_module`: the module runs eager again."""
    module._compiled_call_impl = None  # what nn.Module.compile set


class CompileChoice:
    """Applies a ``compile`` setting to ``module`` over a run of ``steps`` optimiser steps.

    Call :meth:`before` ahead of each step of this run (counted from 0) and :meth:`after` with
    its wall time; :attr:`report` holds what ``auto`` measured and chose.
    """

    def __init__(self, setting: Setting, module: nn.Module, steps: int) -> None:
        if setting not in (True, False, "auto"):
            raise ValueError(f"compile must be true, false or auto, got {setting!r}")
        self.setting, self.module, self.steps = setting, module, steps
        self.times: dict[int, float] = {}
        self.report: dict[str, float | bool | str] = {"compile": str(setting).lower()}
        self.compiled = False
        if setting is True:
            self._compile()
        if setting == "auto" and steps <= TIMED_COMPILED + 1:
            self.report.update(compiled=False, reason="too few steps to measure")
            self.setting = False

    def _compile(self) -> None:
        compile_module(self.module)
        self.compiled = True

    def before(self, i: int) -> None:
        if self.setting == "auto" and i == FIRST_COMPILED:
            self._compile()

    def after(self, i: int, seconds: float) -> None:
        if self.setting != "auto" or i > TIMED_COMPILED:
            return
        self.times[i] = seconds
        if i == TIMED_COMPILED:
            self.decide()

    def decide(self) -> None:
        """Keep the compiled decoder or go back to eager (``auto``), from the timed steps."""
        eager, first, compiled = (self.times[k] for k in (EAGER_STEP, FIRST_COMPILED, TIMED_COMPILED))
        compile_s = max(first - compiled, 0.0)
        saving = eager - compiled
        left = self.steps - TIMED_COMPILED - 1
        keep = left * saving > 2 * compile_s
        self.report.update(compiled=keep, compile_seconds=round(compile_s, 3), eager_step_s=round(eager, 4),
                           compiled_step_s=round(compiled, 4), steps_left=left)
        log.info("compile auto: compiling took %.1f s; a step %.3f s eager, %.3f s compiled; %d steps left -> %s",
                 compile_s, eager, compiled, left, "compiled" if keep else "eager")
        if not keep:
            uncompile_module(self.module)
            self.compiled = False
        self.setting = keep
