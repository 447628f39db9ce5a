"""Supervised objective for downstream tasks: head outputs -> loss, metrics, predictions.

Three target kinds (METHODS.md §5):

- ``"binary"``: one logit per window, BCE-with-logits against labels 0/1 (as LaBraM on TUAB),
  optionally with ``pos_weight`` (negatives per positive) against class imbalance;
  predictions are the probabilities ``[1 - p, p]`` so that binary and multi-class results have the
  same ``[B, K]`` layout.
- ``"multiclass"``: K logits, cross-entropy with label smoothing (0.1 in the LaBraM recipe) and
  optional per-class weights; predictions are the softmax.
- ``"regression"``: one output per target, mean squared error; predictions are the outputs.

The network is any module with ``forward(batch) -> outputs [B, n_outputs]`` (see
:class:`neurofm.tasks.backbones.TaskNetwork`); the objective knows nothing about the backbone.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from neurofm.errors import ConfigError
from neurofm.objectives.base import ObjectiveOutput

TargetKind = Literal["binary", "multiclass", "regression"]


def head_size(kind: TargetKind, n_classes: int) -> int:
    """Outputs the head needs: 1 logit for binary, K for multi-class, one per regression target."""
    if kind == "binary":
        if n_classes != 2:
            raise ConfigError(f"a binary target has 2 classes, got {n_classes}")
        return 1
    if n_classes < 1 or (kind == "multiclass" and n_classes < 2):
        raise ConfigError(f"a {kind} target needs at least {2 if kind == 'multiclass' else 1} "
                          f"outputs, got {n_classes}")
    return n_classes


def target_kind(n_classes: int) -> TargetKind:
    """The classification kind of a task with ``n_classes`` classes (binary when 2)."""
    return "binary" if n_classes == 2 else "multiclass"


class SupervisedObjective(nn.Module):
    """Loss and predictions of ``network`` on labelled batches.

    Args:
        network: ``forward(batch) -> outputs [B, n_outputs]`` (logits, or values for regression).
        kind: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        n_classes: classes (binary: 2) or regression targets.
        label_smoothing: multi-class only; the smoothing of the cross-entropy targets.
        class_weight: optional per-class loss weights ``[K]`` (:mod:`neurofm.tasks.imbalance`);
            a binary target uses ``class_weight[1] / class_weight[0]`` as BCE's ``pos_weight``.

    ``forward(batch)`` needs ``batch["label"]`` ``[B]`` (class ids; float ``[B]`` or ``[B, R]``
    for regression) and returns the loss with the detached metric ``accuracy`` (classification)
    or ``mse`` (regression).
    """

    class_weight: torch.Tensor | None  # a buffer, registered in __init__

    def __init__(self, network: nn.Module, kind: TargetKind, n_classes: int,
                 label_smoothing: float = 0.0, class_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        if kind not in ("binary", "multiclass", "regression"):
            raise ConfigError(f"unknown target kind {kind!r}; use binary, multiclass or regression")
        if label_smoothing and kind != "multiclass":
            raise ConfigError(f"label smoothing applies to multi-class targets, not {kind}; "
                              "set label_smoothing=0")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.network = network
        self.kind = kind
        self.n_classes = n_classes
        self.n_outputs = head_size(kind, n_classes)
        self.label_smoothing = label_smoothing
        if class_weight is not None:
            class_weight = torch.as_tensor(class_weight, dtype=torch.float32)
            if kind == "regression" or class_weight.shape != (n_classes,) or not bool(
                    (class_weight >= 0).all() and torch.isfinite(class_weight).all()):
                raise ConfigError(f"class weights must be {n_classes} finite values >= 0 for a "
                                  f"{kind} target, got {class_weight.tolist()}")
        # A buffer, so that it follows the module to the device (and is not trained).
        self.register_buffer("class_weight", class_weight, persistent=False)

    def outputs(self, batch: dict[str, Any]) -> torch.Tensor:
        """The network's raw outputs ``[B, n_outputs]`` (float32)."""
        outputs = self.network(batch).float()
        if outputs.ndim != 2 or outputs.shape[1] != self.n_outputs:
            raise ConfigError(f"the network returned outputs of shape {tuple(outputs.shape)}, "
                              f"expected [B, {self.n_outputs}] for a {self.kind} target")
        return outputs

    def loss(self, outputs: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The scalar loss of ``outputs [B, n_outputs]`` against ``label``."""
        weight = self.class_weight
        if self.kind == "binary":
            pos_weight = None if weight is None or weight[0] == 0 else weight[1:] / weight[0]
            return F.binary_cross_entropy_with_logits(outputs[:, 0], label.float(),
                                                      pos_weight=pos_weight)
        if self.kind == "multiclass":
            return F.cross_entropy(outputs, label.long(), weight=weight,
                                   label_smoothing=self.label_smoothing)
        return F.mse_loss(outputs, label.float().reshape(outputs.shape))

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, K]`` (binary: ``[1 - p, p]``) or regression values."""
        if self.kind == "binary":
            positive = torch.sigmoid(outputs[:, 0])
            return torch.stack((1.0 - positive, positive), dim=1)
        if self.kind == "multiclass":
            return outputs.softmax(dim=1)
        return outputs

    def evaluate_batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass: ``(loss, predictions)`` for validation and testing."""
        outputs = self.outputs(batch)
        return self.loss(outputs, self._label(batch)), self.predictions(outputs.detach())

    def forward(self, batch: dict[str, Any]) -> ObjectiveOutput:
        label = self._label(batch)
        outputs = self.outputs(batch)
        loss = self.loss(outputs, label)
        detached = outputs.detach()
        metrics: dict[str, float | torch.Tensor]
        if self.kind == "regression":
            metrics = {"mse": F.mse_loss(detached, label.float().reshape(detached.shape))}
        else:
            predicted = self.predictions(detached).argmax(dim=1)
            metrics = {"accuracy": (predicted == label.long()).float().mean()}
        return ObjectiveOutput(loss=loss, metrics=metrics)

    @staticmethod
    def _label(batch: dict[str, Any]) -> torch.Tensor:
        if "label" not in batch:
            raise ConfigError("the batch has no 'label': supervised fine-tuning needs labelled "
                              "windows (a task's window dataset)")
        return batch["label"]
