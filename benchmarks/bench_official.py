"""neurofm side by side with the official LaBraM code, in one process, on the same shapes (issue 19).

The official modules (``modeling_pretrain``, ``modeling_vqnsp``, ``modeling_finetune``) are imported
from a clone of https://github.com/935963004/LaBraM that the user points at (``--official PATH``;
never copied into this repository), with its pinned ``timm==0.4.12`` importable (install it into a
scratch target: ``pip install --no-deps --target DIR timm==0.4.12`` and pass ``--official-deps
DIR``). timm 0.4.12's ``timm.data`` imports torchvision for image transforms that the EEG models
never use; where torchvision is not importable (the PyPI build does not load beside a CPU torch),
``timm.data`` is given its constants module alone, which is all the model files import from it.

Workloads (issue 19; the developers' benchmark shapes): a masked-EEG-modelling step of LaBraM-Base,
batch 8 × 19 channels × 10 s, AdamW, the tokenizer computing the targets inside the step; a VQ-NSP
Base tokenizer training step, batch 8; inference of the fine-tuning model, batch 32. The official
steps follow its ``engine_for_pretraining.py`` / ``engine_for_vqnsp.py`` loops (input in 100 µV,
two separate symmetric passes, cross-entropy on the masked and the visible tokens, its AdamW,
no gradient clipping: its ``--clip_grad`` default is None); its ``torch.cuda.amp.autocast`` is a
no-op on a CPU, so the official code runs fp32 there (on a GPU these rows also time it in fp32: its
fp16 autocast is not measured here, so GPU ratios against it would read high). neurofm runs as its engine does (batched
symmetric passes, fused AdamW, SDPA) in fp32, and in bf16 autocast where the device's bf16 matmul
beats fp32. Both sides start from a random initialisation of the same architecture and get the
same batch; the two are timed alternately, ``rounds`` times, and each side's best round is kept,
so a load change on a shared machine hits both.

Every ratio is official seconds per step over neurofm seconds per step, and is also printed as
``side-by-side WORKLOAD DTYPE: R.RRx official (CPU)`` (``benchmarks/run.py`` appends those lines
to docs/benchmarks.md below the table).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference
from bench_models import TEN_TWENTY, _batch, _mem_objective, _row, _train_step
from neurofm.channels import vocabulary_indices
from neurofm.engine.config import OptimConfig
from neurofm.engine.optim import build_optimizer
from neurofm.models.registry import create_model
from neurofm.objectives.vq import VQNSPObjective

OFFICIAL_TIMM = "0.4.12"
OFFICIAL_MODULES = ("modeling_finetune", "modeling_pretrain", "modeling_vqnsp")
#: The official scripts' defaults (layer scale 0.1, absolute positions), drop path 0 as in neurofm's
#: named models, so that both sides compute the same network.
OFFICIAL_ARCHITECTURE = {"init_values": 0.1, "drop_path_rate": 0.0, "use_abs_pos_emb": True}
ABSENT_NOTE = ("no --official PATH given: the side-by-side ratios need a clone of the official "
               "LaBraM repository and timm 0.4.12 (see benchmarks/bench_official.py)")


class OfficialCodeError(RuntimeError):
    """The official code or its pinned timm could not be imported; the message says what to do."""


def cpu_tag() -> str:
    """The device's matrix units in the issue's vocabulary: the GPU's name, or amx,
    avx512_bf16 or avx2 from ``/proc/cpuinfo``."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return "avx2"


def _timm_data_constants_only(timm_root: Path) -> None:
    """Register ``timm.data`` as its constants module (see the module docstring)."""
    spec = importlib.util.spec_from_file_location("timm.data.constants", timm_root / "data" / "constants.py")
    if spec is None or spec.loader is None:
        raise OfficialCodeError(f"{timm_root} has no data/constants.py: is it timm {OFFICIAL_TIMM}?")
    constants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(constants)
    package = types.ModuleType("timm.data")
    package.__dict__.update({k: v for k, v in vars(constants).items() if k.isupper()})
    package.constants = constants  # type: ignore[attr-defined]
    sys.modules["timm.data"] = package
    sys.modules["timm.data.constants"] = constants


def load_official(path: Path, deps: Path | None = None) -> types.SimpleNamespace:
    """Import the official model modules from the clone at ``path`` (timm from ``deps`` if given)."""
    path = Path(path).resolve()
    missing = [f"{name}.py" for name in OFFICIAL_MODULES if not (path / f"{name}.py").is_file()]
    if missing:
        raise OfficialCodeError(
            f"{path} is not a clone of the official LaBraM repository: {', '.join(missing)} missing; "
            "clone https://github.com/935963004/LaBraM and pass its folder as --official")
    if deps is not None:
        sys.path.insert(0, str(Path(deps).resolve()))
    timm_spec = importlib.util.find_spec("timm")
    if timm_spec is None or timm_spec.origin is None:
        raise OfficialCodeError(
            f"timm is not importable; install the official code's pin into a scratch target: "
            f"pip install --no-deps --target DIR timm=={OFFICIAL_TIMM}, then pass --official-deps DIR")
    if importlib.util.find_spec("torchvision") is None:
        _timm_data_constants_only(Path(timm_spec.origin).parent)
    import timm

    if timm.__version__ != OFFICIAL_TIMM:
        raise OfficialCodeError(
            f"timm {timm.__version__} found at {timm_spec.origin}; the official code pins {OFFICIAL_TIMM}: "
            f"pip install --no-deps --target DIR timm=={OFFICIAL_TIMM} and pass --official-deps DIR")
    sys.path.insert(0, str(path))
    return types.SimpleNamespace(**{name: importlib.import_module(name) for name in OFFICIAL_MODULES})


def _official_input_chans() -> list[int]:
    """The official ``utils.get_input_chans``: 0 for the class token, then 1 + the 10-20 index."""
    return [0] + [index + 1 for index in vocabulary_indices(TEN_TWENTY)]


def _patches(signal: torch.Tensor) -> torch.Tensor:
    return signal.reshape(*signal.shape[:2], -1, 200)


def _official_mask(batch_size: int, tokens: int, generator: torch.Generator, device: str) -> torch.Tensor:
    """``engine_for_pretraining.random_masking`` at ratio 0.5: argsort of uniform noise."""
    noise = torch.rand(batch_size, tokens, generator=generator).to(device)
    keep = int(tokens * 0.5)
    ranks = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    return ranks >= keep


def official_mem_step(official: types.SimpleNamespace, batch: dict[str, torch.Tensor],
                      device: str) -> Callable[[], float]:
    """One official masked-EEG-modelling step (targets from its tokenizer, two symmetric passes)."""
    torch.manual_seed(0)
    model = official.modeling_pretrain.labram_base_patch200_1600_8k_vocab(**OFFICIAL_ARCHITECTURE).to(device).train()
    tokenizer = official.modeling_vqnsp.vqnsp_encoder_base_decoder_3x200x12(
        EEG_size=1600, n_code=8192, code_dim=32).to(device).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), weight_decay=0.05)
    samples, chans = _patches(batch["signal"]), _official_input_chans()
    generator = torch.Generator().manual_seed(1)

    def step() -> float:
        mask = _official_mask(samples.shape[0], samples.shape[1] * samples.shape[2], generator, device)
        with torch.no_grad():
            codes = tokenizer.get_codebook_indices(samples, chans)
        logits, logits_sym = model(samples, chans, bool_masked_pos=mask)
        loss = F.cross_entropy(logits, codes[mask]) + F.cross_entropy(logits_sym, codes[~mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())
    return step


def neurofm_mem_step(batch: dict[str, torch.Tensor], device: str, bf16: bool) -> Callable[[], float]:
    """neurofm's masked-EEG-modelling step as its engine runs it (targets computed in the step)."""
    torch.manual_seed(0)
    model = create_model("labram_base_mem").to(device)
    tokenizer = create_model("vqnsp_base", kmeans_init=False).to(device).eval()
    objective = _mem_objective(model, tokenizer, {"batched symmetric", "bf16"} if bf16 else {"batched symmetric"})
    optimizer = build_optimizer(model, OptimConfig(betas=(0.9, 0.98)), lr=5e-4)
    return _train_step(objective, optimizer, batch)


def official_tokenizer_step(official: types.SimpleNamespace, batch: dict[str, torch.Tensor],
                            device: str) -> Callable[[], float]:
    """One official VQ-NSP training step (``engine_for_vqnsp.train_one_epoch``)."""
    torch.manual_seed(0)
    tokenizer = official.modeling_vqnsp.vqnsp_encoder_base_decoder_3x200x12(
        EEG_size=1600, n_code=8192, code_dim=32).to(device).train()
    optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=5e-5, betas=(0.9, 0.99), weight_decay=1e-4)
    chans = _official_input_chans()

    def step() -> float:
        loss, _ = tokenizer(batch["signal"], input_chans=chans)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())
    return step


def neurofm_tokenizer_step(batch: dict[str, torch.Tensor], device: str, bf16: bool) -> Callable[[], float]:
    """neurofm's VQ-NSP training step."""
    torch.manual_seed(0)
    tokenizer = create_model("vqnsp_base").to(device)
    objective = VQNSPObjective(tokenizer, autocast_dtype=torch.bfloat16 if bf16 else None).train()
    optimizer = build_optimizer(tokenizer, OptimConfig(betas=(0.9, 0.99), weight_decay=1e-4), lr=5e-5)
    return _train_step(objective, optimizer, batch)


def official_inference(official: types.SimpleNamespace, batch: dict[str, torch.Tensor],
                       device: str) -> Callable[[], torch.Tensor]:
    """The official fine-tuning model's forward (``engine_for_finetuning.evaluate``), no head."""
    torch.manual_seed(0)
    model = official.modeling_finetune.labram_base_patch200_200(num_classes=0, **OFFICIAL_ARCHITECTURE)
    model = model.to(device).eval()
    samples, chans = _patches(batch["signal"]), _official_input_chans()

    def embed() -> torch.Tensor:
        with torch.inference_mode():
            return model(samples, input_chans=chans)
    return embed


def neurofm_inference(batch: dict[str, torch.Tensor], device: str, bf16: bool) -> Callable[[], torch.Tensor]:
    """neurofm's pooled features of the same input."""
    torch.manual_seed(0)
    model = create_model("labram_base", ch_names=TEN_TWENTY).to(device).eval()

    def embed() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            return model.features(batch)
    return embed


def _alternate(steps: dict[str, Callable[[], object]], repeats: int, rounds: int, device: str) -> dict[str, float]:
    """Best seconds per call of each step over ``rounds`` alternating rounds of ``repeats`` calls."""
    best = {name: float("inf") for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            best[name] = min(best[name], reference.seconds_per_step(step, repeats, device))
    return best


def side_by_side_line(workload: str, dtype: str, ratio: float, tag: str) -> str:
    """The checkable one-line form of a ratio (issue 19)."""
    return f"side-by-side {workload} {dtype}: {ratio:.2f}x official ({tag})"


def run(quick: bool = False, official_path: Path | None = None, official_deps: Path | None = None) -> list[dict]:
    """Official and neurofm timed alternately on every workload; one row per ratio."""
    if official_path is None:
        return [_row("side-by-side with the official LaBraM code", float("nan"), "x official", note=ABSENT_NOTE)]
    official = load_official(official_path, official_deps)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tag = cpu_tag()
    fp32_rate = reference.matmul_gflops(torch.float32, device=device)
    bf16_rate = reference.matmul_gflops(torch.bfloat16, device=device)
    dtypes = ["fp32"] + (["bf16"] if bf16_rate > fp32_rate else [])
    seconds = 4 if quick else 10
    train_batch, infer_batch = _batch(2 if quick else 8, seconds, device), _batch(8 if quick else 32, seconds, device)
    repeats, rounds = (1, 1) if quick else (2, 3)
    workloads = {
        "mem": (train_batch, official_mem_step, neurofm_mem_step, "MEM step LaBraM-Base, AdamW, targets included"),
        "tokenizer": (train_batch, official_tokenizer_step, neurofm_tokenizer_step, "VQ-NSP Base step, AdamW"),
        "inference": (infer_batch, official_inference, neurofm_inference, "inference LaBraM-Base"),
    }
    rows = []
    for workload, (batch, official_step, neurofm_step, title) in workloads.items():
        steps: dict[str, Callable[[], object]] = {"official fp32": official_step(official, batch, device)}
        steps.update({f"neurofm {dtype}": neurofm_step(batch, device, dtype == "bf16") for dtype in dtypes})
        timings = _alternate(steps, repeats, rounds, device)
        shape = f"batch {batch['signal'].shape[0]} x 19 ch x {seconds} s"
        for dtype in dtypes:
            ratio = timings["official fp32"] / timings[f"neurofm {dtype}"]
            line = side_by_side_line(workload, dtype, ratio, tag)
            row = _row(f"{title}, {shape}, neurofm {dtype} vs official fp32", ratio, "x official",
                       "official code, same process and shapes (s/step)", timings["official fp32"], "",
                       f"neurofm {timings[f'neurofm {dtype}']:.3f} s/step; best of {rounds} alternating rounds "
                       f"of {repeats}; fp32 matmul {fp32_rate:.0f} GFLOP/s, bf16 {bf16_rate:.0f}; {line}")
            row["line"] = line
            rows.append(row)
        if "bf16" not in dtypes:
            rows.append(_row(f"{title}, neurofm bf16", float("nan"), "x official",
                             note=f"not run: bf16 matmul {bf16_rate:.3g} GFLOP/s is not faster than fp32 "
                                  f"{fp32_rate:.3g} GFLOP/s on this {tag} CPU (no bf16 units)"))
    return rows
