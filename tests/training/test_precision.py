"""Device/precision choice: the reason is always given, CPU bf16 only with bf16 units or when asked."""

from __future__ import annotations

import pytest

from microtransformer import device as dev
from microtransformer.errors import ConfigError

CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f {extra}\n"


def test_cpu_flags_parsing():
    assert dev.cpu_bf16_flags(CPUINFO.format(extra="")) == []
    assert dev.cpu_bf16_flags(CPUINFO.format(extra="avx512_bf16 amx_bf16")) == ["amx_bf16", "avx512_bf16"]


def test_cpu_auto_follows_bf16_units(monkeypatch):
    monkeypatch.setattr(dev, "cpu_bf16_flags", lambda cpuinfo=None: [])
    choice = dev.choose_precision("cpu", "auto")
    assert choice.precision == "fp32" and "30x" in choice.reason and not choice.autocast
    monkeypatch.setattr(dev, "cpu_bf16_flags", lambda cpuinfo=None: ["avx512_bf16"])
    choice = dev.choose_precision("cpu", "auto")
    assert choice.precision == "bf16" and "avx512_bf16" in choice.reason and choice.dtype == "bfloat16"
    assert dev.choose_precision("cpu", "fp32").precision == "fp32"
    assert not dev.choose_precision("cpu", "bf16").use_grad_scaler


def test_bad_requests():
    with pytest.raises(ConfigError):
        dev.choose_precision("cpu", "fp8")
    with pytest.raises(ConfigError, match="fp16"):
        dev.choose_precision("cpu", "fp16")
    with pytest.raises(ConfigError):
        dev.choose_device("tpu")
    assert dev.choose_device("cpu") == ("cpu", "asked for cpu")
