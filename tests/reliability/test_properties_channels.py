"""Properties of the channel-name normaliser, checked on generated labels (hypothesis)."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from neurofm.channels import LABRAM_VOCABULARY, map_channels, normalize_channel_name

VOCABULARY = set(LABRAM_VOCABULARY)
MONOPOLAR = [name for name in LABRAM_VOCABULARY if "-" not in name]
REFERENCE_ELECTRODES = {"A1", "A2", "M1", "M2"}

names = st.sampled_from(LABRAM_VOCABULARY)
monopolar_names = st.sampled_from(MONOPOLAR)
prefixes = st.sampled_from(["", "EEG ", "eeg ", "EEG:", "EEG_", "EEG-", "POL ", "  EEG  "])
reference_words = st.sampled_from(["REF", "Ref", "LE", "RE", "AR", "AVG", "CAR", "linked"])
reference_electrodes = st.sampled_from(["A1", "A2", "M1", "M2", "A1A2"])
# Local settings (not a global profile, which would change other modules' property tests).
thorough = settings(max_examples=300, deadline=None, derandomize=True)


@st.composite
def random_case(draw: st.DrawFn, text_strategy: st.SearchStrategy[str]) -> str:
    text = draw(text_strategy)
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(text, flips))


@thorough
@given(names)
def test_vocabulary_names_normalise_to_themselves(name: str) -> None:
    assert normalize_channel_name(name) == name


@thorough
@given(st.text())
def test_normalisation_is_idempotent(label: str) -> None:
    name = normalize_channel_name(label)
    if name is not None:
        assert normalize_channel_name(name) == name


@thorough
@given(random_case(names))
def test_normalisation_ignores_case_of_vocabulary_names(label: str) -> None:
    assert normalize_channel_name(label) == next(n for n in LABRAM_VOCABULARY if n.upper() == label.upper())


@thorough
@given(st.text(alphabet=string.ascii_letters + string.digits + " -_.:"))
def test_normalisation_is_case_insensitive_on_any_ascii_label(label: str) -> None:
    assert normalize_channel_name(label.lower()) == normalize_channel_name(label.upper())


@thorough
@given(prefixes, random_case(names), st.sampled_from(["", ".", " "]))
def test_modality_prefixes_and_trailing_dots_do_not_change_the_name(prefix: str, label: str, tail: str) -> None:
    assert normalize_channel_name(prefix + label + tail) == normalize_channel_name(label)


@thorough
@given(prefixes, monopolar_names, st.sampled_from(["-", " - ", " -"]), reference_words)
def test_reference_suffixes_do_not_change_a_monopolar_name(
    prefix: str, name: str, dash: str, reference: str
) -> None:
    assert normalize_channel_name(f"{prefix}{name}{dash}{reference}") == name


@thorough
@given(monopolar_names, reference_electrodes)
def test_reference_electrode_suffixes_mean_monopolar_except_between_reference_electrodes(
    name: str, reference: str
) -> None:
    expected = None if name in REFERENCE_ELECTRODES else name
    assert normalize_channel_name(f"{name}-{reference}") == expected


@thorough
@given(st.text())
def test_never_raises_and_never_leaves_the_vocabulary(label: str) -> None:
    assert normalize_channel_name(label) in VOCABULARY | {None}


@thorough
@given(st.lists(st.one_of(st.text(max_size=12), names, random_case(names)), max_size=30))
def test_mapping_accounts_for_every_label_and_keeps_names_unique(labels: list[str]) -> None:
    mapping = map_channels(labels)
    assert len(mapping.kept) + len(mapping.dropped) == len(labels)
    assert len(set(mapping.names)) == len(mapping.names)
    assert all(0 <= i < len(LABRAM_VOCABULARY) for i in mapping.indices)
    assert mapping.positions == sorted(mapping.positions)
    assert all(m.reason for m in mapping.dropped)
