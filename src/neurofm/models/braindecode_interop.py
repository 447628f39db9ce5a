"""Moving LaBraM backbone weights between neurofm and ``braindecode.models.Labram``.

braindecode is optional and imported only inside the functions that need it (on some installs,
for example beside a CPU-only torch, its torchaudio dependency fails to load). The key mapping is
plain data and works without it.

braindecode's names differ from the official ones that neurofm keeps (from
``braindecode/models/labram.py``): ``pos_embed`` is ``position_embedding``, the time table is
``temporal_embedding`` with ``n_patches + 1`` rows instead of 16 (braindecode uses rows
0..n_patches-1 for a window of n_patches, as the official code does), the temporal encoder lives
under ``patch_embed.temporal_conv``, the MLP is a ``Sequential`` (``mlp.0`` = fc1, ``mlp.2`` = fc2)
and the head is ``final_layer``. Exporting keeps the first ``n_patches + 1`` time rows; importing
fills neurofm's remaining rows with zeros (no window of that model's length reaches them).
braindecode reorders input channels into vocabulary order; LaBraM's pooled output does not depend
on channel order, so outputs agree up to float rounding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from neurofm.models.labram import MAX_PATCHES, PATCH_SIZE, SAMPLING_RATE, Labram, LabramConfig

_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^pos_embed$", "position_embedding"),
    (r"^time_embed$", "temporal_embedding"),
    (r"^patch_embed\.", "patch_embed.temporal_conv."),
    (r"^(blocks\.\d+\.mlp)\.fc1\.", r"\1.0."),
    (r"^(blocks\.\d+\.mlp)\.fc2\.", r"\1.2."),
    (r"^head\.", "final_layer."),
)


def braindecode_key(key: str) -> str:
    """The braindecode ``Labram`` name of a neurofm :class:`Labram` state-dict key."""
    for pattern, replacement in _RENAMES:
        key, count = re.subn(pattern, replacement, key)
        if count:
            return key
    return key


def neurofm_key(key: str) -> str:
    """The neurofm name of a braindecode ``Labram`` state-dict key (inverse of :func:`braindecode_key`)."""
    inverse = (
        (r"^position_embedding$", "pos_embed"),
        (r"^temporal_embedding$", "time_embed"),
        (r"^patch_embed\.temporal_conv\.", "patch_embed."),
        (r"^(blocks\.\d+\.mlp)\.0\.", r"\1.fc1."),
        (r"^(blocks\.\d+\.mlp)\.2\.", r"\1.fc2."),
        (r"^final_layer\.", "head."),
    )
    for pattern, replacement in inverse:
        key, count = re.subn(pattern, replacement, key)
        if count:
            return key
    return key


def to_braindecode_state_dict(model: Labram, n_patches: int) -> dict[str, torch.Tensor]:
    """neurofm backbone weights under braindecode's names, for windows of ``n_patches`` seconds."""
    state = {}
    for key, value in model.state_dict().items():
        if key == "time_embed":
            rows = value[:, : n_patches + 1]
            if rows.shape[1] < n_patches + 1:  # 16-s windows: braindecode's last row is never read
                rows = torch.cat((rows, torch.zeros_like(value[:, :1])), dim=1)
            value = rows
        state[braindecode_key(key)] = value.detach().clone()
    return state


def from_braindecode_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """braindecode ``Labram`` weights under neurofm's names (time table padded to 16 rows)."""
    ours = {}
    for key, value in state.items():
        name = neurofm_key(key)
        if name == "time_embed":
            rows = value[:, :MAX_PATCHES]
            value = torch.cat((rows, rows.new_zeros(1, MAX_PATCHES - rows.shape[1], rows.shape[2])), dim=1)
        ours[name] = value.detach().clone()
    return ours


def _braindecode_labram() -> Any:
    try:
        from braindecode.models import Labram as BraindecodeLabram
    except Exception as error:  # any import failure (missing package, broken torchaudio) is the same
        raise ImportError(f"braindecode is not importable here ({error}); install a braindecode that "
                          "loads beside this torch to use the interop functions") from error
    return BraindecodeLabram


def export_to_braindecode(model: Labram, n_times: int, ch_names: Sequence[str] | None = None) -> Any:
    """A ``braindecode.models.Labram`` with ``model``'s weights, for windows of ``n_times`` samples."""
    names = list(ch_names or model.ch_names or [])
    if not names:
        raise ValueError("export_to_braindecode needs the channel names (ch_names=...)")
    if n_times % PATCH_SIZE:
        raise ValueError(f"n_times must be a multiple of {PATCH_SIZE}, got {n_times}")
    config = model.config
    bd_model = _braindecode_labram()(
        n_times=n_times, n_outputs=model.n_outputs, chs_info=[{"ch_name": name} for name in names],
        n_chans=len(names), sfreq=SAMPLING_RATE, patch_size=PATCH_SIZE, embed_dim=config.embed_dim,
        conv_out_channels=config.conv_channels, num_layers=config.depth, num_heads=config.num_heads,
        mlp_ratio=config.mlp_dim / config.embed_dim, qkv_bias=config.qkv_bias,
        init_values=config.init_values, use_mean_pooling=config.use_mean_pooling,
    )
    bd_model.load_state_dict(to_braindecode_state_dict(model, n_times // PATCH_SIZE), strict=True)
    return bd_model.eval()


def import_from_braindecode(bd_model: Any, config: LabramConfig = LabramConfig()) -> Labram:
    """A neurofm :class:`Labram` with the weights of a ``braindecode.models.Labram``."""
    state = from_braindecode_state_dict(bd_model.state_dict())
    n_outputs = state["head.weight"].shape[0] if "head.weight" in state else 0
    try:
        names = [ch["ch_name"] for ch in bd_model.chs_info]
    except (ValueError, AttributeError, TypeError, KeyError):  # braindecode raises when chs_info is unset
        names = None
    model = Labram(n_outputs=n_outputs, ch_names=names, config=config)
    model.load_state_dict(state, strict=True)
    return model.eval()
