"""The FMA peak probe the conv benchmark prints (minidl/_kernels/fma_probe.pyx)."""

import pytest
from minidl._kernels.fma_probe import ISAS, fma_peak_gflops


def test_probe_reports_positive_gflops_for_the_baseline():
    assert fma_peak_gflops("baseline", seconds=0.005, repeat=1) > 0


def test_probe_returns_zero_or_more_for_every_isa():
    for isa in ISAS:
        assert fma_peak_gflops(isa, seconds=0.005, repeat=1) >= 0


def test_probe_rejects_unknown_isa():
    with pytest.raises(ValueError, match="isa must be one of"):
        fma_peak_gflops("neon")
