"""The evaluation report page, rendered from a tiny metrics dict and real shipped Tux Paint items."""

from __future__ import annotations

import base64
import re
import shutil

import pandas as pd
import pytest

from cart_pipeline.reporting.html import render_report

IMAGE_ITEMS = [
    "image:animals/amphibians/frog",
    "image:animals/amphibians/frog-1",
    "image:animals/birds/adelaide-rosella",
]
AUDIO_ITEMS = [
    "audio:animals/amphibians/frog",
    "audio:animals/birds/blackbird",
    "audio:animals/birds/crow",
]

# 1x1 PNG, enough to check a plot is embedded verbatim
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _system_metrics(r1: float, median: float, qps: float, corpus_size: int | None = 950) -> dict:
    values = {
        "R@1": r1,
        "R@5": min(1.0, r1 + 0.2),
        "R@10": min(1.0, r1 + 0.3),
        "MRR@10": r1 + 0.05,
        "median_rank": median,
        "n_queries": 42,
        "qps_search": qps,
        "qps_with_encoding": qps / 2,
    }
    if corpus_size is not None:
        values["corpus_size"] = corpus_size
    return values


@pytest.fixture
def items(default_manifest) -> pd.DataFrame:
    chosen = default_manifest[default_manifest.item_id.isin(IMAGE_ITEMS + AUDIO_ITEMS)]
    if len(chosen) != len(IMAGE_ITEMS + AUDIO_ITEMS):
        pytest.skip("the shipped manifest lacks the items this test uses")
    return chosen[["item_id", "modality", "media_path", "text"]].reset_index(drop=True)


@pytest.fixture
def metrics() -> dict:
    return {
        "systems": ["cart", "dual_tower"],
        "by_modality": {
            "image": {
                "cart": _system_metrics(0.612, 1.0, 812.5),
                "dual_tower": _system_metrics(0.543, 2.0, 1534.0),
            },
            "audio": {
                "cart": _system_metrics(0.25, 4.5, 700.0, corpus_size=135),
                "dual_tower": _system_metrics(0.3125, 3.0, 900.0, corpus_size=135),
            },
        },
        "overall": {
            "cart": _system_metrics(0.5, 2.0, 800.0, corpus_size=None),
            "dual_tower": _system_metrics(0.5, 2.5, 1200.0, corpus_size=None),
        },
        "config": {
            "id_variant": "cart",
            "fusion": True,
            "consistency_weight": 1.0,
            "learning_rate": 0.0003,
            "seed": 2025,
            "beam_size": 20,
        },
        "identifiers": {
            "image": {"collision_rate": 0.0421, "max_collision_group": 3, "id_length": 5},
            "audio": {"collision_rate": 0.0, "max_collision_group": 1, "id_length": 5},
        },
        "notes": ["trained on <script>alert('note')</script> pairs"],
    }


@pytest.fixture
def examples() -> list[dict]:
    return [
        {
            "query_id": "q-image-1",
            "text": "A frog <script>alert('x')</script> & friends",
            "modality": "image",
            "relevant_item_id": IMAGE_ITEMS[0],
            "results": {
                "cart": [
                    {"item_id": IMAGE_ITEMS[0], "score": -0.125},
                    {"item_id": IMAGE_ITEMS[1], "score": -1.5},
                ],
                "dual_tower": [
                    {"item_id": IMAGE_ITEMS[2], "score": 0.9},
                    {"item_id": IMAGE_ITEMS[1], "score": 0.8},
                    {"item_id": IMAGE_ITEMS[0], "score": 0.7},
                ],
            },
        },
        {
            "query_id": "q-audio-1",
            "text": "A crow cawing.",
            "modality": "audio",
            "relevant_item_id": AUDIO_ITEMS[2],
            "results": {
                "cart": [{"item_id": AUDIO_ITEMS[0], "score": -0.3}],
                "dual_tower": [
                    {"item_id": AUDIO_ITEMS[1], "score": 0.6},
                    {"item_id": AUDIO_ITEMS[2], "score": 0.5},
                ],
            },
        },
    ]


def _render(metrics, examples, items, root, plots=None) -> str:
    return render_report(metrics, examples, items, root, plots or {"Recall by system": TINY_PNG})


def test_report_shows_metrics_media_and_markers(metrics, examples, items, default_dataset):
    page = _render(metrics, examples, items, default_dataset)

    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page  # self-contained
    # metrics table: percentages, ranks, counts, throughput; best per modality in bold
    for value in ("61.2", "54.3", "31.2", "1,534", "812.5", "4.5", "950", "135", "42"):
        assert f">{value}<" in page or f"<b>{value}</b>" in page, value
    assert "<b>61.2</b>" in page  # image R@1: cart wins
    assert "<b>31.2</b>" in page  # audio R@1: dual tower wins
    assert "<b>1,534</b>" in page  # image search throughput: dual tower wins
    assert "<b>1</b>" in page  # image median rank: lower wins
    assert "<b>25.0</b>" not in page
    # overall rows have no corpus size
    assert re.search(r">overall</th>.*?–", page, re.S)
    # config, identifier statistics, notes
    assert "beam_size" in page and "2025" in page and "0.0421" in page
    assert "<td>1.0</td>" in page and "<td>0.0003</td>" in page  # config values as written
    assert "max_collision_group" in page
    # plot embedded verbatim with its caption
    assert base64.b64encode(TINY_PNG).decode() in page
    assert "<figcaption>Recall by system</figcaption>" in page
    # thumbnails and audio are embedded
    assert page.count("data:image/jpeg;base64,") >= 3
    assert re.search(r'<audio controls[^>]*src="data:audio/ogg;base64,[A-Za-z0-9+/=]{100,}', page)
    # relevant item marked; its rank per system, or a miss
    assert "✓ relevant" in page and 'class="result relevant"' in page
    assert "relevant at rank 1" in page and "relevant at rank 3" in page
    assert "relevant at rank 2" in page and "not in top-5" in page
    # item descriptions come from the items table
    assert "An Adelaide Rosella." in page and "A crow." in page


def test_report_escapes_user_text(metrics, examples, items, default_dataset):
    page = _render(metrics, examples, items, default_dataset)

    assert "<script" not in page
    assert "A frog &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; friends" in page
    assert "&lt;script&gt;alert(&#x27;note&#x27;)" in page


def test_each_item_is_encoded_once(metrics, examples, items, default_dataset):
    page = _render(metrics, examples, items, default_dataset)

    # frog-1 appears in both systems' results of the image query: one encoding, shown twice
    thumbnails = re.findall(r'src="(data:image/jpeg;base64,[^"]+)"', page)
    assert len(thumbnails) > len(set(thumbnails))


def test_missing_or_corrupt_media_gives_placeholders(metrics, examples, items, tmp_path):
    root = tmp_path / "dataset"
    for media_path in items.media_path:
        (root / media_path).parent.mkdir(parents=True, exist_ok=True)
    # one corrupt image; everything else missing
    (root / items.set_index("item_id").media_path[IMAGE_ITEMS[0]]).write_bytes(b"not a jpeg")
    unknown = {**examples[0], "relevant_item_id": "image:not/in/items"}
    video = {
        "query_id": "q-video",
        "text": "A clip.",
        "modality": "video",
        "relevant_item_id": "video:clip",
        "results": {"cart": [{"item_id": "video:clip", "score": float("nan")}], "dual_tower": []},
    }
    clip = {
        "item_id": "video:clip",
        "modality": "video",
        "media_path": "clip.mp4",
        "text": "A clip.",
    }
    with_video = pd.concat([items, pd.DataFrame([clip])])

    page = _render(metrics, [*examples, unknown, video], with_video, root, plots={"empty": b""})

    assert "data:image/jpeg" not in page and "<audio" not in page and "<video" not in page
    assert "image unavailable" in page and "audio unavailable" in page
    assert "unknown item" in page and "video unavailable" in page
    assert "plot unavailable" in page and "no results" in page


def test_a_video_result_embeds_its_clip(metrics, default_manifest, default_dataset):
    clips = default_manifest[default_manifest.modality == "video"].iloc[:2]
    if len(clips) < 2:
        pytest.skip("the shipped manifest has no video")
    first, second = clips.item_id
    example = {
        "query_id": "q-video",
        "text": clips.text.iloc[0],
        "modality": "video",
        "relevant_item_id": first,
        "results": {
            "cart": [{"item_id": second, "score": -0.2}, {"item_id": first, "score": -0.4}]
        },
    }
    items = clips[["item_id", "modality", "media_path", "text"]]

    page = _render(metrics, [example], items, default_dataset)

    clip = (default_dataset / clips.media_path.iloc[0]).read_bytes()
    assert f'src="data:video/mp4;base64,{base64.b64encode(clip).decode()}"' in page
    # the relevant clip beside the query, then both results
    assert page.count("<video") == 3 and "relevant at rank 2" in page


def test_empty_inputs_still_render(tmp_path):
    page = render_report({}, [], pd.DataFrame(), tmp_path, {}, title="<b>empty</b>")

    assert "<title>&lt;b&gt;empty&lt;/b&gt;</title>" in page
    assert "no metrics" in page


def test_page_references_nothing_outside_itself(metrics, examples, items, default_dataset):
    page = _render(metrics, examples, items, default_dataset)
    assert not re.search(r'(src|href)="(?!data:|#)', page)


def test_media_outside_the_dataset_folder_is_never_embedded(
    metrics, examples, items, default_dataset, tmp_path
):
    root = tmp_path / "dataset"
    root.mkdir()
    outside = items.assign(media_path=[f"../{p}" for p in items.media_path])  # exists, one level up
    for media_path in items.media_path:
        (tmp_path / media_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(default_dataset / media_path, tmp_path / media_path)

    assert "data:image/jpeg" in _render(metrics, examples, items, tmp_path), (
        "the same files, inside the root, embed"
    )
    page = _render(metrics, examples, outside, root)

    assert "data:image/jpeg" not in page and "<audio" not in page
    assert "no image file" in page
