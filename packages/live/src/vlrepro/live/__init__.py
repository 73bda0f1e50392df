"""vlrepro-live: LIVE: Learnable In-Context Vector for Visual Question Answering (NeurIPS 2024, arXiv 2406.13185)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vlrepro-live")
except PackageNotFoundError:
    __version__ = "0.0.0"

PAPER = "LIVE: Learnable In-Context Vector for Visual Question Answering (NeurIPS 2024, arXiv 2406.13185)"
