"""Where each official file comes from: the download steps of the seed READMEs, one line each.

Every reader error and every ``vlrepro data check`` line ends with one of these, so that a user
who lacks a file learns the variable to set and the command that gets it.
"""

from __future__ import annotations

VQAV2_BASE = "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa"
OKVQA_BASE = "https://okvqa.allenai.org/static/data"

#: official file name -> how to get it
HOW: dict[str, str] = {
    # VQAv2 (LIVE and Lever-LM READMEs)
    "v2_OpenEnded_mscoco_train2014_questions.json":
        f"cd $VQAV2_PATH && wget {VQAV2_BASE}/v2_Questions_Train_mscoco.zip && unzip v2_Questions_Train_mscoco.zip",
    "v2_OpenEnded_mscoco_val2014_questions.json":
        f"cd $VQAV2_PATH && wget {VQAV2_BASE}/v2_Questions_Val_mscoco.zip && unzip v2_Questions_Val_mscoco.zip",
    "v2_mscoco_train2014_annotations.json":
        f"cd $VQAV2_PATH && wget {VQAV2_BASE}/v2_Annotations_Train_mscoco.zip && unzip v2_Annotations_Train_mscoco.zip",
    "v2_mscoco_val2014_annotations.json":
        f"cd $VQAV2_PATH && wget {VQAV2_BASE}/v2_Annotations_Val_mscoco.zip && unzip v2_Annotations_Val_mscoco.zip",
    # OK-VQA (LIVE README)
    "OpenEnded_mscoco_train2014_questions.json":
        f"cd $OKVQA_PATH && wget {OKVQA_BASE}/OpenEnded_mscoco_train2014_questions.json.zip && unzip OpenEnded_mscoco_train2014_questions.json.zip",
    "OpenEnded_mscoco_val2014_questions.json":
        f"cd $OKVQA_PATH && wget {OKVQA_BASE}/OpenEnded_mscoco_val2014_questions.json.zip && unzip OpenEnded_mscoco_val2014_questions.json.zip",
    "mscoco_train2014_annotations.json":
        f"cd $OKVQA_PATH && wget {OKVQA_BASE}/mscoco_train2014_annotations.json.zip && unzip mscoco_train2014_annotations.json.zip",
    "mscoco_val2014_annotations.json":
        f"cd $OKVQA_PATH && wget {OKVQA_BASE}/mscoco_val2014_annotations.json.zip && unzip mscoco_val2014_annotations.json.zip",
    # COCO captions (Lever-LM README layout)
    "captions_train2014.json": "cd $COCO_PATH/mscoco2014 && wget http://images.cocodataset.org/annotations/annotations_trainval2014.zip && unzip annotations_trainval2014.zip",
    "captions_val2014.json": "cd $COCO_PATH/mscoco2014 && wget http://images.cocodataset.org/annotations/annotations_trainval2014.zip && unzip annotations_trainval2014.zip",
    "captions_train2017.json": "cd $COCO_PATH/mscoco2017 && wget http://images.cocodataset.org/annotations/annotations_trainval2017.zip && unzip annotations_trainval2017.zip",
    "captions_val2017.json": "cd $COCO_PATH/mscoco2017 && wget http://images.cocodataset.org/annotations/annotations_trainval2017.zip && unzip annotations_trainval2017.zip",
    "train2014": "cd $COCO_PATH/mscoco2014 && wget http://images.cocodataset.org/zips/train2014.zip && unzip train2014.zip",
    "val2014": "cd $COCO_PATH/mscoco2014 && wget http://images.cocodataset.org/zips/val2014.zip && unzip val2014.zip",
    "train2017": "cd $COCO_PATH/mscoco2017 && wget http://images.cocodataset.org/zips/train2017.zip && unzip train2017.zip",
    "val2017": "cd $COCO_PATH/mscoco2017 && wget http://images.cocodataset.org/zips/val2017.zip && unzip val2017.zip",
    "dataset_coco.json": "get Karpathy's splits (caption_datasets.zip, https://cs.stanford.edu/people/karpathy/deepimagesent/) "
                         "and put dataset_coco.json in $COCO_PATH (or set KARPATHY_COCO_PATH)",
    # ScienceQA (ADEM-VL README; the code opens problems.json)
    "problems.json": "download ScienceQA data from https://github.com/lupantech/ScienceQA (tools/download.sh) into $SCIENCEQA_PATH",
    "pid_splits.json": "download ScienceQA data from https://github.com/lupantech/ScienceQA (tools/download.sh) into $SCIENCEQA_PATH",
    "captions.json": "get captions.json from https://github.com/lupantech/ScienceQA (data/captions.json) into $SCIENCEQA_PATH",
    "all_data.json": "get LaVIN's all_data.json (https://github.com/luogen1996/LaVIN, 'Multimodal Chatbot' data) into $SCIENCEQA_PATH",
    # LLaVA (SQ-LLaVA README)
    "blip_laion_cc_sbu_558k.json": "download https://huggingface.co/datasets/liuhaotian/LLaVA-Pretrain into $LLAVA_DATA_PATH "
                                   "(images.zip unzipped into $LLAVA_DATA_PATH/images)",
    "llava_v1_5_mix665k.json": "download https://huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K (llava_v1_5_mix665k.json) "
                               "into $LLAVA_DATA_PATH and its images under $LLAVA_DATA_PATH/images (docs/Data.md of LLaVA)",
    # LCL
    "train900_pairs.jsonl": "copy docs/train900_pairs.jsonl of https://github.com/isekai-portal/Link-Context-Learning into $IMAGENET_PATH",
    "test100_pairs.jsonl": "run `vlrepro data prepare imagenet` (the released blob is broken; it is rebuilt from the "
                           "100 classes missing from train900_pairs.jsonl)",
    "map_clsloc.txt": "copy map_clsloc.txt of the ILSVRC devkit (wnid id name per line) into $IMAGENET_PATH",
    "LOC_val_solution.csv": "from the Kaggle ImageNet (ILSVRC/Data/CLS-LOC) download; needed to pool val images",
    "ISEKAI-10.json": "download https://huggingface.co/datasets/ISEKAI-Portal/ISEKAI-10 into $ISEKAI_PATH",
    "ISEKAI-pair.json": "download https://huggingface.co/datasets/ISEKAI-Portal/ISEKAI-pair into $ISEKAI_PATH",
    # MME
    "MME_Benchmark_release_version": "request MME from https://github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation "
                                     "and unzip MME_Benchmark_release_version into $MME_PATH",
}

DATASET_HOW: dict[str, str] = {
    "coco": "COCO images: " + HOW["train2014"],
    "imagenet": "ImageNet CLS-LOC (train/<wnid>/*.JPEG, val/*.JPEG) from https://image-net.org or Kaggle "
                "(ILSVRC/Data/CLS-LOC) into $IMAGENET_PATH",
    "isekai": "download https://huggingface.co/datasets/ISEKAI-Portal/ISEKAI-10 and "
              "https://huggingface.co/datasets/ISEKAI-Portal/ISEKAI-pair into $ISEKAI_PATH",
    "mme": HOW["MME_Benchmark_release_version"],
}


def how(name: str) -> str:
    """How to get the file or folder called ``name`` (its base name)."""
    return HOW.get(name, "see the seed README's data section; `vlrepro data make-mini` writes a small set in this format")
