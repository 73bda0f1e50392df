"""vlrepro-shared: data readers, official-format metrics, ICL retrieval, hooks and results.

Pins neither torch nor transformers; every paper package pins both and imports this one.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vlrepro-shared")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
