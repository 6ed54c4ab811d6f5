"""Fixtures of the generator training tests."""

from __future__ import annotations

import pytest

from support import make_ar_data


@pytest.fixture(scope="session")
def ar_data(tmp_path_factory):
    """`support.make_ar_data`: a random tokenizer, its token shards and a tiny generator recipe."""
    return make_ar_data(tmp_path_factory.mktemp("ar-data"))
