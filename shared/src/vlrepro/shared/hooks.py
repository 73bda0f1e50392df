"""Add to, or replace, the output of named submodules with native torch forward hooks.

Replaces baukit's ``TraceDict`` in the original LIVE code. Decoder layers return a tuple up to
transformers 4.49 and a bare tensor from 4.57; both are handled: for a tuple only element 0 (the
hidden states) is edited. Hooks are always removed on leaving the context manager, even on error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

# edit(module_name, hidden_states) -> new hidden_states
EditFn = Callable[[str, torch.Tensor], torch.Tensor]


def get_submodule(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule`` with a one-line error listing close names when ``name`` is wrong."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        prefix = name.rsplit(".", 1)[0]
        near = [n for n, _ in model.named_modules() if n.startswith(prefix)][:5]
        raise KeyError(f"no submodule {name!r} in {type(model).__name__}; nearby: {near}") from None


def _apply(output, fn: Callable[[torch.Tensor], torch.Tensor]):
    if isinstance(output, torch.Tensor):
        return fn(output)
    if isinstance(output, tuple):
        return (fn(output[0]),) + tuple(output[1:])
    # ModelOutput-like objects (dict subclasses with a first field)
    if hasattr(output, "to_tuple") and hasattr(output, "keys"):
        first = next(iter(output.keys()))
        output[first] = fn(output[first])
        return output
    raise TypeError(f"cannot edit module output of type {type(output).__name__}")


@contextmanager
def edit_outputs(model: nn.Module, names: list[str] | tuple[str, ...], edit: EditFn) -> Iterator[None]:
    """Within the block, each named submodule's output ``h`` becomes ``edit(name, h)``.

    ``edit`` may return a new tensor (replace) or ``h + delta`` (add); it runs on every call,
    so also on every decoding step under a KV cache.
    """
    handles = []
    try:
        for name in names:
            module = get_submodule(model, name)

            def hook(_mod, _inp, output, _name=name):
                return _apply(output, lambda h: edit(_name, h))

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def add_to_outputs(model: nn.Module, deltas: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Add a fixed tensor (broadcast over batch and positions) to each named submodule's output."""
    with edit_outputs(model, list(deltas), lambda name, h: h + deltas[name].to(h.dtype)):
        yield


@contextmanager
def capture_outputs(model: nn.Module, names: list[str] | tuple[str, ...]) -> Iterator[dict[str, torch.Tensor]]:
    """Record each named submodule's (first) output tensor of the last call into the yielded dict."""
    captured: dict[str, torch.Tensor] = {}

    def record(name: str, h: torch.Tensor) -> torch.Tensor:
        captured[name] = h
        return h

    with edit_outputs(model, names, record):
        yield captured


def count_hooks(model: nn.Module) -> int:
    """Number of forward hooks registered anywhere in ``model`` (for leak tests)."""
    return sum(len(m._forward_hooks) for m in model.modules())
