"""Shared test configuration: device options and opt-in markers."""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for the tests")
    parser.addoption("--run-weights", action="store_true", help="run tests that fetch weights")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-weights"):
        return
    skip = pytest.mark.skip(reason="needs pretrained weights; pass --run-weights")
    for item in items:
        if "weights" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    # One thread: the test networks are tiny (threading costs more than it gains), results do
    # not depend on the machine's core count, and a loaded 2-core machine is not oversubscribed.
    torch.set_num_threads(1)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(name)


@pytest.fixture(autouse=True)
def _restore_options():
    # Tutorials run in-process set process-wide options as scripts do; undo that after a test.
    import xappa.options

    saved = xappa.options.get_options()
    yield
    xappa.options._OPTIONS.update(saved)
