"""Decoding media files into what the encoders read: RGB images, mono waveforms, video frames.

Every helper raises :class:`MediaDecodeError` (with a human-readable reason) for a file it
cannot use, whatever the underlying library raised, so the feature stage can reject that row
and carry on with the others.
"""

from __future__ import annotations

import logging
from math import gcd
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image, ImageOps

from cart_pipeline.core.errors import RunInterrupted

logger = logging.getLogger(__name__)


class MediaDecodeError(ValueError):
    """A media file could not be decoded into usable content; ``str(err)`` is the reason."""


def outside_dataset(root: str | Path, media_path: str) -> str | None:
    """Why ``media_path`` does not name a path inside the dataset folder ``root``, or None.

    Media paths are relative to the dataset root. An absolute path, a ``..`` escape or a
    symlink that resolves outside would let a manifest row read any file the process can, and
    the report would embed it in a page meant to be shared.
    """
    if "\x00" in media_path:
        return f"media_path {media_path!r} contains a NUL byte"
    if (
        PurePosixPath(media_path).is_absolute()
        or PureWindowsPath(media_path).drive
        or media_path.startswith("\\")
    ):
        return (
            f"media_path {media_path!r} is absolute; media paths are relative to the dataset folder"
        )
    root = Path(root).resolve()
    if not (root / media_path).resolve().is_relative_to(root):
        return f"media_path {media_path!r} points outside the dataset folder"
    return None


def _fail(kind: str, path: str | Path, err: BaseException) -> MediaDecodeError:
    detail = str(err).strip() or type(err).__name__
    return MediaDecodeError(f"cannot decode {kind} {Path(path).name}: {detail}")


def _require_file(kind: str, path: str | Path) -> None:
    # decoders word a missing file differently (libsndfile: "System error"); say it plainly
    if not Path(path).is_file():
        raise MediaDecodeError(f"missing {kind} file {path}")


# Pillow refuses images over ~179 MP as decompression bombs, but one just under that limit
# still costs ~4 GB to decode. Encoders see 224 px: 40 MP is far more than any real photo needs.
MAX_IMAGE_PIXELS = 40_000_000
# Clip embeddings summarise a clip; an hour-long file would be decoded whole for nothing.
MAX_AUDIO_SECONDS = 30.0


def _high_bit_depth_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale ('I;16*', 'I', 'F') to 'L' by scaling, not clipping.

    Pillow's own convert clips those modes at 255, so a 16-bit PNG turns almost white.
    """
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F" and values.size and np.nanmax(values) <= 1.0:
        scaled = values * 255.0  # float images in [0, 1]
    else:
        scaled = values / 257.0  # 65535 -> 255, the 16-bit range of 'I;16' and PNG's 'I'
    return Image.fromarray(
        np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    )  # 2-D uint8: mode L


def load_image_rgb(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an image into RGB; transparent pixels are composited onto white.

    White, not black: the stamps are cut-outs meant to sit on a white page, and ImageNet
    models see dark silhouettes very differently from the same object on white. An image over
    ``max_pixels`` is decoded at a reduced size where the format can (JPEG) and refused
    otherwise, before its pixels are decoded.
    """
    _require_file("image", path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                img.draft("RGB", (width // 8, height // 8))  # JPEG: decode at 1/2..1/8 scale
                if img.size[0] * img.size[1] > max_pixels:
                    raise MediaDecodeError(
                        f"image {Path(path).name} is {width}x{height} = {width * height / 1e6:.0f} MP, "
                        f"over the budget of {max_pixels / 1e6:.0f} MP"
                    )
            img.load()  # decode now so a truncated file fails here, not later in a worker
            img = ImageOps.exif_transpose(img)  # photos carry their rotation in EXIF
            if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
                img = _high_bit_depth_to_8bit(img)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(white, rgba).convert("RGB")
            return img.convert("RGB")
    except (MediaDecodeError, RunInterrupted):  # an interrupt is not a bad file
        raise
    # third-party decoders raise anything (OSError, SyntaxError, struct.error, ...): any
    # failure here is a property of the file
    except Exception as err:
        raise _fail("image", path, err) from err


def load_audio_mono(
    path: str | Path, sample_rate: int, max_seconds: float | None = MAX_AUDIO_SECONDS
) -> np.ndarray:
    """Decode audio to a mono float32 waveform at ``sample_rate`` (channels averaged).

    Only the first ``max_seconds`` are decoded (None = all); a longer file is logged as cut.
    Rejects files with no samples, non-finite samples, or nothing but digital silence:
    none of them carries content an embedding could describe.
    """
    import soundfile as sf

    _require_file("audio", path)
    try:
        with sf.SoundFile(str(path)) as audio:
            rate, frames = audio.samplerate, audio.frames
            limit = frames if max_seconds is None else min(frames, int(max_seconds * rate))
            signal = audio.read(limit, dtype="float32", always_2d=True)  # (n, channels)
    except RunInterrupted:
        raise
    except Exception as err:
        raise _fail("audio", path, err) from err
    if frames > limit:
        logger.warning(
            "audio %s is %.0f s long; only its first %.0f s are used (max_seconds)",
            Path(path).name,
            frames / rate,
            max_seconds,
        )
    if signal.size == 0:
        raise MediaDecodeError(f"empty audio {Path(path).name}: no samples")
    mono = signal.mean(axis=1)  # (n,) the 'mix' downmix essentia's loader uses too
    if not np.isfinite(mono).all():
        raise MediaDecodeError(f"bad audio {Path(path).name}: non-finite samples")
    if not mono.any():
        raise MediaDecodeError(f"silent audio {Path(path).name}: all samples are zero")
    if rate != sample_rate:
        from scipy.signal import resample_poly

        g = gcd(int(rate), int(sample_rate))
        # polyphase FIR (Kaiser window): vectorised, no FFT edge wrap-around, exact ratio
        mono = resample_poly(mono, int(sample_rate) // g, int(rate) // g)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _frame_indices(n_total: int, n_frames: int) -> list[int]:
    """Centres of ``n_frames`` equal segments of the clip (TSN-style uniform sampling)."""
    return [min(n_total - 1, int((i + 0.5) * n_total / n_frames)) for i in range(n_frames)]


def sample_video_frames(path: str | Path, n_frames: int) -> list[Image.Image]:
    """Decode ``n_frames`` uniformly spaced RGB frames of a video (one decoding pass).

    Clips shorter than ``n_frames`` frames repeat frames, so the result always has
    ``n_frames`` images.
    """
    import av

    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    _require_file("video", path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaDecodeError(f"no video stream in {Path(path).name}")
            stream = container.streams.video[0]
            n_total = stream.frames
            if n_total <= 0:  # container does not say: count packets (demux only, no decoding)
                n_total = sum(1 for p in container.demux(stream) if p.size)
                container.seek(0)
            if n_total <= 0:
                raise MediaDecodeError(f"no video frames in {Path(path).name}")
            wanted = _frame_indices(n_total, n_frames)
            stream.thread_type = "AUTO"  # frame-parallel decoding in ffmpeg's own threads
            picked: dict[int, Image.Image] = {}
            last = None
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    picked[index] = frame.to_image().convert("RGB")
                last = frame
                if index >= wanted[-1]:
                    break
            if last is None:
                raise MediaDecodeError(f"no decodable video frames in {Path(path).name}")
            # the header's frame count can overstate what decodes: the last decoded frame
            # stands in for the positions past the end
            missing = [i for i in wanted if i not in picked]
            if missing:
                tail = last.to_image().convert("RGB")
                picked.update({i: tail for i in missing})
            return [picked[i] for i in wanted]
    except (MediaDecodeError, RunInterrupted):  # an interrupt is not a bad file
        raise
    except Exception as err:
        raise _fail("video", path, err) from err
