"""LIVE's inference cost: zero-shot vs ICV vs 32-shot ICL on the same queries (issue 3 benchmark).

Prints ONE JSON line. Targets (issue 3): ``icv_over_zero_shot_time <= 1.05``,
``icv_over_zero_shot_memory <= 1.02``, ``icl32_over_icv_time >= 5``.

    python packages/live/benchmarks/icv_overhead.py                         # CPU, tiny-but-deep IDEFICS (default)
    python packages/live/benchmarks/icv_overhead.py --real --device cuda    # IDEFICS-9B architecture, random bf16

What is measured, per mode, for the same ``--queries`` queries (batch size 1, as the original infers):
``model.generate`` with the paper's settings (beam search, 3 beams, 5 new tokens; ``min_new_tokens=5``
so that every mode decodes exactly 5 steps whatever the random weights predict), KV cache on.

- ``zero_shot``: [BOS, instruction, image, query text] -- the prompt the ICV model also sees;
- ``icv``: the same prompt with LIVE's hooks on every decoder layer (``vlrepro.live.method.icv_hooks``:
  shift + norm-preserving rescale, alpha 0.1, vectors ~ N(0, 0.01^2) as at the paper's init);
- ``icl32``: 32 demonstrations (image + answered question each) before the query, no hooks.

Token ids are synthetic with LIVE's prompt lengths (IDEFICS LLaMA tokenizer: instruction 14 tokens,
a demonstration's text 16, the query's text 12; each image is <fake><image><fake>); pixel values are
random. Weights are random (``--real``: the IDEFICS-9B config, built directly on the device in bf16,
nothing downloaded).

Time: CPU time of the process on CPU (one torch thread by default), wall-clock time on CUDA; for each
query and mode the minimum over ``--repeats`` rounds (modes interleaved query by query;
the minimum is the least disturbed by other processes on a shared machine), summed over the queries. Memory: peak bytes of weights +
activations during the mode's generation -- CUDA: ``torch.cuda.max_memory_allocated`` after a reset;
CPU: each mode runs in a fresh child process with glibc's dynamic mmap threshold off, and the peak is
the parameter bytes plus the rise of the resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs) during its generations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

try:
    from vlrepro.live.method import GlobalICVEncoder, icv_hooks
except ImportError:  # run from a checkout without the workspace installed
    _root = Path(__file__).resolve().parents[3]
    sys.path[:0] = [str(_root / "packages/live/src"), str(_root / "shared/src")]
    from vlrepro.live.method import GlobalICVEncoder, icv_hooks

MODES = ("zero_shot", "icv", "icl32")
INSTRUCTION_TOKENS, DEMO_TEXT_TOKENS, QUERY_TEXT_TOKENS = 14, 16, 12


# ----------------------------------------------------------------------------- model


def idefics_config(real: bool, layers: int, hidden: int):
    """IDEFICS-9B's architecture (``--real``) or a tiny-but-deep one of the same layout."""
    from transformers import IdeficsConfig

    if real:  # HuggingFaceM4/idefics-9b config.json
        return IdeficsConfig(
            vocab_size=32000, additional_vocab_size=2, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, cross_layer_interval=4, rms_norm_eps=1e-6, max_position_embeddings=2048,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False, qk_layer_norms=False,
            freeze_text_layers=False, freeze_vision_layers=False, alpha_initializer="zeros", alpha_type="float",
            use_resampler=True,
            vision_config=dict(embed_dim=1280, image_size=224, intermediate_size=5120, patch_size=14,
                               num_attention_heads=16, num_hidden_layers=32),
            perceiver_config=dict(use_resampler=True, resampler_n_latents=64, resampler_depth=6, resampler_n_heads=16,
                                  resampler_head_dim=96, qk_layer_norms_perceiver=False),
        )
    # 32 decoder layers (as IDEFICS-9B), cross-attention every 4th, small widths, a small vision tower
    return IdeficsConfig(
        vocab_size=1000, additional_vocab_size=2, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64), cross_layer_interval=4, max_position_embeddings=2048,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, freeze_text_layers=False, freeze_vision_layers=False,
        alpha_initializer="ones",  # non-zero cross-attention gates (tanh 1): the images matter
        vision_config=dict(embed_dim=64, image_size=32, patch_size=8, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128),
        perceiver_config=dict(use_resampler=False),
    )


def build_model(args):
    from transformers import IdeficsForVisionText2Text

    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    config = idefics_config(args.real, args.layers, args.hidden)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(args.device):
            model = IdeficsForVisionText2Text(config)
    finally:
        torch.set_default_dtype(old)
    model.eval().requires_grad_(False)
    return model, config


# ----------------------------------------------------------------------------- inputs


def make_inputs(config, shots: int, query: int, device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """One prompt: BOS, instruction, ``shots`` x (image, demo text), query image, query text."""
    g = torch.Generator().manual_seed(1000 + query)
    vocab = config.vocab_size
    fake, image = vocab, vocab + 1  # IDEFICS' two additional tokens
    ids: list[int] = [config.bos_token_id]
    image_of_token: list[int] = [-1]  # index of the latest image before each token (-1: none)
    n_images = 0

    def text(n: int) -> None:
        ids.extend(torch.randint(3, vocab, (n,), generator=g).tolist())
        image_of_token.extend([n_images - 1] * n)

    def img() -> None:
        nonlocal n_images
        ids.extend([fake, image, fake])
        n_images += 1
        image_of_token.extend([n_images - 1] * 3)

    text(INSTRUCTION_TOKENS)
    for _ in range(shots):
        img()
        text(DEMO_TEXT_TOKENS)
    img()
    text(QUERY_TEXT_TOKENS)
    t = len(ids)
    # (1, T, N): each token attends to the latest preceding image (IdeficsProcessor's default)
    iam = torch.zeros(1, t, n_images, dtype=torch.long)
    for pos, k in enumerate(image_of_token):
        if k >= 0:
            iam[0, pos, k] = 1
    size = config.vision_config.image_size
    pixels = torch.randn(1, n_images, 3, size, size, generator=g)
    return {
        "input_ids": torch.tensor([ids], device=device),
        "attention_mask": torch.ones(1, t, dtype=torch.long, device=device),
        "image_attention_mask": iam.to(device),
        "pixel_values": pixels.to(device=device, dtype=dtype),
    }


GENERATION = dict(max_new_tokens=5, min_new_tokens=5, num_beams=3, length_penalty=0.0, do_sample=False, use_cache=True)


def run_mode(model, encoder, layer_names, batches) -> None:
    """Generate for every query of one mode (hooks on for the whole call in ``icv`` mode)."""
    for mode, inputs in batches:
        with torch.no_grad():
            if mode == "icv":
                with icv_hooks(model, layer_names, encoder):
                    model.generate(**inputs, **GENERATION, pad_token_id=0)
            else:
                model.generate(**inputs, **GENERATION, pad_token_id=0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- memory


def _vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def measure_memory(model, encoder, layer_names, inputs_by_mode, mode: str, device: str) -> int:
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    batches = [(mode, x) for x in inputs_by_mode[mode]]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        run_mode(model, encoder, layer_names, batches)
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    _reset_hwm()
    before = _vm_hwm()
    run_mode(model, encoder, layer_names, batches)
    return param_bytes + max(0, _vm_hwm() - before)


# ----------------------------------------------------------------------------- main


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--real", action="store_true", help="IDEFICS-9B architecture (random bf16 weights)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=None, help="default: fp32 on CPU, bf16 with --real")
    p.add_argument("--layers", type=int, default=32, help="decoder layers of the tiny config")
    p.add_argument("--hidden", type=int, default=256, help="hidden size of the tiny config")
    p.add_argument("--queries", type=int, default=3)
    p.add_argument("--shots", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: stable timings on a shared machine; 0 = torch's choice)")
    p.add_argument("--memory-child", choices=MODES, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.dtype is None:
        args.dtype = "bf16" if args.real else "fp32"
    return args


def setup(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    model, config = build_model(args)
    dtype = next(model.parameters()).dtype
    layer_names = [f"model.layers.{i}" for i in range(config.num_hidden_layers)]
    torch.manual_seed(1)
    # the paper's init and README setting: v ~ N(0, 0.01^2), raw alpha = 0.1
    encoder = GlobalICVEncoder(len(layer_names), config.hidden_size, use_sigmoid=False, alpha_init_value=0.1)
    encoder.requires_grad_(False).to(args.device)
    shots = {"zero_shot": 0, "icv": 0, "icl32": args.shots}
    inputs = {m: [make_inputs(config, shots[m], q, args.device, dtype) for q in range(args.queries)] for m in MODES}
    return model, config, encoder, layer_names, inputs


def child(args) -> None:
    model, _, encoder, names, inputs = setup(args)
    print(json.dumps({"mode": args.memory_child, "peak_bytes": measure_memory(model, encoder, names, inputs, args.memory_child, args.device)}))


def cpu_memory_in_children(args) -> dict[str, int]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = {}
    for mode in MODES:
        argv = [sys.executable, __file__, "--device", args.device, "--dtype", args.dtype, "--layers", str(args.layers),
                "--hidden", str(args.hidden), "--queries", str(args.queries), "--shots", str(args.shots), "--memory-child", mode]
        if args.real:
            argv.append("--real")
        argv += ["--threads", str(args.threads)]
        res = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if res.returncode != 0:
            raise SystemExit(f"memory child for {mode} failed: {res.stderr.strip().splitlines()[-1:]}")
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])["peak_bytes"]
    return out


def main(argv=None) -> int:
    args = parse(argv)
    if args.memory_child:
        child(args)
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is visible; run without --device for CPU", file=sys.stderr)
        return 2
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    t_build = time.perf_counter()
    model, config, encoder, names, inputs = setup(args)
    build_s = time.perf_counter() - t_build
    # warm-up: one query per mode
    run_mode(model, encoder, names, [(m, inputs[m][0]) for m in MODES])
    sync(args.device)
    # per query and mode, the minimum over `repeats` rounds; rounds interleave the modes query by query,
    # so a slow phase of a shared machine hits every mode alike
    # CPU: this process's CPU time (one torch thread), which time-sharing with other processes does not
    # inflate; CUDA: wall-clock time with synchronisation
    clock = time.perf_counter if args.device.startswith("cuda") else time.process_time
    times = {m: [float("inf")] * args.queries for m in MODES}
    for _ in range(args.repeats):
        for q in range(args.queries):
            for m in MODES:
                sync(args.device)
                t0 = clock()
                run_mode(model, encoder, names, [(m, inputs[m][q])])
                sync(args.device)
                times[m][q] = min(times[m][q], clock() - t0)
    best = {m: sum(v) for m, v in times.items()}
    if args.device.startswith("cuda"):
        mem = {m: measure_memory(model, encoder, names, inputs, m, args.device) for m in MODES}
    else:
        del model
        mem = cpu_memory_in_children(args)
    result = {
        "benchmark": "live_icv_overhead",
        "arch": "idefics-9b (random bf16)" if args.real else f"tiny-deep idefics ({config.num_hidden_layers} layers, hidden {config.hidden_size})",
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
        "dtype": args.dtype,
        "queries": args.queries,
        "shots": args.shots,
        "prompt_tokens": {m: int(inputs[m][0]["input_ids"].shape[1]) for m in MODES},
        "generation": "3 beams, 5 new tokens, bs 1",
        "clock": "wall" if args.device.startswith("cuda") else "process CPU time",
        "time_s": {m: round(best[m], 4) for m in MODES},
        "peak_mem_mib": {m: round(mem[m] / 2**20, 1) for m in MODES},
        "icv_over_zero_shot_time": round(best["icv"] / best["zero_shot"], 4),
        "icv_over_zero_shot_memory": round(mem["icv"] / mem["zero_shot"], 4),
        "icl32_over_icv_time": round(best["icl32"] / best["icv"], 3),
        "icl32_over_zero_shot_memory": round(mem["icl32"] / mem["zero_shot"], 3),
        "repeats": args.repeats,
        "build_s": round(build_s, 1),
    }
    result["targets_met"] = bool(result["icv_over_zero_shot_time"] <= 1.05 and result["icv_over_zero_shot_memory"] <= 1.02
                                 and result["icl32_over_icv_time"] >= 5)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
