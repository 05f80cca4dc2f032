"""Model repositories: where they live and how their `${...}` placeholders are filled.

The templates in `triton_repo/` use the same `${name}` placeholders as NVIDIA's `fill_template.py`; the dev
stack renders a copy with every placeholder filled before Triton sees it, so a forgotten value is an error here
rather than a model that fails to load with a confusing message.
"""

from __future__ import annotations

import re
import shutil
import string
from collections.abc import Mapping
from pathlib import Path

from gateway.errors import ConfigurationError

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The vision models of a repository folder (`multimodal/ensemble` replaces the text ensemble, and
# `multimodal/multimodal_encoders` joins): laid over the text models for a vision model, left out otherwise.
MULTIMODAL = "multimodal"


def triton_repo_root() -> Path:
    """The project's `triton_repo/` folder (present in a source checkout or an editable install)."""
    root = Path(__file__).resolve().parents[2] / "triton_repo"
    if not root.is_dir():
        raise ConfigurationError(
            f"triton_repo/ not found next to the gateway package ({root}); "
            "install the gateway from a source checkout (pip install -e .) to use the dev stack"
        )
    return root


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Substitute `${name}` placeholders; unknown ones are left as they are (like fill_template.py)."""
    return string.Template(text).safe_substitute(values)


def unfilled_placeholders(text: str) -> set[str]:
    """Names of the `${name}` placeholders still present in `text`."""
    return set(PLACEHOLDER.findall(text))


def render_model_repository(
    source: Path, destination: Path, values: Mapping[str, str], overlay: Path | None = None
) -> Path:
    """Copy a model repository (following symlinks; without its `multimodal/` folder), lay `overlay`'s models
    over it when given, and fill every placeholder in its config.pbtxt files.

    Raises ConfigurationError naming each placeholder that `values` does not provide.
    """
    if destination.exists():
        shutil.rmtree(destination)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", MULTIMODAL)
    shutil.copytree(source, destination, symlinks=False, ignore=ignore)
    if overlay is not None:
        for model in sorted(path for path in overlay.iterdir() if (path / "config.pbtxt").exists()):
            shutil.rmtree(destination / model.name, ignore_errors=True)
            shutil.copytree(model, destination / model.name, ignore=ignore)
    missing: dict[str, set[str]] = {}
    for config in sorted(destination.glob("*/config.pbtxt")):
        text = fill_placeholders(config.read_text(), values)
        left = unfilled_placeholders(text)
        if left:
            missing[config.parent.name] = left
        config.write_text(text)
    if missing:
        detail = "; ".join(f"{model}: {', '.join(sorted(names))}" for model, names in sorted(missing.items()))
        raise ConfigurationError(f"model repository {source} has placeholders without a value: {detail}")
    return destination


def model_names(repository: Path) -> list[str]:
    """The models of a repository: its sub-folders that hold a config.pbtxt."""
    return sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))
