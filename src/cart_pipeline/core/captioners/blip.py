"""`blip`: an image captioning model from a local transformers checkpoint (optional).

For users who have BLIP weights on disk (e.g. Salesforce/blip-image-captioning-base saved with
`save_pretrained`); nothing is downloaded. Beam search returns `n` distinct captions.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from cart_pipeline.core.media import MediaDecodeError, load_image_rgb

from .context import CAPTION_COLUMNS, CaptionContext

SOURCE = "pseudo:blip"


@torch.inference_mode()
def blip_captions(
    context: CaptionContext,
    n: int = 3,
    model_path: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 24,
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    from transformers import BlipForConditionalGeneration, BlipProcessor

    if not model_path or not Path(model_path).is_dir():
        raise FileNotFoundError(
            f"blip captioner needs `model_path`, a local BLIP checkpoint folder; got {model_path!r}"
        )
    if context.dataset_root is None:
        raise ValueError("blip captioner needs the dataset root to read the images")
    processor = BlipProcessor.from_pretrained(model_path, local_files_only=True)
    model = BlipForConditionalGeneration.from_pretrained(model_path, local_files_only=True).eval()

    rows, problems = [], []
    items = list(zip(context.candidates.item_id, context.candidates.media_path, strict=True))
    for start in range(0, len(items), batch_size):
        batch, ids = [], []
        for item_id, media_path in items[start : start + batch_size]:
            try:
                batch.append(load_image_rgb(Path(context.dataset_root) / media_path))
                ids.append(item_id)
            except MediaDecodeError as error:
                problems.append((item_id, str(error)))
        if not batch:
            continue
        inputs = processor(images=batch, return_tensors="pt")
        generated = model.generate(
            **inputs, num_beams=max(n, 2), num_return_sequences=n, max_new_tokens=max_new_tokens
        )
        texts = processor.batch_decode(generated, skip_special_tokens=True)
        for i, item_id in enumerate(ids):
            for text in dict.fromkeys(t.strip() for t in texts[i * n : (i + 1) * n]):
                if text:
                    rows.append((item_id, text, SOURCE))
    return pd.DataFrame(rows, columns=CAPTION_COLUMNS), problems
