"""Moving LaBraM backbone weights between neurofm and ``braindecode.models.Labram``.

Tested against braindecode :data:`BRAINDECODE_VERSION` (docs/braindecode.md). braindecode is
imported only by :func:`export_to_braindecode`; the state-dict functions are plain tensors and
names and work without it (braindecode imports torchaudio, which does not load beside every
torch; a translated state dict saved with safetensors moves the weights between environments).

braindecode's names differ from the official ones that neurofm keeps: ``pos_embed`` is
``position_embedding``, the time table is ``temporal_embedding`` with ``n_patches + 1`` rows
instead of 16 (braindecode builds one model per window length and reads rows 0..n_patches-1, as
the official code does), the temporal encoder lives under ``patch_embed.temporal_conv``, the MLP
is a ``Sequential`` (``mlp.0`` = fc1, ``mlp.2`` = fc2) and the head is ``final_layer``. Exporting
keeps the first ``n_patches + 1`` time rows (a zero row past 16 patches, which braindecode never
reads); importing fills neurofm's rows past braindecode's table with zeros (no window of that
model's length reaches them). braindecode's ``forward`` takes the channel names per call
(``model(x, ch_names=[...])``) and picks the same spatial rows as neurofm: both use the official
128-name vocabulary, in the same order, matched case-insensitively.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from neurofm.errors import CheckpointError, ConfigError
from neurofm.models.backbone import load_state_strict
from neurofm.models.labram import MAX_PATCHES, PATCH_SIZE, SAMPLING_RATE, Labram, LabramConfig

#: The braindecode release the mapping and the equal-output tests were checked against.
BRAINDECODE_VERSION = "1.8.1"

_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^pos_embed$", "position_embedding"),
    (r"^time_embed$", "temporal_embedding"),
    (r"^patch_embed\.", "patch_embed.temporal_conv."),
    (r"^(blocks\.\d+\.mlp)\.fc1\.", r"\1.0."),
    (r"^(blocks\.\d+\.mlp)\.fc2\.", r"\1.2."),
    (r"^head\.", "final_layer."),
)
_INVERSE: tuple[tuple[str, str], ...] = (
    (r"^position_embedding$", "pos_embed"),
    (r"^temporal_embedding$", "time_embed"),
    (r"^patch_embed\.temporal_conv\.", "patch_embed."),
    (r"^(blocks\.\d+\.mlp)\.0\.", r"\1.fc1."),
    (r"^(blocks\.\d+\.mlp)\.2\.", r"\1.fc2."),
    (r"^final_layer\.", "head."),
)


def _rename(key: str, table: tuple[tuple[str, str], ...]) -> str:
    for pattern, replacement in table:
        key, count = re.subn(pattern, replacement, key)
        if count:
            return key
    return key


def braindecode_key(key: str) -> str:
    """The braindecode ``Labram`` name of a neurofm :class:`Labram` state-dict key."""
    return _rename(key, _RENAMES)


def neurofm_key(key: str) -> str:
    """The neurofm name of a braindecode ``Labram`` state-dict key (inverse of :func:`braindecode_key`)."""
    return _rename(key, _INVERSE)


def _patches(n_times: int) -> int:
    if n_times % PATCH_SIZE or not 1 <= n_times // PATCH_SIZE <= MAX_PATCHES:
        raise ConfigError(
            f"n_times must be a multiple of {PATCH_SIZE} samples between {PATCH_SIZE} and "
            f"{PATCH_SIZE * MAX_PATCHES} (1 to {MAX_PATCHES} s at {SAMPLING_RATE:g} Hz), got {n_times}")
    return n_times // PATCH_SIZE


def to_braindecode_state_dict(model: Labram, n_times: int) -> dict[str, torch.Tensor]:
    """``model``'s weights under braindecode's names, for a braindecode model of ``n_times`` samples."""
    n_patches = _patches(n_times)
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
            if value.ndim != 3 or not 2 <= value.shape[1] <= MAX_PATCHES + 1:
                raise CheckpointError(
                    f"braindecode temporal_embedding has shape {tuple(value.shape)}: a model for "
                    f"{value.shape[1] - 1} patches; neurofm's LaBraM takes 1 to {MAX_PATCHES} "
                    "one-second patches (rebuild the braindecode model with n_times <= "
                    f"{PATCH_SIZE * MAX_PATCHES})")
            rows = value[:, :MAX_PATCHES]
            value = torch.cat((rows, rows.new_zeros(1, MAX_PATCHES - rows.shape[1], rows.shape[2])), dim=1)
        ours[name] = value.detach().clone()
    return ours


def braindecode_config(state: Mapping[str, torch.Tensor], num_heads: int | None = None) -> LabramConfig:
    """The :class:`LabramConfig` of a braindecode ``Labram`` state dict, read from its shapes.

    The head count is read from the q/k norms (per-head LayerNorms); without them (braindecode's
    ``qk_norm=None``) pass ``num_heads``. ``init_values`` (an initialisation only) is the default
    when the blocks carry layer scale, 0 when they do not.
    """
    needed = ("cls_token", "patch_embed.temporal_conv.conv1.weight", "blocks.0.mlp.0.weight")
    missing = [key for key in needed if key not in state]
    if missing:
        raise CheckpointError(f"not a braindecode Labram state dict in neural-tokenizer mode: no "
                              f"{', '.join(missing)}")
    dim = int(state["cls_token"].shape[-1])
    qk_norm = "blocks.0.attn.q_norm.weight" in state
    if qk_norm:
        head_dim = int(state["blocks.0.attn.q_norm.weight"].shape[0])
        if dim % head_dim or (num_heads is not None and num_heads * head_dim != dim):
            raise ConfigError(f"braindecode heads of {head_dim} features do not split D={dim} into "
                              f"{num_heads or 'whole'} heads; neurofm's LaBraM needs D = heads x head_dim")
        num_heads = dim // head_dim
    elif num_heads is None:
        raise ConfigError("this braindecode Labram has no q/k norms, so its state dict does not show "
                          "the head count: pass num_heads (the braindecode model's num_heads)")
    depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    return LabramConfig(
        embed_dim=dim,
        conv_channels=int(state["patch_embed.temporal_conv.conv1.weight"].shape[0]),
        depth=depth,
        num_heads=num_heads,
        mlp_dim=int(state["blocks.0.mlp.0.weight"].shape[0]),
        qkv_bias="blocks.0.attn.q_bias" in state,
        qk_norm=qk_norm,
        init_values=LabramConfig().init_values if "blocks.0.gamma_1" in state else 0.0,
        use_mean_pooling="fc_norm.weight" in state,
    )


def labram_from_braindecode_state_dict(
    state: Mapping[str, torch.Tensor],
    config: LabramConfig | None = None,
    num_heads: int | None = None,
    ch_names: Sequence[str] | None = None,
) -> Labram:
    """A neurofm :class:`Labram` holding a braindecode ``Labram`` state dict's weights.

    ``config`` defaults to :func:`braindecode_config` (``num_heads`` as there); the head size is
    ``final_layer``'s. Every tensor must fit (a :class:`~neurofm.errors.CheckpointError` names
    those that do not).
    """
    ours = from_braindecode_state_dict(state)
    config = config if config is not None else braindecode_config(state, num_heads)
    n_outputs = int(ours["head.weight"].shape[0]) if "head.weight" in ours else 0
    model = Labram(n_outputs=n_outputs, ch_names=ch_names, config=config)
    load_state_strict(model, ours, "the braindecode Labram state dict",
                      hint="Check that the braindecode model is a Labram in neural-tokenizer mode "
                           "and that config matches it.")
    return model.eval()


def _braindecode_labram() -> Any:
    try:
        from braindecode.models import Labram as BraindecodeLabram
    except Exception as error:  # any import failure (missing package, broken torchaudio) is the same
        raise ImportError(
            f"braindecode is not importable here ({error}); install braindecode=="
            f"{BRAINDECODE_VERSION} with a torchaudio that loads beside this torch, or move the "
            "weights as a state dict (to_braindecode_state_dict, docs/braindecode.md)") from error
    return BraindecodeLabram


def export_to_braindecode(model: Labram, n_times: int, ch_names: Sequence[str] | None = None) -> Any:
    """A ``braindecode.models.Labram`` with ``model``'s weights, for windows of ``n_times`` samples.

    Its ``chs_info`` holds ``ch_names`` (default: the model's); like any braindecode Labram on a
    channel subset it is called with the names, ``bd_model(x, ch_names=names)``.
    """
    names = list(ch_names or model.ch_names or [])
    if not names:
        raise ConfigError("export_to_braindecode needs the channel names (ch_names=...)")
    state = to_braindecode_state_dict(model, n_times)  # checks n_times first
    config = model.config
    if int(config.embed_dim * (config.mlp_dim / config.embed_dim)) != config.mlp_dim:
        raise ConfigError(f"braindecode sizes the MLP as int(D * mlp_ratio), which cannot give "
                          f"mlp_dim={config.mlp_dim} for D={config.embed_dim}")
    with warnings.catch_warnings():
        # braindecode warns that chs_info is not its full 128-channel order; forward takes ch_names.
        warnings.filterwarnings("ignore", message="Labram chs_info does not match", category=UserWarning)
        bd_model = _braindecode_labram()(
            n_times=n_times, n_outputs=model.n_outputs, chs_info=[{"ch_name": name} for name in names],
            n_chans=len(names), sfreq=SAMPLING_RATE, patch_size=PATCH_SIZE,
            embed_dim=config.embed_dim, conv_out_channels=config.conv_channels,
            num_layers=config.depth, num_heads=config.num_heads,
            mlp_ratio=config.mlp_dim / config.embed_dim, qkv_bias=config.qkv_bias,
            qk_norm=nn.LayerNorm if config.qk_norm else None, init_values=config.init_values,
            drop_path_prob=config.drop_path, use_mean_pooling=config.use_mean_pooling,
        )
    load_state_strict(bd_model, state, "the neurofm LaBraM")
    return bd_model.eval()


def import_from_braindecode(bd_model: Any) -> Labram:
    """A neurofm :class:`Labram` with the weights (and channel names) of a ``braindecode.models.Labram``."""
    if not getattr(bd_model, "neural_tokenizer", False):
        raise ConfigError("only a braindecode Labram in neural-tokenizer mode (the default, raw "
                          "EEG in) corresponds to neurofm's LaBraM backbone")
    try:
        names = [ch["ch_name"] for ch in bd_model.chs_info]
    except (ValueError, AttributeError, TypeError, KeyError):  # braindecode raises when chs_info is unset
        names = None
    return labram_from_braindecode_state_dict(bd_model.state_dict(),
                                              num_heads=bd_model.blocks[0].attn.num_heads,
                                              ch_names=names)
