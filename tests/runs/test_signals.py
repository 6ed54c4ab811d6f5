"""Stopping a run: SIGTERM/SIGINT as a flag, and NaN/inf losses as `TrainingDiverged`."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from wetok.runs.signals import StopRequest, TrainingDiverged, check_finite


def test_stop_request_catches_sigterm_and_sigint_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        assert stop.signal == 0
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal == signal.SIGINT
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_check_finite_names_the_step_and_the_terms(one_process):
    with StopRequest() as stop:
        assert check_finite(3, {"l1": torch.tensor(0.5), "gan": 2.0}, stop, one_process) is False
        with pytest.raises(TrainingDiverged) as caught:
            check_finite(3, {"l1": torch.tensor(float("nan")), "gan": 1.0, "lecam": float("inf")}, stop, one_process)
        assert str(caught.value) == "step 3: loss term l1, lecam is not finite; stopped, the last good checkpoint is kept"
        os.kill(os.getpid(), signal.SIGTERM)
        assert check_finite(4, {"l1": torch.tensor(0.5)}, stop, one_process) is True
