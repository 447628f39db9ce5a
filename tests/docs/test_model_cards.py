"""docs/model-cards.md has one card per registered model, and each card's parameter count is the code's."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from neurofm.models.registry import create_model, list_models, registered_by

CARDS = Path(__file__).resolve().parents[2] / "docs" / "model-cards.md"
CARD = re.compile(r"^## (?P<name>\S+)\n(?P<body>.*?)(?=^## |\Z)", re.DOTALL | re.MULTILINE)
PARAMETERS = re.compile(r"^\| parameters \| (?P<count>[\d,]+) \|$", re.MULTILINE)


def documented_counts() -> dict[str, int]:
    """Card name -> the parameter count its table states."""
    counts = {}
    for card in CARD.finditer(CARDS.read_text(encoding="utf-8")):
        match = PARAMETERS.search(card["body"])
        assert match, f"card {card['name']} states no parameter count"
        counts[card["name"]] = int(match["count"].replace(",", ""))
    return counts


def trainable_parameters(name: str) -> int:
    """Parameters of the registered model ``name``; built without memory where the model allows."""
    try:
        with torch.device("meta"):
            model = create_model(name)
    except NotImplementedError:  # a builder that computes on tensors at construction
        model = create_model(name)
    return sum(parameter.numel() for parameter in model.parameters())


def test_every_registered_model_has_exactly_one_card():
    names = [card["name"] for card in CARD.finditer(CARDS.read_text(encoding="utf-8"))]
    # Families registered by tests from outside neurofm (tests/families) have no card here.
    assert sorted(names) == [m for m in list_models() if registered_by(m).startswith("neurofm.")]


def test_each_cards_parameter_count_matches_the_code():
    for name, count in documented_counts().items():
        assert trainable_parameters(name) == count, name
