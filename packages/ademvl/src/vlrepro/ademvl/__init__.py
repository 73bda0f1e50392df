"""vlrepro-ademvl: ADEM-VL: Adaptive and Embedded Fusion for Efficient Vision-Language Tuning (2024, arXiv 2410.17779)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vlrepro-ademvl")
except PackageNotFoundError:
    __version__ = "0.0.0"

PAPER = "ADEM-VL: Adaptive and Embedded Fusion for Efficient Vision-Language Tuning (2024, arXiv 2410.17779)"
