"""The accuracy gate: fail when an INT8 model's AP50 drop from the reference, at the >= 24 px face
filter, exceeds a budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kpnet_edge.errors import KpnetError
from kpnet_edge.reporting.accuracy import GATE_MIN_SIZE

EXIT_CODE = 3
"""`kpnet-edge report --max-drop` exits with this when the gate fails (2 is a usage or data error)."""


@dataclass(frozen=True)
class GateResult:
    """budget: the allowed AP drop (a fraction, 0.01 = 1 point); drops: INT8 model key -> AP drop;
    offenders: those above the budget."""

    budget: float
    min_size: int
    drops: dict[str, float]
    offenders: dict[str, float]

    @property
    def passed(self) -> bool:
        return not self.offenders

    def message(self) -> str:
        """One line naming the offending models and their drops, or saying all passed."""
        where = f"AP50 drop at faces >= {self.min_size} px vs the FP32 reference"
        if self.passed:
            checked = ", ".join(self.drops) or "no INT8 model"
            return f"gate passed: {where} within {self.budget:g} for {checked}"
        named = ", ".join(f"{key} drops {drop:.4f} ({100 * drop:.2f} points)"
                          for key, drop in self.offenders.items())
        return f"gate failed: {where} exceeds {self.budget:g}: {named}"

    def to_dict(self) -> dict:
        return {"budget": self.budget, "min_size": self.min_size, "passed": self.passed,
                "drops": self.drops, "offenders": self.offenders, "message": self.message()}


def check_gate(rows: Sequence[dict], budget: float, min_size: int = GATE_MIN_SIZE) -> GateResult:
    """Judge the report's model rows (quantized ones only) against the budget.

    Raises KpnetError when an INT8 model's drop is undefined (no face of that size was counted),
    since a gate that cannot measure must not pass.
    """
    drops = {}
    for row in rows:
        if not row["quantized"]:
            continue
        drop = row["drop"]["wider"][f"{min_size:g}"]["ap"]
        if drop is None:
            raise KpnetError(f"gate: no AP for {row['key']} at faces >= {min_size} px (no such face counted "
                             "in the evaluation images); cannot judge --max-drop")
        drops[row["key"]] = drop
    return GateResult(budget, min_size, drops, {k: d for k, d in drops.items() if d > budget})
