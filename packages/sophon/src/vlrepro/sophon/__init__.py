"""vlrepro-sophon: SQ-LLaVA: Self-Questioning for Large Vision-Language Assistant (ECCV 2024, arXiv 2403.11299)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vlrepro-sophon")
except PackageNotFoundError:
    __version__ = "0.0.0"

PAPER = "SQ-LLaVA: Self-Questioning for Large Vision-Language Assistant (ECCV 2024, arXiv 2403.11299)"
