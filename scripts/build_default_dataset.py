#!/usr/bin/env python3
"""Build the shipped default image/audio/text dataset from Tux Paint stamps.

The Debian package ``tuxpaint-stamps-default`` contains ~950 clip-art
"stamps", each with an English description and, for some of them, a short
sound effect.  This script turns it into a small, deterministic dataset:

* ``images/<category>/<name>.jpg`` -- every described stamp, flattened onto a
  white background and resized so that its long side is at most 224 px;
* ``audio/<category>/<name>.ogg``  -- every stamp sound effect, mono, at most
  22050 Hz and at most 10 s (OGG Vorbis);
* ``video/...mp4`` -- 200 short *synthetic* clips (3 s, 224 px, H.264) made from
  the images above: 100 with one stamp under a slow zoom or pan, described by
  the stamp's own text, and 100 with two stamps in sequence, described
  "<first>, then <second>" (real pictures, generated motion);
* ``manifest.csv`` -- one row per item:
  ``item_id,modality,media_path,text,category,group``;
* ``NOTICE`` and ``COPYRIGHT`` -- provenance and licence (GPL-2).

The package is fetched with ``apt-get download`` (nothing is installed) and
unpacked with ``dpkg-deb -x``.  Running the script twice on the same package
version produces byte-identical output.

Usage::

    python scripts/build_default_dataset.py [--out data/01_raw/tuxpaint]
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import resvg_py
import soundfile as sf
from PIL import Image

LOG = logging.getLogger("build_default_dataset")

PACKAGE = "tuxpaint-stamps-default"
STAMPS_SUBDIR = Path("usr/share/tuxpaint/stamps")
COPYRIGHT_FILE = Path("usr/share/doc") / PACKAGE / "copyright"

MAX_SIDE = 224  # long side of output images, in pixels
SVG_SUPERSAMPLE = 2  # SVGs are rasterised at 2x MAX_SIDE, then LANCZOS-reduced
JPEG_OPTIONS = {"quality": 90, "optimize": True, "progressive": False, "subsampling": "4:2:0"}

TARGET_RATE = 22050  # Hz; audio above this rate is resampled down to it
MAX_SECONDS = 10.0  # longer sound effects are truncated (with a short fade-out)
FADE_SECONDS = 0.05
OGG_SERIAL = 0x54555850  # fixed Ogg stream serial ("TUXP") for reproducible files

VIDEO_SIDE = 224  # square frames, pixels (the image encoder's input size)
VIDEO_FPS = 8
VIDEO_FRAMES = 24  # 3 s
VIDEO_SINGLES = 100  # clips of one stamp under a zoom or pan
VIDEO_SEQUENCES = 100  # clips of two stamps in sequence
VIDEO_SEED = 2025  # which stamps go into clips, and which motion each gets
# single-threaded x264 so that the same frames give the same bytes on every machine
X264_OPTIONS = {"crf": "26", "preset": "veryslow", "threads": "1"}
# descriptions a clip's text can be composed from: "A brown hen, then a red car."
COMPOSABLE_TEXT = re.compile(r"^(A|An|The|Some) [^.]{1,40}\.$")

# Translation lines in a stamp's .txt file look like "de.utf8=..." or "pt_BR=...".
LOCALE_LINE = re.compile(r"^[A-Za-z]{2,3}(_[A-Za-z]{2,4})?(@\w+)?(\.[\w-]+)?\s*=")

# `group` is the stamp: its picture and its sound land in the same train/test split.
MANIFEST_COLUMNS = ["item_id", "modality", "media_path", "text", "category", "group"]


@dataclass(frozen=True)
class Stamp:
    """One Tux Paint stamp: its description file and optional media files."""

    category: str  # e.g. "animals/birds"
    name: str  # e.g. "hen"
    txt: Path
    png: Path | None
    svg: Path | None
    ogg: Path | None

    @property
    def key(self) -> str:
        """Return the ``<category>/<name>`` path that identifies the stamp."""
        return f"{self.category}/{self.name}"


@dataclass(frozen=True)
class ManifestRow:
    """One row of ``manifest.csv``."""

    item_id: str
    modality: str
    media_path: str
    text: str
    category: str
    group: str


# --------------------------------------------------------------------------
# Fetching and unpacking the Debian package
# --------------------------------------------------------------------------


def download_deb(workdir: Path) -> Path:
    """Download the stamps ``.deb`` into ``workdir`` with ``apt-get download``.

    ``apt-get update`` is run (once) only if the first download attempt fails,
    e.g. because the package lists have not been fetched yet.
    """
    cmd = ["apt-get", "download", PACKAGE]
    LOG.info("Running: %s", " ".join(cmd))
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        LOG.warning(
            "apt-get download failed (%s); running apt-get update and retrying",
            result.stderr.strip().splitlines()[-1:] or result.returncode,
        )
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(cmd, cwd=workdir, check=True, capture_output=True)
    debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
    if len(debs) != 1:
        raise RuntimeError(f"expected exactly one {PACKAGE} .deb in {workdir}, found {debs}")
    return debs[0]


def deb_version(deb: Path) -> str:
    """Return the ``Version`` field of a ``.deb`` file."""
    out = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def extract_deb(deb: Path, dest: Path) -> None:
    """Unpack the data archive of ``deb`` into ``dest`` (no installation)."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)


# --------------------------------------------------------------------------
# Discovering stamps
# --------------------------------------------------------------------------


def read_description(txt: Path) -> str | None:
    """Return the English description of a stamp, or ``None`` if there is none.

    The English text is the first non-empty line of the ``.txt`` file that is
    not a translation line (``<locale>=...``).
    """
    for line in txt.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        if LOCALE_LINE.match(line):
            return None  # translations start before any English line
        return line
    return None


def discover_stamps(stamps_root: Path) -> list[Stamp]:
    """Find every stamp (a ``<name>.txt`` description) below ``stamps_root``.

    Image variants without their own description (e.g. ``dumper_mirror.png``)
    and spoken descriptions (``<name>_desc*.ogg``) are not stamps of their own.
    """
    stamps = []
    for txt in sorted(stamps_root.rglob("*.txt")):
        stem = txt.with_suffix("")

        def existing(suffix: str, stem: Path = stem) -> Path | None:
            path = stem.with_suffix(suffix)
            return path if path.is_file() else None

        stamps.append(
            Stamp(
                category=txt.parent.relative_to(stamps_root).as_posix(),
                name=stem.name,
                txt=txt,
                png=existing(".png"),
                svg=existing(".svg"),
                ogg=existing(".ogg"),
            )
        )
    return stamps


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def render_svg(svg: Path, long_side: int) -> Image.Image:
    """Rasterise an SVG with resvg so that its long side is ``long_side`` px.

    System fonts are deliberately not loaded, so that the result does not
    depend on the fonts installed on the build machine (the few SVG text
    elements in the stamps are decorative and are left out).
    """
    common = {
        "svg_path": str(svg),
        "skip_system_fonts": True,
        "resources_dir": str(svg.parent),
        "dpi": 96.0,  # CSS reference DPI; resvg-py's default of 0 breaks pt/mm sizes
    }
    natural = Image.open(io.BytesIO(bytes(resvg_py.svg_to_bytes(**common))))
    zoom = long_side / max(natural.size)
    data = resvg_py.svg_to_bytes(**common, zoom=zoom)
    image = Image.open(io.BytesIO(bytes(data)))
    image.load()
    return image


def flatten_on_white(image: Image.Image) -> Image.Image:
    """Composite any transparency onto an opaque white background (RGB out)."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """Resize so the long side is at most ``max_side`` (aspect kept, LANCZOS)."""
    long_side = max(image.size)
    if long_side <= max_side:
        return image
    scale = max_side / long_side
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def build_image(stamp: Stamp, dest: Path, max_side: int) -> str:
    """Write the stamp's image as JPEG to ``dest``; return its source kind.

    The PNG is used when present; otherwise the SVG is rendered.
    """
    if stamp.png is not None:
        with Image.open(stamp.png) as src:
            source = src.copy()
        kind = "png"
    elif stamp.svg is not None:
        source = render_svg(stamp.svg, max_side * SVG_SUPERSAMPLE)
        kind = "svg"
    else:
        raise ValueError(f"{stamp.key} has no image")
    image = shrink(flatten_on_white(source), max_side)
    dest.parent.mkdir(parents=True, exist_ok=True)
    image.save(dest, "JPEG", **JPEG_OPTIONS)
    return kind


# --------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------


def resample(signal: np.ndarray, rate_in: int, rate_out: int, half_taps: int = 32) -> np.ndarray:
    """Band-limited resampling of a mono float signal (Hann-windowed sinc).

    ``half_taps`` zero crossings of the (possibly widened) low-pass kernel are
    used on each side of every output sample.
    """
    if rate_in == rate_out:
        return signal
    ratio = rate_out / rate_in
    cutoff = min(1.0, ratio)  # fraction of the input Nyquist frequency kept
    reach = int(np.ceil(half_taps / cutoff))  # kernel half-width in input samples
    n_out = int(len(signal) * ratio)
    padded = np.concatenate([np.zeros(reach), signal.astype(np.float64), np.zeros(reach + 1)])
    offsets = np.arange(-reach + 1, reach + 1)
    out = np.empty(n_out)
    chunk = 4096
    for start in range(0, n_out, chunk):
        t = np.arange(start, min(start + chunk, n_out)) / ratio  # positions in input
        base = np.floor(t).astype(np.int64)
        taps = base[:, None] + offsets[None, :]
        dist = t[:, None] - taps
        window = 0.5 + 0.5 * np.cos(np.pi * np.clip(dist / reach, -1.0, 1.0))
        kernel = cutoff * np.sinc(cutoff * dist) * window
        out[start : start + len(t)] = (padded[taps + reach] * kernel).sum(axis=1)
    return out


def ogg_crc(page: bytes) -> int:
    """CRC-32 used by Ogg pages (poly 0x04C11DB7, MSB first, no reflection)."""
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


def _make_ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_OGG_CRC_TABLE = _make_ogg_crc_table()


def fix_ogg_serial(data: bytes, serial: int = OGG_SERIAL) -> bytes:
    """Replace the (random) Ogg stream serial number and re-checksum each page.

    libsndfile picks a random serial number per file; fixing it makes the
    encoded output reproducible.
    """
    out = bytearray(data)
    pos = 0
    while pos < len(out):
        if out[pos : pos + 4] != b"OggS":
            raise ValueError(f"malformed Ogg stream at byte {pos}")
        n_segments = out[pos + 26]
        body = sum(out[pos + 27 : pos + 27 + n_segments])
        end = pos + 27 + n_segments + body
        out[pos + 14 : pos + 18] = serial.to_bytes(4, "little")
        out[pos + 22 : pos + 26] = b"\0\0\0\0"
        out[pos + 22 : pos + 26] = ogg_crc(bytes(out[pos:end])).to_bytes(4, "little")
        pos = end
    return bytes(out)


def build_audio(ogg: Path, dest: Path, target_rate: int, max_seconds: float) -> str:
    """Write a small mono OGG Vorbis copy of ``ogg`` to ``dest``; return what was done.

    Files that are already mono, at most ``target_rate`` Hz and at most
    ``max_seconds`` long are copied byte for byte (no generational loss);
    others are down-mixed, resampled, truncated and re-encoded.
    """
    info = sf.info(str(ogg))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if info.channels == 1 and info.samplerate <= target_rate and info.duration <= max_seconds:
        shutil.copyfile(ogg, dest)
        return "copied"
    signal, rate = sf.read(str(ogg), dtype="float64", always_2d=True)
    mono = signal.mean(axis=1)
    new_rate = min(rate, target_rate)
    mono = resample(mono, rate, new_rate)
    limit = int(max_seconds * new_rate)
    if len(mono) > limit:
        mono = mono[:limit].copy()
        fade = int(FADE_SECONDS * new_rate)
        mono[-fade:] *= np.linspace(1.0, 0.0, fade)
    mono = np.clip(mono, -1.0, 1.0).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, mono, new_rate, format="OGG", subtype="VORBIS")
    dest.write_bytes(fix_ogg_serial(buffer.getvalue()))
    return "re-encoded"


# --------------------------------------------------------------------------
# Video: generated motion over the real pictures
# --------------------------------------------------------------------------


def place(picture: Image.Image, scale: float, shift: float = 0.0) -> Image.Image:
    """``picture`` on a white square frame, its long side ``scale`` of the frame's, moved
    right by ``shift`` of the frame's width."""
    frame = Image.new("RGB", (VIDEO_SIDE, VIDEO_SIDE), "white")
    factor = scale * VIDEO_SIDE / max(picture.size)
    width, height = (max(1, round(side * factor)) for side in picture.size)
    resized = picture.resize((width, height), Image.LANCZOS)
    frame.paste(
        resized,
        (round((VIDEO_SIDE - width) / 2 + shift * VIDEO_SIDE), round((VIDEO_SIDE - height) / 2)),
    )
    return frame


def motion_frames(picture: Image.Image, motion: str, n: int) -> list[Image.Image]:
    """``n`` frames of one picture under ``motion``: zoom_in, zoom_out, pan_right or pan_left."""
    frames = []
    for t in np.linspace(0.0, 1.0, n):
        if motion == "zoom_in":
            frames.append(place(picture, 0.5 + 0.45 * t))
        elif motion == "zoom_out":
            frames.append(place(picture, 0.95 - 0.45 * t))
        else:
            direction = 1.0 if motion == "pan_right" else -1.0
            frames.append(place(picture, 0.75, direction * (0.3 * t - 0.15)))
    return frames


def sequence_frames(first: Image.Image, second: Image.Image, fade: int = 4) -> list[Image.Image]:
    """``first`` zooming in, a ``fade``-frame cross-fade, then ``second`` zooming out."""
    each = (VIDEO_FRAMES - fade) // 2
    head = motion_frames(first, "zoom_in", each + fade)
    tail = motion_frames(second, "zoom_out", VIDEO_FRAMES - each)
    faded = [Image.blend(head[each + i], tail[i], (i + 1) / (fade + 1)) for i in range(fade)]
    return head[:each] + faded + tail[fade:]


def write_video(frames: list[Image.Image], dest: Path) -> None:
    """Encode ``frames`` as an H.264 MP4 at ``VIDEO_FPS`` (the same bytes on every run)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(dest), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width = stream.height = VIDEO_SIDE
        stream.pix_fmt = "yuv420p"
        stream.options = dict(X264_OPTIONS)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())  # flush the encoder's delayed frames


def then_text(first: str, second: str) -> str:
    """'A brown hen.' and 'The letter P.' -> 'A brown hen, then the letter P.'"""
    article, rest = second.split(" ", 1)
    return f"{first[:-1]}, then {article.lower()} {rest}"


def build_videos(out: Path, image_rows: list[ManifestRow]) -> list[ManifestRow]:
    """Write the synthetic clips from the images already in ``out``; return their rows.

    A clip's group is its (first) stamp's, so a clip of a test stamp is a test clip, and
    no stamp is in two clips.
    """
    shutil.rmtree(out / "video", ignore_errors=True)
    composable = sorted(
        (row for row in image_rows if COMPOSABLE_TEXT.match(row.text)), key=lambda r: r.item_id
    )
    needed = VIDEO_SINGLES + 2 * VIDEO_SEQUENCES
    if len(composable) < needed:
        raise ValueError(f"{len(composable)} stamps have a composable description, {needed} needed")
    rng = np.random.default_rng(VIDEO_SEED)
    chosen = [composable[i] for i in rng.permutation(len(composable))[:needed]]
    motions = rng.choice(["zoom_in", "zoom_out", "pan_right", "pan_left"], VIDEO_SINGLES)

    def picture(row: ManifestRow) -> Image.Image:
        with Image.open(out / row.media_path) as image:
            return image.convert("RGB")

    rows = []
    for row, motion in zip(chosen[:VIDEO_SINGLES], motions, strict=True):
        media = f"video/{row.group}.mp4"
        write_video(motion_frames(picture(row), str(motion), VIDEO_FRAMES), out / media)
        rows.append(
            ManifestRow(f"video:{row.group}", "video", media, row.text, row.category, row.group)
        )
    firsts, seconds = chosen[VIDEO_SINGLES::2], chosen[VIDEO_SINGLES + 1 :: 2]
    for first, second in zip(firsts, seconds, strict=True):
        name = f"{first.group.replace('/', '.')}+{second.group.replace('/', '.')}"
        media = f"video/sequences/{name}.mp4"
        write_video(sequence_frames(picture(first), picture(second)), out / media)
        text = then_text(first.text, second.text)
        rows.append(
            ManifestRow(f"video:sequences/{name}", "video", media, text, "sequences", first.group)
        )
    return rows


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------


def write_manifest(rows: list[ManifestRow], path: Path) -> None:
    """Write ``manifest.csv`` sorted by item_id (UTF-8, ``\\n`` line endings)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for row in sorted(rows, key=lambda r: r.item_id):
            writer.writerow(
                [row.item_id, row.modality, row.media_path, row.text, row.category, row.group]
            )


def write_notice(
    path: Path,
    version: str,
    counts: dict[str, int],
    has_copyright: bool,
    max_side: int,
    target_rate: int,
    max_seconds: float,
) -> None:
    """Write the provenance/licence NOTICE for the generated dataset."""
    copyright_line = (
        "The package's copyright file is reproduced verbatim in COPYRIGHT.\n"
        if has_copyright
        else ""
    )
    path.write_text(
        f"""Tux Paint default stamps dataset
================================

Source: Debian package {PACKAGE}, version {version}
        (the stamp collection of the Tux Paint drawing program), obtained
        with `apt-get download` and unpacked with `dpkg-deb -x`.
Licence: GPL-2 (GNU General Public License, version 2).
{copyright_line}
Contents:
  images/   {counts["image"]} JPEG images, one per described stamp
  audio/    {counts["audio"]} OGG Vorbis sound effects
  video/    {counts["video"]} SYNTHETIC H.264 clips: generated motion over the images above
  manifest.csv  item_id,modality,media_path,text,category,group

Transformation:
  * text: the English description, i.e. the first non-translation line of
    each stamp's <name>.txt (translations and spoken descriptions dropped).
  * images: <name>.png when present, otherwise <name>.svg rendered with
    resvg (system fonts not loaded); transparency composited onto white;
    resized with LANCZOS so that the long side is at most {max_side} px
    (never enlarged; SVGs are rasterised at 2x that size first); saved as
    baseline JPEG, quality {JPEG_OPTIONS["quality"]}.
    Unlabelled variants such as <name>_mirror.png are not included.
  * audio: the stamp sound effect <name>.ogg (not <name>_desc*.ogg nor
    localised <name>_<locale>.ogg). Files already mono, <= {target_rate} Hz and
    <= {max_seconds:g} s are copied unchanged; others are down-mixed to mono,
    resampled to at most {target_rate} Hz (windowed-sinc), truncated to {max_seconds:g} s with a
    {int(FADE_SECONDS * 1000)} ms fade-out, and re-encoded as OGG Vorbis.
  * video: NOT real footage. Each clip is made by this script from the
    images above: {VIDEO_FRAMES / VIDEO_FPS:g} s, {VIDEO_FPS} frames/s, {VIDEO_SIDE}x{VIDEO_SIDE} px on white, H.264 (x264 crf
    {X264_OPTIONS["crf"]}). {VIDEO_SINGLES} clips show one stamp under a slow zoom or pan and take
    that stamp's description as their text; {VIDEO_SEQUENCES} (video/sequences/) show one
    stamp zooming in, a cross-fade, then another zooming out, with the text
    "<first description>, then <second description>" (stamps whose
    description is one short sentence starting with A/An/The/Some; each stamp
    in at most one clip; choice and motion drawn with seed {VIDEO_SEED}). The
    motion is not described in the text. A clip's group is its (first)
    stamp's, so it shares that stamp's train/validation/test split.

Rebuild:
  python scripts/build_default_dataset.py
""",
        encoding="utf-8",
    )


def directory_size(path: Path) -> int:
    """Return the total size in bytes of all files below ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def build(out: Path, deb: Path | None, max_side: int, target_rate: int, max_seconds: float) -> None:
    """Fetch, unpack and convert the stamps package into ``out``."""
    with tempfile.TemporaryDirectory(prefix="tuxpaint-") as tmp:
        workdir = Path(tmp)
        if deb is None:
            deb = download_deb(workdir)
        version = deb_version(deb)
        LOG.info("Package %s version %s (%s)", PACKAGE, version, deb.name)
        root = workdir / "root"
        extract_deb(deb, root)
        stamps = discover_stamps(root / STAMPS_SUBDIR)
        LOG.info("Found %d stamp descriptions", len(stamps))

        for sub in ("images", "audio", "video"):  # start from a clean slate
            shutil.rmtree(out / sub, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)

        rows: list[ManifestRow] = []
        sources = {"png": 0, "svg": 0, "copied": 0, "re-encoded": 0}
        skipped: list[str] = []
        for index, stamp in enumerate(stamps, start=1):
            text = read_description(stamp.txt)
            if text is None:
                skipped.append(f"{stamp.key}: no English description")
                continue
            if stamp.png or stamp.svg:
                media = f"images/{stamp.key}.jpg"
                sources[build_image(stamp, out / media, max_side)] += 1
                rows.append(
                    ManifestRow(
                        f"image:{stamp.key}", "image", media, text, stamp.category, stamp.key
                    )
                )
            else:
                skipped.append(f"{stamp.key}: no .png/.svg image (image item skipped)")
            if stamp.ogg:
                media = f"audio/{stamp.key}.ogg"
                sources[build_audio(stamp.ogg, out / media, target_rate, max_seconds)] += 1
                rows.append(
                    ManifestRow(
                        f"audio:{stamp.key}", "audio", media, text, stamp.category, stamp.key
                    )
                )
            if index % 100 == 0 or index == len(stamps):
                LOG.info("Processed %d/%d stamps (%d items)", index, len(stamps), len(rows))

        video_rows = build_videos(out, [row for row in rows if row.modality == "image"])
        LOG.info("Wrote %d synthetic video clips", len(video_rows))
        rows += video_rows
        write_manifest(rows, out / "manifest.csv")
        copyright_src = root / COPYRIGHT_FILE
        if copyright_src.is_file():
            shutil.copyfile(copyright_src, out / "COPYRIGHT")
        counts = {m: sum(r.modality == m for r in rows) for m in ("image", "audio", "video")}
        write_notice(
            out / "NOTICE",
            version,
            counts,
            copyright_src.is_file(),
            max_side,
            target_rate,
            max_seconds,
        )

    for reason in skipped:
        LOG.warning("Skipped %s", reason)
    total = directory_size(out)
    LOG.info(
        "Images: %d (%d from PNG, %d rendered from SVG)",
        counts["image"],
        sources["png"],
        sources["svg"],
    )
    LOG.info(
        "Audio: %d (%d copied, %d re-encoded)",
        counts["audio"],
        sources["copied"],
        sources["re-encoded"],
    )
    LOG.info("Wrote %s: %d manifest rows, %d bytes (%.2f MB)", out, len(rows), total, total / 1e6)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/01_raw/tuxpaint"),
        help="output directory (default: %(default)s)",
    )
    parser.add_argument(
        "--deb",
        type=Path,
        default=None,
        help=f"use this already-downloaded {PACKAGE} .deb instead of apt-get download",
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=MAX_SIDE,
        help="maximum image long side in pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=TARGET_RATE,
        help="maximum audio sample rate in Hz (default: %(default)s)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=MAX_SECONDS,
        help="maximum audio duration in seconds (default: %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    build(
        args.out,
        args.deb.resolve() if args.deb else None,
        args.max_side,
        args.sample_rate,
        args.max_seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
