"""The captioning leakage guard, knn_transfer's train-only reading, and determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cart_pipeline.core.captioners import CaptionContext, knn_transfer
from cart_pipeline.core.pairs import LeakageError, assert_no_test_leak, training_pairs
from cart_pipeline.core.tables import features_frame
from cart_pipeline.pipelines.captioning.nodes import generate_pseudo_queries


@pytest.fixture
def corpus():
    """Six items on a line; the test item t1 sits next to a train item with its exact text."""
    ids = ["a", "b", "c", "d", "t1", "t2"]
    split = ["train"] * 4 + ["test"] * 2
    angles = np.array([0.0, 0.1, 1.0, 1.1, 0.05, 1.05])
    features = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    candidates = pd.DataFrame({"item_id": ids, "modality": "image", "media_path": "x.jpg", "split": split})
    texts = ["A brown hen.", "A red hen.", "A blue car.", "A green car.", "a brown HEN", "A yellow car."]
    queries = pd.DataFrame({"query_id": [f"q:{i}" for i in ids], "item_id": ids, "text": texts, "split": split, "source": "human"})
    return candidates, queries, features_frame(ids, features, encoder="test")


def run(corpus, policy: str):
    candidates, queries, features = corpus
    params = {"captioners": {"image": [{"name": "knn_transfer", "n": 1}]}, "test_query_matches": policy, "spare_captions": 1}
    return generate_pseudo_queries(candidates, queries, features, params, "image", ".")


def test_a_caption_equal_to_its_items_test_query_is_dropped_and_replaced(corpus):
    pseudo, report = run(corpus, "drop")
    assert report["leakage_guard"]["pseudo_queries_equal_to_their_items_test_query_dropped"] == 1
    t1 = pseudo[pseudo.item_id == "t1"].text.tolist()
    assert t1 == ["A red hen."], "the spare (second-nearest) caption replaces the dropped one"
    assert report["coverage"] == 1.0


def test_policy_fail_stops_the_run(corpus):
    with pytest.raises(LeakageError, match="equal their item's test query"):
        run(corpus, "fail")


def test_captioning_is_deterministic(corpus):
    first, _ = run(corpus, "drop")
    again, _ = run(corpus, "drop")
    pd.testing.assert_frame_equal(first, again)


def test_knn_transfer_cannot_be_given_test_queries(corpus):
    candidates, queries, features = corpus
    with pytest.raises(ValueError, match="only read human queries of train items"):
        CaptionContext(candidates, np.zeros((6, 2), np.float32), queries[["item_id", "text", "split"]])
    context = CaptionContext(candidates, np.eye(6, 2, dtype=np.float32), queries[queries.split == "train"][["item_id", "text", "split"]])
    frame, _ = knn_transfer(context, n=2)
    assert set(frame.text) <= set(queries[queries.split == "train"].text)


def test_a_planted_leak_in_the_training_pairs_fails(corpus):
    _, queries, _ = corpus
    planted = pd.DataFrame({"query_id": ["pq:t2"], "item_id": ["t2"], "text": ["a yellow car"], "source": ["pseudo:planted"]})
    with pytest.raises(LeakageError):
        training_pairs(queries, planted, validation_fraction=0.0, seed=0)
    assert_no_test_leak(planted.assign(item_id="a"), queries)  # same text, other item: fine


def test_imagenet_labels_name_the_garbage_truck(default_manifest):
    """The shipped garbage-truck stamp: the classifier's top class (569) becomes its caption."""
    from cart_pipeline.core.captioners import imagenet_labels
    from cart_pipeline.core.encoders.image import imagenet_class_names

    assert imagenet_class_names()[569].startswith("garbage truck")
    truck = default_manifest[default_manifest.item_id == "image:vehicles/garbagetruck"].assign(split="train")
    context = CaptionContext(truck, np.ones((1, 2), np.float32), truck.iloc[:0].assign(split=[]), class_top=np.array([[569, 407, 675]]), class_prob=np.array([[0.78, 0.04, 0.03]]))
    captions, problems = imagenet_labels(context, n=3)
    assert not problems
    assert captions.text.iloc[0] == "a picture of a garbage truck"
    assert "a garbage truck or an ambulance" in captions.text.tolist()
