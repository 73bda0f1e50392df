"""vlrepro-leverlm: Lever-LM: configuring in-context sequences to lever large vision-language models (NeurIPS 2024, arXiv 2312.10104)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vlrepro-leverlm")
except PackageNotFoundError:
    __version__ = "0.0.0"

PAPER = "Lever-LM: configuring in-context sequences to lever large vision-language models (NeurIPS 2024, arXiv 2312.10104)"
