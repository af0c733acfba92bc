"""``keep_freed_memory``: glibc takes the settings where it is the C library, and nothing happens elsewhere."""

from __future__ import annotations

import platform

import pytest

from microtransformer import malloc


def test_glibc_takes_the_settings_and_others_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert malloc.keep_freed_memory() is glibc
    assert malloc.keep_freed_memory() is glibc  # idempotent
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert malloc.keep_freed_memory() is False
