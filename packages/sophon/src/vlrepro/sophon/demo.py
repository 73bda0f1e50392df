"""``vlrepro-sophon demo``: a Gradio chat with image upload, like LLaVA's ``gradio_web_server`` (spec §2.4, §8.7).

One image per conversation; the first user turn carries ``<image>``, later turns are plain text
(``USER: <image>\\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:`` under the ``v1`` template, as the
eval scripts and LLaVA's demo use). Temperature 0 is greedy decoding. "Self-questioning" runs
the ``--sq`` pipeline of ``demo/visual_questioning.py`` (describe, sample ``n_shot`` questions,
answer them, then answer the user). The original demo parsed ``--lora_pretrain`` but never used
it and crashed on the missing ``Conversation.clear_message`` (spec §8.2, §8.7); here the model
is loaded exactly as ``eval`` loads it.

The server binds 127.0.0.1 unless ``host=`` says otherwise; ``share`` stays off unless asked.
:meth:`DemoModel.respond` is the chat function; it is tested headlessly with a tiny model.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from PIL import Image
from vlrepro.shared.errors import VlreproError

from .conversation import inference_prompt
from .data import preprocess_image

Message = dict[str, Any]  # gradio "messages" format: {"role": "user"|"assistant", "content": str}


def history_pairs(history: list[Message] | None) -> list[tuple[str, str]]:
    """Gradio messages -> (user, assistant) pairs; non-text entries (the image echo) are skipped."""
    pairs: list[tuple[str, str]] = []
    pending: str | None = None
    for m in history or []:
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, str):
            continue
        if m["role"] == "user":
            pending = content
        elif m["role"] == "assistant" and pending is not None:
            pairs.append((pending, content))
            pending = None
    return pairs


class DemoModel:
    """A loaded SQ-LLaVA + tokenizer + image processor and the chat function."""

    def __init__(self, model, tokenizer, image_processor, *, conv_mode: str = "v1", image_aspect_ratio: str = "pad",
                 device: str = "cpu", max_new_tokens: int = 512):
        self.model, self.tokenizer, self.image_processor = model.eval(), tokenizer, image_processor
        self.conv_mode, self.image_aspect_ratio = conv_mode, image_aspect_ratio
        self.device, self.max_new_tokens = device, max_new_tokens

    def prompt(self, message: str, history: list[Message] | None) -> str:
        """The full prompt for ``message`` after ``history`` (image in the first user turn)."""
        return inference_prompt(message, self.conv_mode, history=history_pairs(history))

    @torch.no_grad()
    def respond(self, image: Image.Image | None, message: str, history: list[Message] | None = None, *,
                temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int | None = None,
                sq: bool = False, n_shot: int = 3, max_question_tokens: int = 300,
                seed: int = 0) -> tuple[str, list[Message]]:
        """Answer ``message`` about ``image``; returns (reply, history + the two new messages)."""
        from .evaluate import _generate, self_questioning_answer

        if image is None:
            raise ValueError("upload an image first")
        if not message or not message.strip():
            raise ValueError("type a question")
        message = message.strip()
        n_new = int(max_new_tokens or self.max_new_tokens)
        images = preprocess_image(image.convert("RGB"), self.image_processor, self.image_aspect_ratio)[None].to(self.device)
        if sq:
            reply, _ = self_questioning_answer(self.model, self.tokenizer, images, message, n_shot=int(n_shot),
                                               max_new_tokens=n_new, max_question_tokens=int(max_question_tokens),
                                               seed=seed)
        else:
            sampling: dict[str, Any] = {}
            if temperature and temperature > 0:
                torch.manual_seed(seed)
                sampling = dict(do_sample=True, temperature=float(temperature), top_p=float(top_p))
            reply = _generate(self.model, self.tokenizer, [self.prompt(message, history)], images,
                              max_new_tokens=n_new, device=self.device, **sampling)[0]
        new_history = list(history or []) + [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]
        return reply, new_history


def build_app(dm: DemoModel):
    """Gradio Blocks: image upload, chatbot, question box, sampling controls, self-questioning switch."""
    import gradio as gr

    def submit(image, message, history, temperature, top_p, max_new_tokens, sq, n_shot):
        try:
            _, history = dm.respond(image, message, history, temperature=temperature, top_p=top_p,
                                    max_new_tokens=int(max_new_tokens), sq=bool(sq), n_shot=int(n_shot))
        except ValueError as e:
            raise gr.Error(str(e)) from None
        return history, ""

    with gr.Blocks(title="SQ-LLaVA (vlrepro-sophon)") as app:
        gr.Markdown("# SQ-LLaVA: Self-Questioning for Large Vision-Language Assistant\n"
                    "Upload an image and chat about it. *Clear* starts a new conversation (one image per conversation).")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="pil", label="Image")
                temperature = gr.Slider(0.0, 1.5, value=0.2, step=0.1, label="Temperature (0 = greedy)")
                top_p = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Top P")
                max_new = gr.Slider(1, 1024, value=dm.max_new_tokens, step=1, label="Max new tokens")
                sq = gr.Checkbox(value=False, label="Self-questioning (describe, ask and answer own questions first)")
                n_shot = gr.Slider(1, 8, value=3, step=1, label="Self-generated questions (n_shot)")
            with gr.Column(scale=2):
                chat = gr.Chatbot(label="SQ-LLaVA", height=520)
                text = gr.Textbox(label="Question", placeholder="Ask about the image and press Enter")
                with gr.Row():
                    send = gr.Button("Send", variant="primary")
                    clear = gr.Button("Clear")
        inputs = [image, text, chat, temperature, top_p, max_new, sq, n_shot]
        send.click(submit, inputs, [chat, text])
        text.submit(submit, inputs, [chat, text])
        clear.click(lambda: ([], None, ""), None, [chat, image, text])
    return app


def load_demo_model(cfg: DictConfig) -> DemoModel:
    """The checkpoint at ``model_path`` (+ ``model_base`` for LoRA folders), or a tiny random one with ``tiny=true``."""
    from .evaluate import _load_model

    device = str(cfg.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VlreproError("device=cuda but no CUDA GPU is available", fix="run with --device cpu")
    if cfg.get("tiny"):
        model, tokenizer, processor = tiny_demo_model(int(cfg.seed))
    else:
        model, tokenizer, processor = _load_model(cfg)
    return DemoModel(model.to(device), tokenizer, processor, conv_mode=str(cfg.conv_mode),
                     image_aspect_ratio=str(cfg.image_aspect_ratio), device=device, max_new_tokens=int(cfg.max_new_tokens))


def tiny_demo_model(seed: int = 0):
    """A tiny random SQ-LLaVA (tiny Llama tokenizer, tiny CLIP) for trying the UI without weights."""
    import tempfile
    from pathlib import Path

    from transformers import CLIPImageProcessor
    from vlrepro.shared.testing import tiny_llama_tokenizer

    from .model import SqLlavaForCausalLM, tiny_sq_llava_config

    tok = tiny_llama_tokenizer(Path(tempfile.mkdtemp(prefix="sophon-demo-tok-")))
    torch.manual_seed(seed)
    model = SqLlavaForCausalLM(tiny_sq_llava_config(len(tok))).eval()
    size = model.config.vision_config["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return model, tok, processor


def demo_verb(cfg: DictConfig) -> int:
    dm = load_demo_model(cfg)
    app = build_app(dm)
    host, port = str(cfg.host), int(cfg.port)
    print(f"[sophon] demo on http://{host}:{port}" + (" (share link requested)" if cfg.get("share") else ""), flush=True)
    app.queue().launch(server_name=host, server_port=port, share=bool(cfg.get("share", False)))
    return 0
