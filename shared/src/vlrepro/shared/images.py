"""Image helpers that several papers' preprocessing shares."""

from __future__ import annotations

from PIL import Image


def expand_to_square(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Centre ``img`` on a square canvas of ``background``, side = the longer edge.

    LLaVA's ``image_aspect_ratio: pad`` (background = 255 x the CLIP mean) and Shikra's
    ``Expand2square`` (white) are this function; a square image is returned unchanged.
    """
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), background)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas
