"""The LaBraM channel vocabulary and the mapping from real-world channel labels onto it.

LaBraM's spatial embedding table has one row per vocabulary name (plus row 0 for the cls token),
so every channel that reaches the model must be named by exactly one vocabulary entry. Real
recordings label channels in many ways (``EEG Fp1``, ``Fp1-REF``, ``EEG FP1-LE``, ``FP1-A1``,
``Fp1.``); :func:`normalize_channel_name` reduces them to the official spelling, and
:func:`map_channels` reports what mapped where and what did not. Nothing is guessed: a label that
does not reduce to a vocabulary name is reported and dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from neurofm.errors import ChannelError

#: The 128 names addressable by LaBraM's spatial table, in the official order
#: (``utils.standard_1020`` of the official code, truncated to the table's 128 rows).
LABRAM_VOCABULARY: tuple[str, ...] = (
    "FP1", "FPZ", "FP2", "AF9", "AF7", "AF5", "AF3", "AF1", "AFZ", "AF2", "AF4", "AF6",
    "AF8", "AF10", "F9", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "F10", "FT9",
    "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "FT10", "T9", "T7",
    "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8", "T10", "TP9", "TP7", "CP5", "CP3",
    "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "TP10", "P9", "P7", "P5", "P3", "P1", "PZ",
    "P2", "P4", "P6", "P8", "P10", "PO9", "PO7", "PO5", "PO3", "PO1", "POZ", "PO2", "PO4",
    "PO6", "PO8", "PO10", "O1", "OZ", "O2", "O9", "CB1", "CB2", "IZ", "O10", "T3", "T5",
    "T4", "T6", "M1", "M2", "A1", "A2", "CFC1", "CFC2", "CFC3", "CFC4", "CFC5", "CFC6",
    "CFC7", "CFC8", "CCP1", "CCP2", "CCP3", "CCP4", "CCP5", "CCP6", "CCP7", "CCP8", "T1",
    "T2", "FTT9h", "TTP7h", "TPP9h", "FTT10h", "TPP8h", "TPP10h", "FP1-F7", "F7-T7", "T7-P7",
    "P7-O1", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
)

_CANONICAL_BY_UPPER = {name.upper(): name for name in LABRAM_VOCABULARY}
_INDEX_BY_NAME = {name: i for i, name in enumerate(LABRAM_VOCABULARY)}

# Labels after "-" that name a reference, not a second electrode: "FP1-REF", "FP1-LE", "C3-A1".
_REFERENCE_SUFFIXES = frozenset(
    {"REF", "LE", "RE", "AR", "AVG", "AV", "CAR", "LINKED", "A1", "A2", "M1", "M2", "A1A2", "M1M2"}
)
# Electrodes that are themselves references: "A1-REF" is A1, but "A2-A1" (a reference electrode
# against another) is an ear-to-ear derivation, not A2.
_REFERENCE_ELECTRODES = frozenset({"A1", "A2", "M1", "M2"})
_COMBINED_REFERENCES = _REFERENCE_ELECTRODES | {"A1A2", "M1M2"}
_PREFIX = re.compile(r"^(EEG|EOG|EMG|ECG|POL)[\s:_-]+", re.IGNORECASE)


def normalize_channel_name(label: str) -> str | None:
    """Return the vocabulary spelling that ``label`` denotes, or ``None`` if it denotes none.

    Handles modality prefixes (``EEG Fp1``), reference suffixes (``-REF``, ``-LE``, ``-A1``,
    ``-M2``...), trailing dots (``Fp1.``), case, and bipolar pairs (``FP1-F7`` maps to the
    vocabulary's bipolar row when it has one). Old and new 10-20 names (T3/T7...) stay distinct,
    as they are distinct rows of the official table.
    """
    text = _PREFIX.sub("", label.strip()).strip().rstrip(".").strip()
    if not text:
        return None
    direct = _CANONICAL_BY_UPPER.get(text.upper())
    if direct is not None:
        return direct
    parts = [p.strip() for p in re.split(r"\s*-\s*", text) if p.strip()]
    if len(parts) != 2:
        return None
    first, second = parts[0].upper(), parts[1].upper()
    ear_to_ear = first in _REFERENCE_ELECTRODES and second in _COMBINED_REFERENCES
    if second in _REFERENCE_SUFFIXES and not ear_to_ear:
        return _CANONICAL_BY_UPPER.get(first)
    if first in _CANONICAL_BY_UPPER and second in _CANONICAL_BY_UPPER:
        return _CANONICAL_BY_UPPER.get(f"{first}-{second}")
    return None


@dataclass(frozen=True)
class ChannelMatch:
    """One input label and what became of it."""

    position: int
    label: str
    name: str | None
    index: int | None
    reason: str = ""


@dataclass
class ChannelMapping:
    """The result of mapping a recording's channel labels onto the vocabulary.

    ``kept`` lists the matches that survive (in input order); ``dropped`` the labels that were
    not mapped, each with the reason. ``positions`` and ``indices`` are ready for slicing a
    ``[C, T]`` signal and for the model's spatial embedding.
    """

    matches: list[ChannelMatch] = field(default_factory=list)

    @property
    def kept(self) -> list[ChannelMatch]:
        return [m for m in self.matches if m.index is not None]

    @property
    def dropped(self) -> list[ChannelMatch]:
        return [m for m in self.matches if m.index is None]

    @property
    def positions(self) -> list[int]:
        return [m.position for m in self.kept]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.kept]  # type: ignore[misc]

    @property
    def indices(self) -> list[int]:
        return [m.index for m in self.kept]  # type: ignore[misc]

    def report(self) -> str:
        """A human-readable table: one line per input label."""
        lines = []
        for m in self.matches:
            if m.index is not None:
                lines.append(f"  {m.label!r:>20} -> {m.name} (vocabulary index {m.index})")
            else:
                lines.append(f"  {m.label!r:>20} -> dropped: {m.reason}")
        header = f"{len(self.kept)} of {len(self.matches)} channels mapped to the LaBraM vocabulary"
        return "\n".join([header, *lines])

    def to_dict(self) -> dict:
        return {
            "mapped": {m.label: m.name for m in self.kept},
            "dropped": {m.label: m.reason for m in self.dropped},
        }


def map_channels(labels: Sequence[str], types: Sequence[str] | None = None) -> ChannelMapping:
    """Map channel labels onto the vocabulary, reporting every label's fate.

    A label whose channel type (when given) is not ``eeg`` is dropped as non-EEG; a label that
    normalises to no vocabulary name is dropped as unknown; a second label normalising to a name
    already taken is dropped as a duplicate (the first one wins).
    """
    mapping = ChannelMapping()
    taken: dict[str, str] = {}
    for position, label in enumerate(labels):
        ch_type = types[position].lower() if types is not None else "eeg"
        name = normalize_channel_name(label) if ch_type == "eeg" else None
        if ch_type != "eeg":
            match = ChannelMatch(position, label, None, None, f"channel type {ch_type!r} is not EEG")
        elif name is None:
            match = ChannelMatch(position, label, None, None, "not a name in the LaBraM vocabulary")
        elif name in taken:
            reason = f"duplicate of {taken[name]!r} (both map to {name})"
            match = ChannelMatch(position, label, None, None, reason)
        else:
            taken[name] = label
            match = ChannelMatch(position, label, name, _INDEX_BY_NAME[name])
        mapping.matches.append(match)
    return mapping


def vocabulary_indices(names: Iterable[str]) -> list[int]:
    """Vocabulary indices of channel names (any spelling :func:`normalize_channel_name` accepts).

    Raises :class:`ChannelError` naming the first channel that is not in the vocabulary.
    """
    indices = []
    for label in names:
        name = normalize_channel_name(label)
        if name is None:
            raise ChannelError(
                f"channel {label!r} is not in the LaBraM vocabulary; rename it to a 10-20/10-10 "
                "name (see neurofm.channels.LABRAM_VOCABULARY) or drop it before calling the model"
            )
        indices.append(_INDEX_BY_NAME[name])
    return indices
