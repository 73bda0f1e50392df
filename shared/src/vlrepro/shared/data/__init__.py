"""Typed readers and validators for the official data formats of the five papers.

    from vlrepro.shared.data import load_vqa, make_mini
    root = make_mini("vqav2", tmp_path)            # a small set in the official format
    records = load_vqa("vqav2", "val", root=root / "vqav2", coco_root=root / "coco")

Every reader resolves its folder as: explicit argument > the seed's variable (``VQAV2_PATH``, …)
> ``$VLREPRO_DATA/<sub-folder>``, and turns a missing or malformed file into a one-line
:class:`~vlrepro.shared.errors.VlreproError` naming the file, the variable and how to get it.
"""

from .check import DATASETS, check_dataset
from .coco import coco_caption_paths, karpathy_path, load_coco_captions, load_karpathy
from .episodes import (
    ClsLoc,
    imagenet_test_classes,
    imagenet_test_pairs,
    load_episodes,
    load_imagenet_test,
    load_imagenet_train,
    load_isekai,
    load_map_clsloc,
)
from .lavin import InstructionRecord, load_blip_karpathy, load_lavin_instructions
from .llava import llava_paths, load_llava
from .mini import MINI_DATASETS, make_mini
from .mme import COGNITION, PERCEPTION, load_mme, load_mme_subtask, mme_root
from .mme import SUBTASKS as MME_SUBTASKS
from .records import (
    CaptionRecord,
    ClassRecord,
    ConversationRecord,
    EpisodeRecord,
    MMERecord,
    Neighbor,
    ScienceQARecord,
    TestClassRecord,
    VQARecord,
    open_rgb,
)
from .scienceqa import load_scienceqa, scienceqa_paths
from .vqa import coco2014_image_dir, coco2014_image_path, load_vqa, load_vqa_files, vqa_files

__all__ = [
    "CaptionRecord", "InstructionRecord", "load_blip_karpathy", "load_lavin_instructions", "ClassRecord", "ClsLoc", "COGNITION", "ConversationRecord", "DATASETS", "EpisodeRecord",
    "MINI_DATASETS", "MME_SUBTASKS", "MMERecord", "Neighbor", "PERCEPTION", "ScienceQARecord", "TestClassRecord",
    "VQARecord", "check_dataset", "coco2014_image_dir", "coco2014_image_path", "coco_caption_paths",
    "imagenet_test_classes", "imagenet_test_pairs", "karpathy_path", "llava_paths", "load_coco_captions",
    "load_episodes", "load_imagenet_test", "load_imagenet_train", "load_isekai", "load_karpathy", "load_llava",
    "load_map_clsloc", "load_mme", "load_mme_subtask", "load_scienceqa", "load_vqa", "load_vqa_files", "make_mini",
    "mme_root", "open_rgb", "scienceqa_paths", "vqa_files",
]
