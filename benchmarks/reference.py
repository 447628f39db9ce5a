"""The machine's reference figures, measured in the same run as every benchmark.

``matmul_gflops(dtype)`` times a 2048 × 2048 matrix product (2·n³ FLOP) and returns GFLOP/s. On a
CPU without bf16 units a bf16 2048³ product takes minutes, so a 512 × 512 probe runs first and,
when the full size would exceed ``budget_s``, the largest power-of-two size within budget is timed
instead (the row's note says which size was used);
``describe_machine()`` names the CPU, core count, torch version and CPU capability (and the GPU
when one is visible). ``run()`` gives the fp32 and bf16 rates as benchmark rows.
"""

from __future__ import annotations

import os
import platform
import time

import torch


def matmul_gflops(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5,
                  device: str = "cpu", budget_s: float = 2.0) -> float:
    """Best-of-``repeats`` GFLOP/s of a ``size`` × ``size`` matmul in ``dtype`` on ``device``."""
    return matmul_rate(dtype, size, repeats, device, budget_s)[0]


def matmul_rate(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5,
                device: str = "cpu", budget_s: float = 2.0) -> tuple[float, int]:
    """``(GFLOP/s, size used)``: best of ``repeats`` timings, size reduced to fit ``budget_s``."""
    probe = _time_matmul(dtype, 512, 1, device)
    while size > 512 and probe * (size / 512) ** 3 > budget_s:
        size //= 2
    return 2 * size**3 / _time_matmul(dtype, size, repeats, device) / 1e9, size


def _time_matmul(dtype: torch.dtype, size: int, repeats: int, device: str) -> float:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)  # warm-up: thread pools, kernel selection
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine() -> str:
    """One line: CPU model, cores, torch version and CPU capability, threads, the 1-minute load
    average (other processes competing for the cores), GPU if any."""
    text = (f"{_cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"(CPU capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads), "
            f"load average {os.getloadavg()[0]:.1f}")
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def run(quick: bool = False) -> list[dict]:
    """fp32 and bf16 matmul rates (and the GPU's, when one is visible) as benchmark rows."""
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            rate, size = matmul_rate(dtype, repeats=3 if quick else 5, device=device)
            rows.append({"benchmark": f"reference: {name} matmul ({device})", "value": rate,
                         "unit": "GFLOP/s", "reference": "", "reference_value": None, "target": "",
                         "note": f"{size}x{size}; {describe_machine()}"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['benchmark']}: {row['value']:.1f} {row['unit']}")


def seconds_per_step(step, steps: int, device: str | torch.device) -> float:
    """Mean wall seconds of ``step()`` over ``steps`` calls, after one untimed warm-up call,
    waiting for queued GPU work before and after timing."""

    def sync() -> None:
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps
