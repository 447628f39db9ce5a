"""The physical signal units neurofm knows, as one table.

Recordings and corpora state their unit (``"uV"``, ``"100uV"``, ``"mV"``, ``"V"``; ``"device"`` for
raw counts without a physical unit); preprocessing and models convert between them with
:func:`scale_factor`.
"""

from __future__ import annotations

#: Microvolts in one of each physical unit.
MICROVOLTS_PER_UNIT: dict[str, float] = {"uV": 1.0, "100uV": 100.0, "mV": 1000.0, "V": 1e6}


def scale_factor(unit: str, target: str) -> float:
    """What a signal in ``unit`` is multiplied by to be in ``target`` (both physical units).

    Raises ``KeyError`` naming the unit when either is not in :data:`MICROVOLTS_PER_UNIT`.
    """
    for name in (unit, target):
        if name not in MICROVOLTS_PER_UNIT:
            raise KeyError(f"unknown physical unit {name!r}; known: {', '.join(MICROVOLTS_PER_UNIT)}")
    return MICROVOLTS_PER_UNIT[unit] / MICROVOLTS_PER_UNIT[target]
