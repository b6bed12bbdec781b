"""Fixtures for the encoder tests: the shipped Tux Paint items, models loaded once per session,
and short real video clips made with PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def single_thread():
    """Tiny tensors: one thread avoids OpenMP barrier stalls (50x slower on a shared 2-core box)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shipped_media(default_manifest, default_dataset):
    """item_id -> absolute media path, e.g. shipped_media('image:vehicles/garbagetruck')."""
    paths = dict(zip(default_manifest.item_id, default_manifest.media_path, strict=True))

    def lookup(item_id: str) -> Path:
        if item_id not in paths:
            pytest.skip(f"{item_id} is not in the shipped manifest")
        return default_dataset / paths[item_id]

    return lookup


@pytest.fixture(scope="session")
def image_encoder():
    from cart_pipeline.core.encoders.image import EfficientNetLiteImageEncoder

    return EfficientNetLiteImageEncoder()


@pytest.fixture(scope="session")
def audio_encoder():
    from cart_pipeline.core.encoders.audio import AiSfxAudioEncoder

    return AiSfxAudioEncoder()


@pytest.fixture(scope="session")
def text_encoder():
    from cart_pipeline.core.encoders.text import MiniLMTextEncoder

    return MiniLMTextEncoder()


def write_pan_clip(
    picture: Image.Image, path: Path, codec: str, n_frames: int = 12, fps: int = 12, size: int = 128
) -> Path:
    """~1 s clip: a square window sliding left to right over ``picture`` placed on white."""
    import av

    w, h = picture.size
    side = max(w, h)
    canvas = Image.new("RGB", (side + side // 3, side), (255, 255, 255))
    canvas.paste(picture.convert("RGB"), ((canvas.width - w) // 2, (side - h) // 2))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            x = round(i * (canvas.width - side) / (n_frames - 1))
            frame = canvas.crop((x, 0, x + side, side)).resize(
                (size, size), Image.Resampling.BILINEAR
            )
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed frames
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def pan_clips(tmp_path_factory, shipped_media) -> dict[str, Path]:
    """Real encoded clips: pans over the garbage-truck and zebra stamps; the .mkv header
    carries no frame count, so sampling has to count frames itself."""
    from cart_pipeline.core.media import load_image_rgb

    out = tmp_path_factory.mktemp("clips")
    truck = load_image_rgb(shipped_media("image:vehicles/garbagetruck"))
    zebra = load_image_rgb(shipped_media("image:animals/mammals/equines/zebra"))
    return {
        "truck_h264": write_pan_clip(truck, out / "truck.mp4", "h264"),
        "zebra_mpeg4": write_pan_clip(zebra, out / "zebra.avi", "mpeg4"),
        "truck_mkv": write_pan_clip(truck, out / "truck.mkv", "mpeg4"),
    }
