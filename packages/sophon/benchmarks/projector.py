"""SQ-LLaVA's ``cluster`` projector: its size at the released dimensions and its forward cost against ``mlp2x_gelu``.

Prints ONE JSON line (issue 6 benchmark).

    python packages/sophon/benchmarks/projector.py                       # CPU, small widths, 576 tokens
    python packages/sophon/benchmarks/projector.py --device cuda --real  # GPU, real 7B widths (D 1024 -> H 4096), bf16

* ``cluster_projector_params_7b`` / ``_13b``: :class:`PrototypeExtractor` built on the **meta device** at
  D = 1024 (CLIP ViT-L/14-336) and H = 4096 / 5120 (Vicuna-7B / 13B), K = 256, T = 2. The release's
  ``non_lora_trainables.bin`` holds 24,130,562 / 34,618,370 (spec §1.1); ``matches_release`` checks both
  and the closed form 3(D²+D) + 2 + 2D + (DH+H) + (H²+H). ``mlp2x_gelu_params_7b`` is LLaVA-1.5's connector.
* ``cluster_forward_ms`` / ``mlp2x_gelu_forward_ms``: median forward time over ``--iters`` runs (after
  ``--warmup``) of a batch of ``--batch`` images of **576 tokens** (24×24 patches of ViT-L/14-336),
  random weights and inputs, no grad; ``cluster_over_mlp_time`` is their ratio. By default the widths are
  small (D 64, H 128) so a CPU finishes in seconds; ``--real`` uses D 1024, H 4096 (or ``--size 13b``).
  The prototype step costs about T·(2KLD + KD²) + 2KLD extra FLOPs on top of the MLP's L(DH + H²).

Imports: torch and ``vlrepro.sophon.projector`` only (no transformers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    from vlrepro.sophon.projector import (
        PrototypeExtractor,
        build_projector,
        cluster_param_count,
        count_params,
    )
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from vlrepro.sophon.projector import (
        PrototypeExtractor,
        build_projector,
        cluster_param_count,
        count_params,
    )

RELEASE = {"7b": (1024, 4096, 24_130_562), "13b": (1024, 5120, 34_618_370)}
TOKENS = 576  # (336 / 14)^2 patches, CLS dropped


def meta_counts() -> dict:
    out, ok = {}, True
    for size, (d, h, released) in RELEASE.items():
        with torch.device("meta"):
            n = count_params(PrototypeExtractor(d, h, num_centers=256, iters=2))
            n_mlp = count_params(build_projector("mlp2x_gelu", d, h))
        out[f"cluster_projector_params_{size}"] = n
        out[f"mlp2x_gelu_params_{size}"] = n_mlp
        ok = ok and n == released == cluster_param_count(d, h)
    out["matches_release"] = ok
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def time_forwards(modules: dict[str, torch.nn.Module], x: torch.Tensor, warmup: int, iters: int) -> dict[str, float]:
    """Median forward milliseconds of each module, the modules interleaved round by round (fair under load)."""
    dev = str(x.device)
    for _ in range(warmup):
        for m in modules.values():
            m(x)
    _sync(dev)
    times: dict[str, list[float]] = {k: [] for k in modules}
    for _ in range(iters):
        for k, m in modules.items():
            t0 = time.perf_counter()
            m(x)
            _sync(dev)
            times[k].append(1000 * (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--real", action="store_true", help="real widths (D 1024, H 4096/5120) instead of D 64, H 128")
    ap.add_argument("--size", choices=sorted(RELEASE), default="7b", help="LLM width for --real")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                    help="default: bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=TOKENS)
    ap.add_argument("--num-centers", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA GPU; run with --device cpu", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    d, h = (RELEASE[args.size][0], RELEASE[args.size][1]) if args.real else (64, 128)
    torch.manual_seed(args.seed)
    cluster = PrototypeExtractor(d, h, num_centers=args.num_centers, iters=2).to(args.device, dtype).eval()
    mlp = build_projector("mlp2x_gelu", d, h).to(args.device, dtype).eval()
    x = torch.randn(args.batch, args.tokens, d, device=args.device, dtype=dtype)
    out_shape = list(cluster(x).shape)
    ms = time_forwards({"cluster": cluster, "mlp2x_gelu": mlp}, x, args.warmup, args.iters)
    t_cluster, t_mlp = ms["cluster"], ms["mlp2x_gelu"]
    row = {"benchmark": "sophon.projector", **meta_counts(),
           "cluster_forward_ms": round(t_cluster, 4), "mlp2x_gelu_forward_ms": round(t_mlp, 4),
           "cluster_over_mlp_time": round(t_cluster / t_mlp, 3), "cluster_output_shape": out_shape,
           "tokens": args.tokens, "batch": args.batch, "mm_hidden_size": d, "hidden_size": h,
           "num_centers": args.num_centers, "iters": 2, "real": args.real, "device": args.device,
           "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
           "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__,
           "timing": f"median of {args.iters} interleaved runs after {args.warmup} warm-up", "threads": torch.get_num_threads()}
    print(json.dumps(row))
    return 0 if row["matches_release"] else 1


if __name__ == "__main__":
    sys.exit(main())
