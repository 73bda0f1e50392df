"""vlrepro-lcl: Link-Context Learning for Multimodal LLMs, with the ISEKAI dataset (CVPR 2024, arXiv 2308.07891)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vlrepro-lcl")
except PackageNotFoundError:
    __version__ = "0.0.0"

PAPER = "Link-Context Learning for Multimodal LLMs, with the ISEKAI dataset (CVPR 2024, arXiv 2308.07891)"
