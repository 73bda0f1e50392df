"""ICV checkpoints: only the vector parameters (safetensors) plus the resolved config as metadata.

Keys follow the original ``icv_cpk.pth`` (spec §1.6): ``icv_encoder.icv`` (1, L, d) and
``icv_encoder.alpha`` (1, L); ``use_sigmoid``, the hooked module names and the resolved run
config travel in the safetensors metadata (strings). The LMM's weights are never saved.
Fixes: the original's ddp path wrote no checkpoint and its "already done" check looked for a
``.bin``; here every strategy ends with the same file, written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlrepro.shared.atomic import write_atomic
from vlrepro.shared.errors import MalformedFileError, MissingFileError

from .method import GlobalICVEncoder

CHECKPOINT_NAME = "icv_cpk.safetensors"


def save_icv(path: str | Path, encoder: GlobalICVEncoder, *, layer_names: list[str], config: dict[str, Any] | None = None) -> Path:
    """Write ``encoder``'s parameters and the metadata needed to re-apply them."""
    from safetensors.torch import save_file

    tensors = {
        "icv_encoder.icv": encoder.icv.detach().float().cpu().contiguous(),
        "icv_encoder.alpha": encoder.alpha.detach().float().cpu().contiguous(),
    }
    metadata = {
        "format": "vlrepro-live-icv/1",
        "use_sigmoid": json.dumps(encoder.use_sigmoid),
        "layer_names": json.dumps(list(layer_names)),
        "config": json.dumps(config or {}, sort_keys=True),
    }
    p = Path(path)
    write_atomic(p, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return p


def load_icv(path: str | Path) -> tuple[GlobalICVEncoder, list[str], dict[str, Any]]:
    """Read a checkpoint: the encoder (frozen), the hooked module names and the saved run config."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"ICV checkpoint not found: {p}",
                               fix="train it first (`vlrepro-live train run_name=...`) or set icv_cpk=<file>")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            icv, alpha = f.get_tensor("icv_encoder.icv"), f.get_tensor("icv_encoder.alpha")
        use_sigmoid = json.loads(meta["use_sigmoid"])
        layer_names = json.loads(meta["layer_names"])
        config = json.loads(meta.get("config", "{}"))
    except Exception as e:  # safetensors raises several types for a bad file
        raise MalformedFileError(f"not a LIVE ICV checkpoint: {p} ({type(e).__name__}: {e})",
                                 fix="point icv_cpk at an icv_cpk.safetensors written by `vlrepro-live train`") from None
    encoder = GlobalICVEncoder(icv.shape[1], icv.shape[2], use_sigmoid=use_sigmoid)
    encoder.icv.data.copy_(icv)
    encoder.alpha.data.copy_(alpha)
    encoder.requires_grad_(False)
    return encoder, layer_names, config
