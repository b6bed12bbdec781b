"""The held-out guard (validation and test), knn_transfer's train-only reading, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cart_pipeline.core.captioners import CaptionContext, knn_transfer
from cart_pipeline.core.pairs import LeakageError, assert_no_heldout_leak, training_pairs
from cart_pipeline.core.tables import features_frame
from cart_pipeline.pipelines.captioning.nodes import generate_pseudo_queries


@pytest.fixture
def corpus():
    """Seven items on a line; the test item t1 sits next to a train item with its exact text,
    and so does the validation item v1."""
    ids = ["a", "b", "c", "d", "t1", "t2", "v1"]
    split = ["train"] * 4 + ["test"] * 2 + ["validation"]
    angles = np.array([0.0, 0.1, 1.0, 1.1, 0.05, 1.05, 1.04])
    features = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    candidates = pd.DataFrame(
        {"item_id": ids, "modality": "image", "media_path": "x.jpg", "split": split}
    )
    texts = [
        "A brown hen.",
        "A red hen.",
        "A blue car.",
        "A green car.",
        "a brown HEN",
        "A yellow car.",
        "a GREEN car!",
    ]
    queries = pd.DataFrame(
        {
            "query_id": [f"q:{i}" for i in ids],
            "item_id": ids,
            "text": texts,
            "split": split,
            "source": "human",
        }
    )
    return candidates, queries, features_frame(ids, features, encoder="test")


def run(corpus, policy: str):
    candidates, queries, features = corpus
    params = {
        "captioners": {"image": [{"name": "knn_transfer", "n": 1}]},
        "heldout_query_matches": policy,
        "spare_captions": 1,
    }
    return generate_pseudo_queries(
        candidates, queries, features, params, {"name": "all-MiniLM-L6-v2"}, "image", ".", 0
    )


def test_a_caption_equal_to_its_items_heldout_query_is_dropped_and_replaced(corpus):
    pseudo, report = run(corpus, "drop")
    # t1's nearest train text is its own test query, v1's its own validation query
    assert report["heldout_guard"]["pseudo_queries_equal_to_their_items_heldout_query_dropped"] == 2
    assert pseudo[pseudo.item_id == "t1"].text.tolist() == ["A red hen."], "the spare replaces it"
    assert pseudo[pseudo.item_id == "v1"].text.tolist() == ["A blue car."]
    assert report["coverage"] == 1.0


def test_policy_fail_stops_the_run(corpus):
    with pytest.raises(LeakageError, match="equal their item's held-out"):
        run(corpus, "fail")


def test_validation_queries_are_never_captioner_input_nor_training_pairs(corpus):
    candidates, queries, _ = corpus
    validation = queries[queries.split == "validation"]
    with pytest.raises(ValueError, match="only read human queries of train items"):
        CaptionContext(
            candidates,
            np.zeros((7, 2), np.float32),
            pd.concat([queries[queries.split == "train"], validation])[
                ["item_id", "text", "split"]
            ],
        )
    pseudo, _ = run(corpus, "drop")
    pairs = training_pairs(queries, pseudo)
    trained = pairs[~pairs.is_validation]
    assert not trained.query_id.isin(validation.query_id).any()
    assert pairs[pairs.is_validation].query_id.tolist() == validation.query_id.tolist()
    # a validation text planted as a pseudo-query of its own item is refused
    planted = pd.DataFrame(
        {
            "query_id": ["pq:v1"],
            "item_id": ["v1"],
            "text": ["A green car"],
            "source": ["pseudo:planted"],
        }
    )
    with pytest.raises(LeakageError, match="held-out"):
        training_pairs(queries, planted)


def test_captioning_is_deterministic(corpus):
    first, _ = run(corpus, "drop")
    again, _ = run(corpus, "drop")
    pd.testing.assert_frame_equal(first, again)


def test_knn_transfer_cannot_be_given_test_queries(corpus):
    candidates, queries, features = corpus
    with pytest.raises(ValueError, match="only read human queries of train items"):
        CaptionContext(
            candidates, np.zeros((7, 2), np.float32), queries[["item_id", "text", "split"]]
        )
    context = CaptionContext(
        candidates,
        np.eye(7, 2, dtype=np.float32),
        queries[queries.split == "train"][["item_id", "text", "split"]],
    )
    frame, _ = knn_transfer(context, n=2)
    assert set(frame.text) <= set(queries[queries.split == "train"].text)


def test_a_planted_leak_in_the_training_pairs_fails(corpus):
    _, queries, _ = corpus
    planted = pd.DataFrame(
        {
            "query_id": ["pq:t2"],
            "item_id": ["t2"],
            "text": ["a yellow car"],
            "source": ["pseudo:planted"],
        }
    )
    with pytest.raises(LeakageError):
        training_pairs(queries, planted)
    assert_no_heldout_leak(planted.assign(item_id="a"), queries)  # same text, other item: fine


def test_described_items_keep_at_most_their_best_pseudo_queries(corpus):
    _, queries, _ = corpus
    pseudo = pd.DataFrame(
        {
            "query_id": [f"pq:{i}:x:{r}" for i in ("a", "t1") for r in range(3)],
            "item_id": ["a"] * 3 + ["t1"] * 3,
            "text": ["one", "two", "three"] * 2,
            "source": "pseudo:x",
        }
    )
    pairs = training_pairs(queries, pseudo, pseudo_per_described_item=1)
    kept = pairs[pairs.source == "pseudo:x"]
    # `a` has a human train query: only its best caption stays; the test item keeps all three
    assert kept[kept.item_id == "a"].text.tolist() == ["one"]
    assert kept[kept.item_id == "t1"].text.tolist() == ["one", "two", "three"]
    none = training_pairs(queries, pseudo, pseudo_per_described_item=0)
    assert (
        not none.query_id.str.startswith("pq:a:").any()
        and none.query_id.str.startswith("pq:t1:").sum() == 3
    )


def test_imagenet_labels_name_the_garbage_truck(default_manifest):
    """The shipped garbage-truck stamp: the classifier's top class (569) becomes its caption."""
    from cart_pipeline.core.captioners import imagenet_labels
    from cart_pipeline.core.encoders.image import imagenet_class_names

    assert imagenet_class_names()[569].startswith("garbage truck")
    truck = default_manifest[default_manifest.item_id == "image:vehicles/garbagetruck"].assign(
        split="train"
    )
    context = CaptionContext(
        truck,
        np.ones((1, 2), np.float32),
        truck.iloc[:0].assign(split=[]),
        class_top=np.array([[569, 407, 675]]),
        class_prob=np.array([[0.78, 0.04, 0.03]]),
    )
    captions, problems = imagenet_labels(context, n=3)
    assert not problems
    assert captions.text.iloc[0] == "a picture of a garbage truck"
    assert "a garbage truck or an ambulance" in captions.text.tolist()


def test_dual_tower_retrieval_captions_from_train_texts_and_class_names_only(corpus):
    from cart_pipeline.core.captioners import dual_tower_retrieval
    from cart_pipeline.core.captioners.dual_tower_retrieval import imagenet_descriptions
    from cart_pipeline.pipelines.encoders import load_encoder

    candidates, queries, features = corpus
    train = queries[queries.split == "train"][["item_id", "text", "split"]]
    matrix = np.stack(features.embedding.to_numpy()).astype(np.float32)
    context = CaptionContext(
        candidates, matrix, train, text_encoder=load_encoder({"name": "all-MiniLM-L6-v2"}), seed=0
    )
    frame, problems = dual_tower_retrieval(context, n=2, epochs=40)
    assert not problems and frame.groupby("item_id").size().eq(2).all() and len(frame) == 14
    pool = set(train.text) | set(imagenet_descriptions())
    assert set(frame.text) <= pool, "only train texts and class names"
    assert not frame.text.isin(queries.text[queries.split != "train"]).any()
    assert "A garbage truck." in imagenet_descriptions()
    again, _ = dual_tower_retrieval(context, n=2, epochs=40)
    pd.testing.assert_frame_equal(frame, again)
    # learned from the train pairs: from train texts alone, the items on the hen side of the
    # line get hen texts, those on the car side car texts
    own, _ = dual_tower_retrieval(context, n=1, pool=["train_texts"], epochs=40)
    side = own.set_index("item_id").text
    assert all(side[i].endswith("hen.") for i in ("a", "b", "t1"))
    assert all(side[i].endswith("car.") for i in ("c", "d", "t2", "v1"))
    with pytest.raises(ValueError, match="needs the text encoder"):
        dual_tower_retrieval(CaptionContext(candidates, matrix, train), n=2)
