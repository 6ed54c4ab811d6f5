"""The digits demo: scikit-learn's digits as 32 px images, their class folders, the classifier that
judges them, and the tokenizer shipped in the package."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import wetok
from wetok.demos import digits
from wetok.demos.digits import (
    DIGITS_SIZE,
    NUM_DIGITS,
    TOKENIZER_DIR,
    DigitClassifier,
    demo_tokenizer,
    digit_images,
    reconstruct_digits,
    reduce_to_source,
    source_digits,
    write_digit_folder,
)
from wetok.errors import WetokError
from wetok.metrics import psnr

# Measured on the shipped tokenizer (all 1797 digits; MODEL_CARD.md states them); a retrained
# tokenizer updates these together with its model card.
RECOGNISED = 1.0
"""The fraction of the 1797 reconstructions the classifier fitted on all digits recognises."""
RECOGNISED_HELD_OUT = 888 / 898
"""The same with a classifier fitted on the even-numbered digits, of the odd-numbered ones."""
MEAN_PSNR = 29.788


@pytest.fixture(scope="module")
def images_and_labels() -> tuple[np.ndarray, np.ndarray]:
    return digit_images()


@pytest.fixture(scope="module")
def classifier() -> DigitClassifier:
    return DigitClassifier()


@pytest.fixture(scope="module")
def reconstructions(images_and_labels) -> np.ndarray:
    return reconstruct_digits(demo_tokenizer(), images_and_labels[0])


def test_images_are_white_digits_on_black_with_their_labels(images_and_labels):
    images, labels = images_and_labels
    assert images.shape == (NUM_DIGITS, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (NUM_DIGITS,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(images[..., 0], images[..., 2])
    # white ink on black: the originals' left column is almost always blank, and stays dark
    assert images.max() == 255 and images[:, :, :2].mean() < 0.1 and 70 < images.mean() < 90
    originals, _ = source_digits()
    assert np.array_equal(digit_images(8)[0][..., 0], np.round(originals * 255 / 16).astype(np.uint8))
    # the first digit is a 0: its centre (the hole) is dark, the ring around it bright
    zero = images[0, :, :, 0].astype(int)
    assert labels[0] == 0 and zero[14:18, 14:18].mean() < 60 and zero[4:8, 12:20].mean() > 150


def test_reduction_to_8x8_undoes_the_upscaling_closely(images_and_labels):
    images, _ = images_and_labels
    originals, _ = source_digits()
    error = np.abs(reduce_to_source(images) - originals)
    assert error.mean() < 0.8 and error.max() < 5  # of 16
    assert reduce_to_source(images[:3, :, :, 0]).shape == (3, 8, 8)
    with pytest.raises(WetokError, match="uint8"):
        reduce_to_source(images.astype(np.float32))


def test_size_must_be_at_least_the_originals():
    with pytest.raises(WetokError, match="at least 8"):
        digit_images(4)
    assert digit_images(20)[0].shape == (NUM_DIGITS, 20, 20, 3)


def test_folder_has_one_class_folder_per_digit(tmp_path, images_and_labels):
    images, labels = images_and_labels
    root = write_digit_folder(tmp_path / "digits")
    assert root == tmp_path / "digits"
    assert sorted(p.name for p in root.iterdir()) == [str(c) for c in range(10)]
    files = sorted(root.glob("*/*.png"))
    assert len(files) == NUM_DIGITS and not list(root.glob("*/.*"))  # no temporary file left
    assert sorted(int(p.stem) for p in files) == list(range(NUM_DIGITS))
    for index in (0, 5, 1796):
        path = root / str(labels[index]) / f"{index:04d}.png"
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), images[index])
    assert len(list((root / "0").glob("*.png"))) == 178


def test_classifier_recognises_held_out_digits(images_and_labels):
    images, labels = images_and_labels
    half = DigitClassifier(np.arange(0, NUM_DIGITS, 2))
    held_out = half.score(images[1::2], labels[1::2])
    assert 0.97 <= held_out < 1.0
    assert half.score(digit_images(8)[0][1::2], labels[1::2]) >= 0.97  # the 8 x 8 originals as images
    assert half.score(images[::2], labels[::2]) >= 0.999  # the digits it was fitted on


def test_classifier_fitted_on_all_digits_reads_every_image(classifier, images_and_labels):
    images, labels = images_and_labels
    assert classifier.score(images, labels) >= 0.999
    predicted = classifier.predict(images[:20])
    assert predicted.dtype == np.int64 and predicted.shape == (20,)
    assert classifier.predict(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0,)
    # blank and inverted images are not read as the digits they came from
    assert classifier.score(255 - images[:200], labels[:200]) < 0.5


def test_classifier_refuses_bad_input(classifier, images_and_labels):
    images, labels = images_and_labels
    with pytest.raises(WetokError, match="as many labels"):
        classifier.score(images[:3], labels[:2])
    with pytest.raises(WetokError, match=r"\(N, H, W, 3\)"):
        classifier.predict(images[0, :, :, 0])
    with pytest.raises(WetokError, match="digits 0..1796"):
        DigitClassifier([0, 1797])
    with pytest.raises(WetokError, match="two classes"):
        DigitClassifier([0])


def test_missing_scikit_learn_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(WetokError, match=r"needs scikit-learn .*: pip install scikit-learn$"):
        DigitClassifier()


def test_shipped_tokenizer_is_small_and_makes_an_8x8_grid():
    assert (TOKENIZER_DIR / "model.safetensors").stat().st_size <= 2.5e6
    assert (digits.DEMO_DIR / "MODEL_CARD.md").is_file()
    model = demo_tokenizer()
    assert isinstance(model, wetok.Tokenizer) and not model.training
    assert model.token_grid(DIGITS_SIZE, DIGITS_SIZE) == (8, 8)
    assert (model.groups, model.bits_per_group) == (2, 4)
    stored = json.loads((TOKENIZER_DIR / "config.json").read_text())["config"]
    assert model.config.to_dict() == stored
    assert model.config.architecture_hash() in (digits.DEMO_DIR / "MODEL_CARD.md").read_text()


def test_shipped_tokenizer_reconstructions_are_recognised(reconstructions, classifier, images_and_labels):
    images, labels = images_and_labels
    recognised = classifier.score(reconstructions, labels)
    assert recognised >= 0.97
    assert recognised == pytest.approx(RECOGNISED, abs=0.002)
    assert float(psnr(images, reconstructions).mean()) == pytest.approx(MEAN_PSNR, abs=0.02)
    held_out = DigitClassifier(np.arange(0, NUM_DIGITS, 2)).score(reconstructions[1::2], labels[1::2])
    assert held_out >= 0.97
    assert held_out == pytest.approx(RECOGNISED_HELD_OUT, abs=0.003)


# ---- the generator --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generator():
    return digits.demo_generator()


def test_shipped_generator_is_small_and_refers_to_the_shipped_tokenizer(generator):
    assert (digits.GENERATOR_DIR / "model.safetensors").stat().st_size <= 2.5e6
    assert json.loads((digits.GENERATOR_DIR / "config.json").read_text())["tokenizer"] == {"source": "../tokenizer"}
    cfg = generator.config
    assert (cfg.grid_size, cfg.groups, cfg.bits_per_group, cfg.num_classes) == (8, 2, 4, 10)
    assert generator.tokenizer.config == demo_tokenizer().config
    assert f"{cfg.parameter_count() / 1e6:.2f} M" in (digits.DEMO_DIR / "MODEL_CARD.md").read_text()


def test_shipped_generator_draws_the_digit_asked_for(generator, classifier):
    """20 samples of each digit (the first 20 seeds of each class of the card's 100) with and
    without guidance: the issue's bar is 90% with guidance; the card's figures hold to the sample."""
    images, labels = digits.sample_digits(generator, 20, cfg_scale=digits.CFG_SCALE)
    assert images.shape == (200, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [c for c in range(10) for _ in range(20)]
    guided = float(np.mean(classifier.predict(images) == labels))
    assert guided >= 0.97
    plain, _ = digits.sample_digits(generator, 20, cfg_scale=1.0)
    unguided = float(np.mean(classifier.predict(plain) == labels))
    assert 0.85 <= unguided < guided
    again, _ = digits.sample_digits(generator, 2, cfg_scale=digits.CFG_SCALE, batch_size=7)
    assert np.array_equal(again[:2], images[:2])  # sample i depends on its seed, not on the batch


def test_a_missing_generator_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(digits, "GENERATOR_DIR", tmp_path / "none")
    with pytest.raises(wetok.errors.CheckpointError, match="carries no digits demo generator"):
        digits.demo_generator()
