"""What a benchmark case is, and the one registry every runner reads.

A case names a piece of work (a GEMM, a convolution, a LeNet training step ...), how much work
one call does, and how each engine runs it. Its inputs and initial weights come from
`data(size)`, a dict of NumPy arrays built once by whoever runs the case; each engine's builder
receives that same dict, so every engine computes on identical inputs and starting weights,
whether in this process (the pytest-benchmark suite) or in a child process per engine
(`minidl-bench`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

ENGINES = ("minidl", "numpy", "torch", "onnxruntime")
GROUPS = ("gemm", "conv", "pool", "lenet", "resnet20", "latency", "contention")
SIZES = ("tiny", "quick", "full")

Data = dict[str, np.ndarray]
# builder(data, threads) -> a zero-argument callable doing one unit of the case's work. The engine's
# thread count is already set by the caller (minidl.set_num_threads, torch.set_num_threads, the
# BLAS's limit) and read at call time; `threads` is for engines that fix it when they build
# (an onnxruntime session).
Builder = Callable[[Data, int], Callable[[], object]]


class Absent(Exception):
    """Raised by a builder whose reference cannot run here (not installed, no exporter): the
    report lists the reference as absent with this message, it is not an error."""


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    unit: "GFLOP/s" (work = floating-point operations per call), "Gcmp/s" (work = comparisons
        per call), "images/s" (work = images per call) or "us" (microseconds per call; work
        unused).
    builders: engine name -> Builder; engines absent from it have no such reference.
    busy: measure with a CPU-spinning child process running beside the engine (contention).
    peak: the figure is comparable to the machine's FMA peak (floating-point work, not
        comparisons or memory traffic), so its fraction of the peak is reported.
    """

    name: str
    group: str
    unit: str
    work: float
    data: Callable[[], Data]
    builders: dict[str, Builder]
    busy: bool = False
    peak: bool = False
    notes: dict[str, str] = field(default_factory=dict)

    def rate(self, seconds: float) -> float:
        """The case's figure for `seconds` per call, in its unit."""
        if self.unit in ("GFLOP/s", "Gcmp/s"):
            return self.work / seconds / 1e9
        if self.unit == "images/s":
            return self.work / seconds
        return seconds * 1e6


def cases(size: str = "quick", groups: tuple[str, ...] = GROUPS) -> list[Case]:
    """Every case of `groups` at `size` ("tiny" for tests, "quick" or "full"), in GROUPS order."""
    if size not in SIZES:
        raise ValueError(f"cases: size must be one of {SIZES}, got {size!r}")
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"cases: unknown group(s) {unknown}; known: {', '.join(GROUPS)}")
    from minidl.bench import kernel_cases, model_cases

    made = kernel_cases.cases(size) + model_cases.cases(size)
    return [c for g in GROUPS if g in groups for c in made if c.group == g]


def find(name: str, size: str) -> Case:
    """The case called `name` at `size` (KeyError naming the known cases otherwise)."""
    for case in cases(size):
        if case.name == name:
            return case
    raise KeyError(f"no benchmark case {name!r} at size {size!r}")


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
