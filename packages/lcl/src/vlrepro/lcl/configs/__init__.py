"""Hydra configs of vlrepro-lcl (package data): ``<verb>.yaml`` + ``experiment/<seed config name>.yaml``.

Importing this module registers two resolvers so that defaults follow the data-root rules of
``vlrepro.shared.paths``: ``${vlrepro_data:imagenet}`` (IMAGENET_PATH > VLREPRO_DATA/imagenet) and
``${vlrepro_root:weights}`` (MODEL_CPK_DIR > VLREPRO_DATA/weights), ``${vlrepro_root:results}``.
"""

from omegaconf import OmegaConf


def _data(name: str) -> str:
    from vlrepro.shared.paths import dataset_dir

    return str(dataset_dir(name))


def _root(kind: str) -> str:
    from vlrepro.shared.paths import root_dir

    return str(root_dir(kind))


OmegaConf.register_new_resolver("vlrepro_data", _data, replace=True)
OmegaConf.register_new_resolver("vlrepro_root", _root, replace=True)
