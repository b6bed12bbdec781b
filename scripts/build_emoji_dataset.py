#!/usr/bin/env python3
"""Build the shipped emoji image/text dataset from the EmojiOne art in ``ruby-gemojione``.

The Debian package ``ruby-gemojione`` contains the EmojiOne 2.x emoji set as
64 px PNGs (and SVGs), plus an index (``config/index.json``) with each emoji's
Unicode name, category, keywords and aliases.  This script turns it into a
second small, deterministic dataset next to the Tux Paint one:

* ``images/<category>/<shortname>.png`` -- every emoji picture except the
  skin-tone variants, flattened onto a white background, 64 px on the long
  side (LANCZOS-resized only if the package's PNG is another size), saved as a
  losslessly optimised PNG (palette PNG when the picture has at most 256
  colours, RGB otherwise);
* ``manifest.csv`` -- one row per picture:
  ``item_id,modality,media_path,text,category,group,keywords``, where ``text``
  is the emoji's Unicode name written as a sentence ("Grinning face.") and
  ``keywords`` (metadata, not queries) are the package's keywords and aliases;
* ``NOTICE`` and ``COPYRIGHT`` -- provenance and licence (the art is
  CC-BY-SA-4.0 per the package's copyright file).

Skin-tone variants (a modifier U+1F3FB..U+1F3FF in the code point sequence,
including the five bare modifier swatches) are dropped; the base emoji is
kept.  Entries without a picture or without a name are dropped too.

The package is fetched with ``apt-get download`` (nothing is installed) and
unpacked with ``dpkg-deb -x``.  Running the script twice on the same package
version produces byte-identical output.

Usage::

    python scripts/build_emoji_dataset.py [--out data/01_raw/emoji]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

LOG = logging.getLogger("build_emoji_dataset")

PACKAGE = "ruby-gemojione"
GEMS_SUBDIR = Path("usr/share/rubygems-integration/all/gems")
INDEX_FILE = Path("config/index.json")  # relative to the gem's directory
PNG_SUBDIR = Path("assets/png")  # <UNICODE>.png, e.g. 1F600.png
COPYRIGHT_FILE = Path("usr/share/doc") / PACKAGE / "copyright"
UPSTREAM = "gemojione, https://github.com/jonathanwiesel/gemojione; art: EmojiOne 2.x"

SIDE = 64  # long side of output images, in pixels
# fixed encoder settings: the same pixels give the same bytes on every run
PNG_OPTIONS = {"optimize": True, "compress_level": 9}

# Fitzpatrick skin-tone modifiers: an emoji containing one is a variant of its base emoji
SKIN_TONE_MODIFIERS = frozenset({"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"})
# the package's Unicode names are cut at this many characters ("... open circle ar")
NAME_LIMIT = 50
# code points that only select a presentation or join others, not part of the name
PRESENTATION = frozenset({"FE0E", "FE0F", "200D"})

# why an index entry gets no manifest row (see why_dropped), in the order they are checked
DROP_REASONS = ("skin-tone variant", "no name", "no category", "no picture")

# `group` is the item itself, except that pixel-identical pictures (e.g. the flags of
# Norway, Svalbard and Bouvet Island) share one group and so one split.
MANIFEST_COLUMNS = ["item_id", "modality", "media_path", "text", "category", "group", "keywords"]


@dataclass(frozen=True)
class Emoji:
    """One entry of the package's ``index.json``."""

    shortname: str  # e.g. "grinning"
    unicode: str  # e.g. "1F600", "1F468-1F469-1F466"
    name: str  # Unicode name as the package gives it, e.g. "grinning face"
    category: str  # e.g. "people"
    keywords: tuple[str, ...]  # keywords, then aliases (without colons)
    png: Path | None

    @property
    def key(self) -> str:
        """Return the ``<category>/<shortname>`` path that identifies the emoji."""
        return f"{self.category}/{self.shortname}"


@dataclass(frozen=True)
class ManifestRow:
    """One row of ``manifest.csv``."""

    item_id: str
    modality: str
    media_path: str
    text: str
    category: str
    group: str
    keywords: str


# --------------------------------------------------------------------------
# Fetching and unpacking the Debian package
# --------------------------------------------------------------------------


def download_deb(workdir: Path) -> Path:
    """Download the ``.deb`` into ``workdir`` with ``apt-get download``.

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


def find_gem(root: Path) -> Path:
    """Return the unpacked gem's directory (``.../gems/gemojione-<version>``)."""
    gems = sorted(p for p in (root / GEMS_SUBDIR).glob("gemojione-*") if p.is_dir())
    if len(gems) != 1:
        raise RuntimeError(f"expected exactly one gemojione gem below {root}, found {gems}")
    return gems[0]


# --------------------------------------------------------------------------
# Reading the index
# --------------------------------------------------------------------------


def keyword_list(entry: dict) -> tuple[str, ...]:
    """The entry's keywords then aliases: HTML entities decoded, colons and duplicates gone.

    ``aliases_ascii`` (smileys such as ``;-)``) are left out: they are not words, and
    some contain the ``;`` that separates keywords in the manifest.
    """
    words = [*entry.get("keywords", []), *(a.strip(":") for a in entry.get("aliases", []))]
    out: list[str] = []
    for word in words:
        word = " ".join(html.unescape(word).replace(";", ",").split())
        if word and word not in out:
            out.append(word)
    return tuple(out)


def read_index(gem: Path) -> list[Emoji]:
    """Read ``config/index.json``; return one :class:`Emoji` per entry, sorted by shortname."""
    index = json.loads((gem / INDEX_FILE).read_text(encoding="utf-8"))
    emoji = []
    for shortname, entry in sorted(index.items()):
        png = gem / PNG_SUBDIR / f"{entry.get('unicode', '')}.png"
        emoji.append(
            Emoji(
                shortname=shortname,
                unicode=entry.get("unicode", "").upper(),
                name=(entry.get("name") or "").strip(),
                category=(entry.get("category") or "").strip(),
                keywords=keyword_list(entry),
                png=png if entry.get("unicode") and png.is_file() else None,
            )
        )
    return emoji


def is_skin_tone_variant(emoji: Emoji) -> bool:
    """Whether the emoji is (or contains) a Fitzpatrick skin-tone modifier."""
    return bool(SKIN_TONE_MODIFIERS & set(emoji.unicode.split("-")))


def why_dropped(emoji: Emoji) -> str | None:
    """The reason an index entry gets no manifest row, or ``None`` if it gets one."""
    if is_skin_tone_variant(emoji):
        return "skin-tone variant"
    if not emoji.name:
        return "no name"
    if not emoji.category:
        return "no category"
    if emoji.png is None:
        return "no picture"
    return None


# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------


def full_unicode_name(emoji: Emoji) -> str:
    """The package's name, completed from Python's Unicode database where it was cut short.

    The package truncates names at 50 characters ("clockwise rightwards and leftwards
    open circle arr"); for a single code point whose full name starts with the cut one,
    the full name is used.  (Unicode character names never change, so this is stable.)
    """
    name = html.unescape(emoji.name)
    points = [p for p in emoji.unicode.split("-") if p not in PRESENTATION]
    if len(name) >= NAME_LIMIT and len(points) == 1:
        full = unicodedata.name(chr(int(points[0], 16)), "").lower()
        if len(full) > len(name) and full.startswith(name.lower()):
            return full
    return name


def describe(emoji: Emoji) -> str:
    """The emoji's Unicode name written as a sentence: "grinning face" -> "Grinning face."

    Flags, which the package names by their country or region only ("aruba"), become
    "Flag of aruba."; underscores become spaces and a comma is followed by a space.
    """
    name = full_unicode_name(emoji).replace("_", " ").lower()
    name = re.sub(r",(?=\S)", ", ", " ".join(name.split())).rstrip(".")
    if emoji.category == "flags" and "flag" not in name:
        name = f"flag of {name}"
    return f"{name[0].upper()}{name[1:]}."


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def flatten_on_white(image: Image.Image) -> Image.Image:
    """Composite any transparency onto an opaque white background (RGB out).

    The same as ``cart_pipeline.core.media.load_image_rgb`` does on loading.
    """
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def fit(image: Image.Image, side: int) -> Image.Image:
    """Resize so the long side is exactly ``side`` (aspect kept, LANCZOS); no-op if it is."""
    long_side = max(image.size)
    if long_side == side:
        return image
    scale = side / long_side
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def compact(image: Image.Image) -> Image.Image:
    """A lossless palette copy of an RGB image with at most 256 colours; else the image.

    The palette is the image's colours in sorted order, so it does not depend on how
    Pillow happens to quantise.
    """
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    palette, indices = np.unique(pixels, axis=0, return_inverse=True)
    if len(palette) > 256:
        return image
    indexed = Image.fromarray(indices.reshape(image.height, image.width).astype(np.uint8), "P")
    indexed.putpalette(palette.astype(np.uint8).tobytes())
    return indexed


def build_image(emoji: Emoji, dest: Path, side: int) -> str:
    """Write the emoji's picture to ``dest`` as PNG; return a hash of its RGB pixels."""
    if emoji.png is None:
        raise ValueError(f"{emoji.key} has no picture")
    with Image.open(emoji.png) as src:
        src.load()
        image = fit(flatten_on_white(src), side)
    dest.parent.mkdir(parents=True, exist_ok=True)
    compact(image).save(dest, "PNG", **PNG_OPTIONS)
    pixels = hashlib.sha256(f"{image.size}".encode() + image.tobytes())
    return pixels.hexdigest()


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
                [
                    row.item_id,
                    row.modality,
                    row.media_path,
                    row.text,
                    row.category,
                    row.group,
                    row.keywords,
                ]
            )


def write_notice(
    path: Path,
    version: str,
    n_entries: int,
    n_images: int,
    dropped: Counter[str],
    n_completed: int,
    n_shared: int,
    has_copyright: bool,
    side: int,
) -> None:
    """Write the provenance/licence NOTICE for the generated dataset."""
    copyright_line = (
        "The package's copyright file is reproduced verbatim in COPYRIGHT.\n"
        if has_copyright
        else ""
    )
    drops = "\n".join(f"  {dropped[reason]:5d}  {reason}" for reason in DROP_REASONS)
    path.write_text(
        f"""EmojiOne emoji dataset
======================

Source: Debian package {PACKAGE}, version {version}
        (upstream {UPSTREAM}),
        obtained with `apt-get download` and unpacked with `dpkg-deb -x`.
Licence: the emoji art (the package's assets/*, "Copyright: 2014, Ranks.com
        Inc.") is licensed CC-BY-SA-4.0 (Creative Commons
        Attribution-ShareAlike 4.0 International) per the package's copyright
        file; the index metadata (Files: *) is Expat (MIT). The pictures here
        are modified (see Transformation) and are shared under CC-BY-SA-4.0.
{copyright_line}
Contents:
  images/   {n_images} PNG images, one per emoji (of {n_entries} index entries)
  manifest.csv  item_id,modality,media_path,text,category,group,keywords

Dropped index entries:
{drops}

Transformation:
  * pictures: assets/png/<UNICODE>.png (64x64 in this version);
    transparency composited onto white; resized with LANCZOS to {side} px on
    the long side only where the source is another size; saved as PNG
    (lossless: palette PNG with a sorted palette when the picture has at most
    256 colours, RGB otherwise; zlib level 9, optimize).
  * skin-tone variants (a modifier U+1F3FB..U+1F3FF in the code point
    sequence, and the five bare modifiers) are dropped; the base emoji is kept.
  * text: the emoji's Unicode name from config/index.json written as a
    sentence: lower-cased, first letter capitalised, a final period
    ("grinning face" -> "Grinning face."). {n_completed} names the package cuts at
    {NAME_LIMIT} characters are completed from the Unicode character database;
    underscores become spaces; "a,b" becomes "a, b"; flags, which the package
    names by country or region only, become "Flag of <name>.".
  * item_id: emoji:<shortname>; category: the package's category.
  * group: the item_id, except that pixel-identical pictures ({n_shared} items)
    share the group of the first of them, so that they fall in one split.
  * keywords: the package's keywords then aliases (HTML entities decoded,
    duplicates dropped), joined with ";". Metadata only: not queries.

Rebuild:
  python scripts/build_emoji_dataset.py
""",
        encoding="utf-8",
    )


def directory_size(path: Path) -> int:
    """Return the total size in bytes of all files below ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def build(out: Path, deb: Path | None, side: int) -> None:
    """Fetch, unpack and convert the emoji package into ``out``."""
    with tempfile.TemporaryDirectory(prefix="gemojione-") as tmp:
        workdir = Path(tmp)
        if deb is None:
            deb = download_deb(workdir)
        version = deb_version(deb)
        LOG.info("Package %s version %s (%s)", PACKAGE, version, deb.name)
        root = workdir / "root"
        extract_deb(deb, root)
        entries = read_index(find_gem(root))
        LOG.info("Found %d index entries", len(entries))

        shutil.rmtree(out / "images", ignore_errors=True)  # start from a clean slate
        out.mkdir(parents=True, exist_ok=True)

        dropped: Counter[str] = Counter(dict.fromkeys(DROP_REASONS, 0))
        rows: list[ManifestRow] = []
        first_with_pixels: dict[str, str] = {}
        n_completed = 0
        for index, emoji in enumerate(entries, start=1):
            reason = why_dropped(emoji)
            if reason is not None:
                dropped[reason] += 1
                LOG.debug("Dropped %s (%s): %s", emoji.key, emoji.unicode, reason)
                continue
            media = f"images/{emoji.key}.png"
            pixels = build_image(emoji, out / media, side)
            item_id = f"emoji:{emoji.shortname}"
            group = first_with_pixels.setdefault(pixels, item_id)  # entries are sorted
            n_completed += full_unicode_name(emoji) != html.unescape(emoji.name)
            rows.append(
                ManifestRow(
                    item_id,
                    "image",
                    media,
                    describe(emoji),
                    emoji.category,
                    group,
                    ";".join(emoji.keywords),
                )
            )
            if index % 200 == 0 or index == len(entries):
                LOG.info("Processed %d/%d entries (%d images)", index, len(entries), len(rows))

        if len({row.item_id for row in rows}) != len(rows):
            raise RuntimeError("duplicate item_id in the manifest")
        write_manifest(rows, out / "manifest.csv")
        copyright_src = root / COPYRIGHT_FILE
        if copyright_src.is_file():
            shutil.copyfile(copyright_src, out / "COPYRIGHT")
        group_sizes = Counter(row.group for row in rows)
        n_shared = sum(group_sizes[row.group] > 1 for row in rows)
        write_notice(
            out / "NOTICE",
            version,
            len(entries),
            len(rows),
            dropped,
            n_completed,
            n_shared,
            copyright_src.is_file(),
            side,
        )

    for reason in DROP_REASONS:
        LOG.info("Dropped %d entries: %s", dropped[reason], reason)
    LOG.info("Completed %d truncated names; %d items share a group", n_completed, n_shared)
    total = directory_size(out)
    LOG.info("Wrote %s: %d manifest rows, %d bytes (%.2f MB)", out, len(rows), total, total / 1e6)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/01_raw/emoji"),
        help="output directory (default: %(default)s)",
    )
    parser.add_argument(
        "--deb",
        type=Path,
        default=None,
        help=f"use this already-downloaded {PACKAGE} .deb instead of apt-get download",
    )
    parser.add_argument(
        "--side",
        type=int,
        default=SIDE,
        help="image long side in pixels (default: %(default)s)",
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
    build(args.out, args.deb.resolve() if args.deb else None, args.side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
