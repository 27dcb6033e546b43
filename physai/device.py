"""Which torch device a command runs on: `--device auto` (the default) is CUDA when one is
available, else the CPU; an explicit `cuda` where there is none is a clear error, not a crash
deep inside the first forward pass."""

from __future__ import annotations

import torch

from physai.errors import ConfigError


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """`None`/"auto" -> cuda if available else cpu; anything else is parsed and checked."""
    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(requested)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"--device: expected auto, cpu, cuda or cuda:N, got {requested!r} ({e})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {requested}: torch sees no CUDA device on this machine "
                              f"(torch {torch.__version__}, cuda available: False); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise ConfigError(f"--device: expected auto, cpu, cuda or cuda:N, got {requested!r}")
    return dev


def add_device_argument(parser) -> None:
    parser.add_argument("--device", default="auto", help="torch device: auto (CUDA when available, else CPU), "
                                                          "cpu, cuda, cuda:N")
