"""The command-line contract shared by the five paper packages (DESIGN.md, "One command-line contract").

Each paper's ``cli.py`` declares its verbs and calls :func:`run_paper_cli`::

    vlrepro-<paper> --help | --version
    vlrepro-<paper> <verb> [--device cpu|cuda] [--out DIR] [--seed N] [--cfg job] [key=value ...]

Every verb composes the Hydra config ``configs/<verb>.yaml`` shipped inside the package, applies
the flags and the Hydra overrides (``experiment=<preset>``, ``group=option``, ``+k=v``, ``~k``),
and calls the verb's function with the resolved ``DictConfig``. ``--cfg job`` prints the composed
config instead of running. Bad input raises :class:`~vlrepro.shared.errors.VlreproError`, printed
as one line on stderr with exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from .errors import VlreproError

#: flags every verb accepts -> the config key they set
COMMON_FLAGS: dict[str, str] = {
    "--device": "device",
    "--out": "out_dir",
    "--seed": "seed",
}


@dataclass
class Verb:
    """One sub-command: its name, one-line help, the function it runs and its Hydra config name."""

    name: str
    help: str
    run: Callable[..., int | None]
    config_name: str | None = None  # defaults to the verb's name
    #: extra ``--flag`` spellings (e.g. the seed's ``--per_device_eval_batch_size``) -> config key
    flags: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> str:
        return self.config_name or self.name


def _dist_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def version_line(dist: str) -> str:
    return f"{dist} {_dist_version(dist)} (transformers {_dist_version('transformers')}, torch {_dist_version('torch')})"


def parse_verb_args(args: Sequence[str], flags: dict[str, str]) -> tuple[list[str], str | None]:
    """Split a verb's arguments into Hydra overrides and an optional ``--cfg`` mode.

    ``--flag value`` and ``--flag=value`` become ``key=value`` overrides; bare ``key=value``
    tokens pass through; ``--cfg-options`` (the LCL seed's spelling) is accepted and ignored
    since what follows it are overrides anyway.
    """
    overrides: list[str] = []
    cfg_mode: str | None = None
    i = 0
    args = list(args)
    while i < len(args):
        tok = args[i]
        if tok == "--cfg-options":
            i += 1
            continue
        if tok.startswith("--"):
            name, eq, val = tok.partition("=")
            if name in ("--cfg", "-c"):
                if not eq:
                    if i + 1 >= len(args):
                        raise VlreproError("--cfg needs a value", fix="use --cfg job or --cfg all")
                    val = args[i + 1]
                    i += 1
                if val not in ("job", "all"):
                    raise VlreproError(f"--cfg {val!r} is not known", fix="use --cfg job or --cfg all")
                cfg_mode = val
                i += 1
                continue
            if name not in flags:
                known = ", ".join(sorted(flags))
                raise VlreproError(f"unknown option {name}", fix=f"known options: {known}; or pass key=value overrides")
            if not eq:
                if i + 1 >= len(args):
                    raise VlreproError(f"option {name} needs a value")
                val = args[i + 1]
                i += 1
            overrides.append(f"{flags[name]}={val}")
        elif "=" in tok or tok.startswith("~"):
            overrides.append(tok)
        else:
            raise VlreproError(f"unexpected argument {tok!r}", fix="arguments are key=value Hydra overrides or --flags")
        i += 1
    return overrides, cfg_mode


def compose(config_module: str, config_name: str, overrides: Sequence[str]):
    """Compose ``config_name`` from the package's config module, turning Hydra errors into one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=config_module, version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VlreproError(f"bad configuration: {msg}", fix="see `--cfg job` for the composed config and its keys") from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def _usage(dist: str, paper: str, verbs: Sequence[Verb]) -> str:
    width = max(len(v.name) for v in verbs) if verbs else 4
    lines = [
        f"usage: {dist} <verb> [--device cpu|cuda] [--out DIR] [--seed N] [--cfg job] [key=value ...]",
        "",
        f"{paper}",
        "",
        "verbs:",
    ]
    lines += [f"  {v.name:<{width}}  {v.help}" for v in verbs]
    lines += [
        "",
        "options:",
        "  -h, --help     show this help (after a verb: that verb's help)",
        "  --version      package, transformers and torch versions",
        "",
        "Overrides are Hydra syntax: experiment=<preset>, group=option, key=value, +key=value, ~key.",
        f"`{dist} <verb> --cfg job` prints the composed config without running.",
    ]
    return "\n".join(lines)


def _check_device(cfg) -> None:
    """``--device cuda`` on a machine without a usable GPU is a one-line error, not a CUDA traceback."""
    device = str(cfg.get("device", "cpu") or "cpu")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise VlreproError(f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA GPU",
                               fix="run with --device cpu, or on a machine with an NVIDIA GPU and driver (docker run --gpus all)")
    elif device != "cpu" and not device.startswith("mps"):
        raise VlreproError(f"unknown device {device!r}", fix="use --device cpu or --device cuda (cuda:N for one GPU)")


def run_paper_cli(
    *, dist: str, paper: str, config_module: str, verbs: Sequence[Verb], argv: Sequence[str] | None = None
) -> int:
    """Entry point of ``vlrepro-<paper>``; returns the exit status (callers ``sys.exit`` it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    by_name = {v.name: v for v in verbs}
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(dist, paper, verbs))
        return 0
    if argv[0] == "--version":
        print(version_line(dist))
        return 0
    name, rest = argv[0], argv[1:]
    try:
        if name not in by_name:
            raise VlreproError(f"unknown verb {name!r}", fix=f"choose one of: {', '.join(by_name)}")
        verb = by_name[name]
        if any(a in ("-h", "--help") for a in rest):
            flags = {**COMMON_FLAGS, **verb.flags}
            print(f"usage: {dist} {verb.name} [{' | '.join(sorted(flags))} VALUE] [--cfg job] [key=value ...]\n")
            print(verb.help)
            print(f"\nConfig: configs/{verb.config}.yaml in {config_module}; `--cfg job` shows it composed.")
            return 0
        overrides, cfg_mode = parse_verb_args(rest, {**COMMON_FLAGS, **verb.flags})
        cfg = compose(config_module, verb.config, overrides)
        if cfg_mode:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(cfg), end="")
            return 0
        _check_device(cfg)
        status = verb.run(cfg)
        return int(status or 0)
    except VlreproError as e:
        print(f"{dist}: error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{dist}: interrupted", file=sys.stderr)
        return 130
