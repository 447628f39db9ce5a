"""neurofm side by side with the official LaBraM code, in one process, on the same shapes (issue 19).

The official modules (``modeling_pretrain``, ``modeling_vqnsp``, ``modeling_finetune``) are imported
from a clone of https://github.com/935963004/LaBraM that the user points at (``--official PATH``;
never copied into this repository), with its pinned ``timm==0.4.12`` importable (install it into a
scratch target: ``pip install --no-deps --target DIR timm==0.4.12`` and pass ``--official-deps
DIR``). timm 0.4.12's ``timm.data`` imports torchvision for image transforms that the EEG models
never use (the PyPI build does not load beside a CPU torch, and a newer one may not suit timm
0.4.12), so ``timm.data`` is given its constants module alone, which is all the model files import
from it.

Workloads (issue 19; the developers' benchmark shapes): a masked-EEG-modelling step of LaBraM-Base,
batch 8 × 19 channels × 10 s, AdamW, the tokenizer computing the targets inside the step; a VQ-NSP
Base tokenizer training step, batch 8; inference of the fine-tuning model, batch 32. On a GPU the
training steps take the official pretraining's per-GPU batch, 64, and inference 256. The official
steps follow its ``engine_for_pretraining.py`` / ``engine_for_vqnsp.py`` loops (input in 100 µV,
two separate symmetric passes, cross-entropy on the masked and the visible tokens, its AdamW,
no gradient clipping: its ``--clip_grad`` default is None). Its ``torch.cuda.amp.autocast`` is a
no-op on a CPU, so there the official code runs fp32 and every neurofm dtype is compared with that.
On a GPU the official code also runs as its engines do there (fp16 autocast, its gradient scaler
with the logged gradient norm: "official amp"), and neurofm bf16 is compared with that, neurofm
fp32 with official fp32. neurofm runs as its engine does (batched symmetric passes, fused AdamW,
SDPA) in fp32, and in bf16 autocast where the device's bf16 matmul beats fp32; ``use_compile``
(``run.py --compile``) adds neurofm's fastest dtype under ``torch.compile`` (compile time
reported, not timed).
Both sides start from a random initialisation of the same architecture and get the same batch;
the two are timed alternately, ``rounds`` times, and each side's best round is kept, so a load
change on a shared machine hits both. Each row also gives the step's FLOPs (counted with
``torch.utils.flop_counter`` on neurofm's fp32 step, the same network on both sides), each side's
MFU against the matmul rate measured in the run, and on a GPU each side's peak memory above the
resident models.

Every ratio is official seconds per step over neurofm seconds per step, and is also printed as
``side-by-side WORKLOAD DTYPE: R.RRx official (CPU)`` (``benchmarks/run.py`` appends those lines
to docs/benchmarks.md below the table).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference
from bench_models import (
    TEN_TWENTY,
    _batch,
    _count_flops,
    _mem_objective,
    _PeakMemory,
    _row,
    _train_step,
)
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
#: GPU shapes: the official pretraining's per-GPU batch (``run_labram_pretraining.py --batch_size``
#: default 64) for the training steps, four times that for inference; the CPU keeps batch 8 and 32.
GPU_TRAIN_BATCH, GPU_INFER_BATCH = 64, 256
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


def _official_autocast(amp: bool) -> torch.autocast:
    """The official engines' ``torch.cuda.amp.autocast()`` (fp16) when ``amp``; else off."""
    return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp)


def _official_update(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler | None, parameters: list[torch.Tensor]) -> None:
    """The official ``utils.NativeScalerWithGradNormCount`` with ``clip_grad=None``: scaled backward,
    unscale, the gradient norm it logs, step, update; a plain backward and step without ``scaler``."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.norm(torch.stack([torch.norm(p.grad.detach(), 2.0) for p in parameters if p.grad is not None]), 2.0)
    scaler.step(optimizer)
    scaler.update()


def official_mem_step(official: types.SimpleNamespace, batch: dict[str, torch.Tensor],
                      device: str, amp: bool = False) -> Callable[[], float]:
    """One official masked-EEG-modelling step (targets from its tokenizer, two symmetric passes);
    ``amp``: as its engine runs on a GPU (fp16 autocast, gradient scaler)."""
    torch.manual_seed(0)
    model = official.modeling_pretrain.labram_base_patch200_1600_8k_vocab(**OFFICIAL_ARCHITECTURE).to(device).train()
    tokenizer = official.modeling_vqnsp.vqnsp_encoder_base_decoder_3x200x12(
        EEG_size=1600, n_code=8192, code_dim=32).to(device).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), weight_decay=0.05)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    parameters = list(model.parameters())
    samples, chans = _patches(batch["signal"]), _official_input_chans()
    generator = torch.Generator().manual_seed(1)

    def step() -> float:
        mask = _official_mask(samples.shape[0], samples.shape[1] * samples.shape[2], generator, device)
        with torch.no_grad(), _official_autocast(amp):
            codes = tokenizer.get_codebook_indices(samples, chans)
        with _official_autocast(amp):
            logits, logits_sym = model(samples, chans, bool_masked_pos=mask)
            loss = F.cross_entropy(logits, codes[mask]) + F.cross_entropy(logits_sym, codes[~mask])
        optimizer.zero_grad()
        _official_update(loss, optimizer, scaler, parameters)
        return float(loss.detach())
    return step


def neurofm_mem_step(batch: dict[str, torch.Tensor], device: str, bf16: bool,
                     compiled: bool = False) -> Callable[[], float]:
    """neurofm's masked-EEG-modelling step as its engine runs it (targets computed in the step;
    ``compiled``: the objective under ``torch.compile``, as ``run.compile=true`` does)."""
    torch.manual_seed(0)
    model = create_model("labram_base_mem").to(device)
    tokenizer = create_model("vqnsp_base", kmeans_init=False).to(device).eval()
    objective = _mem_objective(model, tokenizer, {"batched symmetric", "bf16"} if bf16 else {"batched symmetric"})
    optimizer = build_optimizer(model, OptimConfig(betas=(0.9, 0.98)), lr=5e-4)
    return _train_step(torch.compile(objective) if compiled else objective, optimizer, batch)


def official_tokenizer_step(official: types.SimpleNamespace, batch: dict[str, torch.Tensor],
                            device: str, amp: bool = False) -> Callable[[], float]:
    """One official VQ-NSP training step (``engine_for_vqnsp.train_one_epoch``)."""
    torch.manual_seed(0)
    tokenizer = official.modeling_vqnsp.vqnsp_encoder_base_decoder_3x200x12(
        EEG_size=1600, n_code=8192, code_dim=32).to(device).train()
    optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=5e-5, betas=(0.9, 0.99), weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    parameters = list(tokenizer.parameters())
    chans = _official_input_chans()

    def step() -> float:
        with _official_autocast(amp):
            loss, _ = tokenizer(batch["signal"], input_chans=chans)
        optimizer.zero_grad()
        _official_update(loss, optimizer, scaler, parameters)
        return float(loss.detach())
    return step


def neurofm_tokenizer_step(batch: dict[str, torch.Tensor], device: str, bf16: bool,
                           compiled: bool = False) -> Callable[[], float]:
    """neurofm's VQ-NSP training step."""
    torch.manual_seed(0)
    tokenizer = create_model("vqnsp_base").to(device)
    objective = VQNSPObjective(tokenizer, autocast_dtype=torch.bfloat16 if bf16 else None).train()
    optimizer = build_optimizer(tokenizer, OptimConfig(betas=(0.9, 0.99), weight_decay=1e-4), lr=5e-5)
    return _train_step(torch.compile(objective) if compiled else objective, optimizer, batch)


def official_inference(official: types.SimpleNamespace, batch: dict[str, torch.Tensor],
                       device: str, amp: bool = False) -> Callable[[], torch.Tensor]:
    """The official fine-tuning model's forward (``engine_for_finetuning.evaluate``), no head."""
    torch.manual_seed(0)
    model = official.modeling_finetune.labram_base_patch200_200(num_classes=0, **OFFICIAL_ARCHITECTURE)
    model = model.to(device).eval()
    samples, chans = _patches(batch["signal"]), _official_input_chans()

    def embed() -> torch.Tensor:
        with torch.inference_mode(), _official_autocast(amp):
            return model(samples, input_chans=chans)
    return embed


def neurofm_inference(batch: dict[str, torch.Tensor], device: str, bf16: bool,
                      compiled: bool = False) -> Callable[[], torch.Tensor]:
    """neurofm's pooled features of the same input."""
    torch.manual_seed(0)
    model = create_model("labram_base", ch_names=TEN_TWENTY).to(device).eval()
    features = torch.compile(model.features) if compiled else model.features

    def embed() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            return features(batch)
    return embed


def _alternate(steps: dict[str, Callable[[], object]], repeats: int, rounds: int,
               device: str) -> tuple[dict[str, float], dict[str, int]]:
    """Best seconds per call of each step over ``rounds`` alternating rounds of ``repeats`` calls,
    and each step's peak memory above what was allocated before it (reported on CUDA only)."""
    best = {name: float("inf") for name in steps}
    peak = dict.fromkeys(steps, 0)
    for _ in range(rounds):
        for name, step in steps.items():
            with _PeakMemory(device) if device == "cuda" else contextlib.nullcontext() as memory:
                best[name] = min(best[name], reference.seconds_per_step(step, repeats, device))
            peak[name] = max(peak[name], memory.peak_bytes if memory is not None else 0)
    return best, peak


def side_by_side_line(workload: str, dtype: str, ratio: float, tag: str) -> str:
    """The checkable one-line form of a ratio (issue 19)."""
    return f"side-by-side {workload} {dtype}: {ratio:.2f}x official ({tag})"


def _official_variants(device: str, dtypes: list[str]) -> dict[str, str]:
    """For each neurofm dtype, the official configuration it is compared with: fp32 with fp32;
    bf16 with the official code's own mixed precision on a GPU (fp16 autocast + gradient scaler),
    with its fp32 on a CPU (its autocast is CUDA-only)."""
    return {dtype: "amp" if device == "cuda" and dtype == "bf16" else "fp32" for dtype in dtypes}


def run(quick: bool = False, official_path: Path | None = None, official_deps: Path | None = None,
        use_compile: bool = False) -> list[dict]:
    """Official and neurofm timed alternately on every workload; one row per ratio (``use_compile``:
    also neurofm under ``torch.compile``, compile time untimed)."""
    if official_path is None:
        return [_row("side-by-side with the official LaBraM code", float("nan"), "x official", note=ABSENT_NOTE)]
    official = load_official(official_path, official_deps)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tag = cpu_tag()
    matmul_size = 8192 if device == "cuda" else 2048
    rates = {"fp32": reference.matmul_gflops(torch.float32, size=matmul_size, device=device),
             "bf16": reference.matmul_gflops(torch.bfloat16, size=matmul_size, device=device)}
    dtypes = ["fp32"] + (["bf16"] if rates["bf16"] > rates["fp32"] else [])
    seconds = 4 if quick else 10
    train_size, infer_size = (2, 8) if quick else (GPU_TRAIN_BATCH, GPU_INFER_BATCH) if device == "cuda" else (8, 32)
    train_batch, infer_batch = _batch(train_size, seconds, device), _batch(infer_size, seconds, device)
    repeats, rounds = (1, 1) if quick else (20, 3) if device == "cuda" else (2, 3)
    workloads = {
        "mem": (train_batch, official_mem_step, neurofm_mem_step, "MEM step LaBraM-Base, AdamW, targets included"),
        "tokenizer": (train_batch, official_tokenizer_step, neurofm_tokenizer_step, "VQ-NSP Base step, AdamW"),
        "inference": (infer_batch, official_inference, neurofm_inference, "inference LaBraM-Base"),
    }
    pairs = _official_variants(device, dtypes)
    rows = []
    for workload, (batch, official_step, neurofm_step, title) in workloads.items():
        steps: dict[str, Callable[[], object]] = {
            f"official {variant}": official_step(official, batch, device, amp=variant == "amp")
            for variant in sorted(set(pairs.values()))}
        steps.update({f"neurofm {dtype}": neurofm_step(batch, device, dtype == "bf16") for dtype in dtypes})
        flops = _count_flops(steps["neurofm fp32"])  # one real step
        compile_seconds = {}
        if use_compile:  # the fastest dtype only: compiling costs minutes per workload
            for dtype in dtypes[-1:]:
                compiled = neurofm_step(batch, device, dtype == "bf16", compiled=True)
                started = time.perf_counter()
                compiled()
                compile_seconds[dtype] = time.perf_counter() - started
                steps[f"neurofm {dtype} compiled"] = compiled
        timings, peaks = _alternate(steps, repeats, rounds, device)
        shape = f"batch {batch['signal'].shape[0]} x 19 ch x {seconds} s"
        measured = [(dtype, False) for dtype in dtypes] + [(dtype, True) for dtype in compile_seconds]
        for dtype, is_compiled in measured:
            label = dtype + (" compiled" if is_compiled else "")
            name, against = f"neurofm {label}", f"official {pairs[dtype]}"
            ratio = timings[against] / timings[name]
            line = "" if is_compiled else side_by_side_line(workload, dtype, ratio, tag)
            memory = (f"; peak memory neurofm {peaks[name] / 2**20:.0f} MiB, official {peaks[against] / 2**20:.0f} MiB"
                      if device == "cuda" else "")
            compiled_note = f"; compiled in {compile_seconds[dtype]:.0f} s (not timed)" if is_compiled else ""
            official_dtype = "fp32" if pairs[dtype] == "fp32" else "bf16"  # fp16's rate is bf16's
            mfu = flops / timings[name] / 1e9 / rates[dtype]
            official_mfu = flops / timings[against] / 1e9 / rates[official_dtype]
            note = (f"neurofm {timings[name] * 1e3:.1f} ms/step, official {timings[against] * 1e3:.1f} ms; "
                    f"{flops / 1e9:.1f} GFLOP/step counted; MFU (of the measured matmul rate) neurofm "
                    f"{mfu:.1%} of {dtype}, official {official_mfu:.1%} of {official_dtype}"
                    f"{memory}{compiled_note}; best of {rounds} alternating rounds of {repeats}; "
                    f"matmul {matmul_size}^3 fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f}"
                    + (f"; {line}" if line else ""))
            row = _row(f"{title}, {shape}, neurofm {label} vs official {pairs[dtype]}", ratio, "x official",
                       f"official code {pairs[dtype]}, same process and shapes (s/step)", timings[against], "",
                       note)
            if line:
                row["line"] = line
            rows.append(row)
        if "bf16" not in dtypes:
            rows.append(_row(f"{title}, neurofm bf16", float("nan"), "x official",
                             note=f"not run: bf16 matmul {rates['bf16']:.3g} GFLOP/s is not faster than fp32 "
                                  f"{rates['fp32']:.3g} GFLOP/s on this {tag} CPU (no bf16 units)"))
    return rows
