"""Fixtures of the training tests."""

from __future__ import annotations

import pytest

from support import make_images


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder of 6 small random pictures (`support.make_images`), one per test module."""
    folder = tmp_path_factory.mktemp("images")
    make_images(folder, 6)
    return folder
