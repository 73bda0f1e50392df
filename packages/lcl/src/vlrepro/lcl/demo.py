"""``vlrepro-lcl demo``: the Gradio app of ``mllm/demo/demo.py`` — a VQA tab and an LCL tab (spec §5).

LCL tab: positive support image(s) + one positive label, negative support image(s) + one negative
label, a query image and a question. Support answers are the raw label + `` [END EXAMPLE]``; the
query is the (scrubbed) question + ``<image>``; greedy decoding, special tokens skipped in the reply.
The answer functions take a loaded model and are tested headlessly.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from PIL import Image
from vlrepro.shared.errors import VlreproError

from .method import Episode, demo_lcl_episode, demo_vqa_rounds, encode_rounds
from .model import preprocess_images

UI_NOTE = "2 positive + 2 negative support images recommended; only up to 4-shot."


class DemoModel:
    """A loaded model + tokenizer + processor and the two answer functions of the app."""

    def __init__(self, model, tokenizer, processor, *, device: str = "cpu", max_new_tokens: int = 256):
        self.model, self.tokenizer, self.processor = model.eval(), tokenizer, processor
        self.device, self.max_new_tokens = device, max_new_tokens

    @torch.no_grad()
    def _generate(self, rounds, images: list[Image.Image]) -> str:
        enc = encode_rounds(rounds, self.tokenizer, self.model.config.image_token_len, train=False)
        ids = torch.tensor([enc.input_ids], device=self.device)
        pixels = preprocess_images(images, self.processor).to(self.device)  # [S, 3, H, W]
        use_amp = self.device.startswith("cuda")
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            new = self.model.greedy_generate(ids, torch.ones_like(ids), pixels, max_new_tokens=self.max_new_tokens,
                                             eos_token_id=self.tokenizer.eos_token_id,
                                             pad_token_id=self.tokenizer.pad_token_id or 0)
        return self.tokenizer.decode(new[0].tolist(), skip_special_tokens=True).strip()

    def answer_vqa(self, image: Image.Image | None, question: str) -> str:
        if image is None or not question.strip():
            raise ValueError("give an image and a question")
        return self._generate(demo_vqa_rounds(image, question), [image])

    def answer_lcl(self, positives: list[Image.Image | None], pos_label: str, negatives: list[Image.Image | None],
                   neg_label: str, query: Image.Image | None, question: str) -> str:
        pos = [im for im in positives if im is not None]
        neg = [im for im in negatives if im is not None]
        if not pos or not neg or query is None:
            raise ValueError("give at least one positive and one negative support image and a query image")
        if not pos_label.strip() or not neg_label.strip():
            raise ValueError("give the positive and the negative label")
        episode: Episode = demo_lcl_episode(pos, pos_label.strip(), neg, neg_label.strip(), query, question)
        return self._generate(episode.rounds, episode.images)


def build_app(dm: DemoModel):
    """Gradio Blocks with the VQA and LCL tabs; chat histories as (question, answer) message pairs."""
    import gradio as gr

    def vqa_submit(image, question, history):
        try:
            answer = dm.answer_vqa(image, question)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        return (history or []) + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    def lcl_submit(p1, p2, pos_label, n1, n2, neg_label, query, question, history):
        try:
            answer = dm.answer_lcl([p1, p2], pos_label, [n1, n2], neg_label, query, question)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        return (history or []) + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    with gr.Blocks(title="Link-Context Learning (vlrepro-lcl)") as app:
        gr.Markdown("# Link-Context Learning for Multimodal LLMs\nVQA and link-context (LCL) demo.")
        with gr.Tab("VQA"):
            with gr.Row():
                v_img = gr.Image(type="pil", label="Image")
                v_chat = gr.Chatbot(label="VQA Chatbot")
            v_q = gr.Textbox(label="Question")
            with gr.Row():
                v_go = gr.Button("Submit")
                v_clear = gr.Button("Clear")
            v_go.click(vqa_submit, [v_img, v_q, v_chat], v_chat)
            v_clear.click(lambda: [], None, v_chat)
        with gr.Tab("LCL"):
            gr.Markdown(UI_NOTE)
            with gr.Row():
                p1 = gr.Image(type="pil", label="Positive Support Image 1")
                p2 = gr.Image(type="pil", label="Positive Support Image 2 (optional)")
                n1 = gr.Image(type="pil", label="Negative Support Image 1")
                n2 = gr.Image(type="pil", label="Negative Support Image 2 (optional)")
            with gr.Row():
                pos_label = gr.Textbox(label="Positive label")
                neg_label = gr.Textbox(label="Negative label")
            with gr.Row():
                q_img = gr.Image(type="pil", label="Query Image")
                l_chat = gr.Chatbot(label="LCL Chatbot")
            l_q = gr.Textbox(label="Question", value="What is the name of this?")
            with gr.Row():
                l_go = gr.Button("Submit")
                l_clear = gr.Button("Clear")
            l_go.click(lcl_submit, [p1, p2, pos_label, n1, n2, neg_label, q_img, l_q, l_chat], l_chat)
            l_clear.click(lambda: [], None, l_chat)
    return app


def load_demo_model(cfg: DictConfig) -> DemoModel:
    """The checkpoint at ``model_path`` (or a tiny random model with ``tiny=true``); 8/4-bit needs CUDA + bitsandbytes."""
    from .runs import resolve_device

    device = resolve_device(cfg.device)
    if cfg.load_in_8bit or cfg.load_in_4bit:
        flag = "--load_in_8bit" if cfg.load_in_8bit else "--load_in_4bit"
        if not torch.cuda.is_available():
            raise VlreproError(f"{flag} needs a CUDA GPU (bitsandbytes quantisation); none is available",
                               fix="drop the flag to run in float32 on CPU")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise VlreproError(f"{flag} needs bitsandbytes, which is not installed", fix="pip install bitsandbytes") from None
    if cfg.tiny:
        import tempfile
        from pathlib import Path

        from .model import load_lcl
        from .smoke import build_tiny_checkpoint

        model, tok, proc = load_lcl(build_tiny_checkpoint(Path(tempfile.mkdtemp(prefix="lcl-demo-tiny-"))))
    else:
        model, tok, proc = _load_quantised_or_plain(cfg, device)
    return DemoModel(model.to(device) if not (cfg.load_in_8bit or cfg.load_in_4bit) else model, tok, proc,
                     device=device, max_new_tokens=int(cfg.max_new_tokens))


def _load_quantised_or_plain(cfg: DictConfig, device: str):
    """Plain fp16/fp32 load, or 8/4-bit through ``BitsAndBytesConfig`` (the original passed an
    unknown ``quantization_config`` kwarg and crashed with a TypeError)."""
    from .model import LCLForCausalLM, load_lcl

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    model, tok, proc = load_lcl(cfg.model_path, torch_dtype=dtype, vision_tower=cfg.get("vision_tower"))
    if cfg.load_in_8bit or cfg.load_in_4bit:
        from transformers import BitsAndBytesConfig

        tmp = _saved_copy(model, tok, proc)
        qc = BitsAndBytesConfig(load_in_8bit=bool(cfg.load_in_8bit), load_in_4bit=bool(cfg.load_in_4bit),
                                llm_int8_skip_modules=["vision_tower", "mm_projector", "lm_head"])
        model = LCLForCausalLM.from_pretrained(tmp, quantization_config=qc, torch_dtype=torch.float16, device_map={"": 0})
    return model, tok, proc


def _saved_copy(model, tok, proc) -> str:
    import tempfile

    d = tempfile.mkdtemp(prefix="lcl-demo-")
    model.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    proc.save_pretrained(d)
    return d


def run_demo(cfg: DictConfig) -> int:
    dm = load_demo_model(cfg)
    app = build_app(dm)
    print(f"[lcl] demo on http://{cfg.server_name}:{cfg.server_port}")
    app.launch(server_name=str(cfg.server_name), server_port=int(cfg.server_port), share=False)
    return 0

