"""Routers beside the releases: `FLYWHEEL_HOME/releases/routers/<release>-<digest>/` holds the arrays and
config (router.npz, router.json) and, once evaluated, evaluation.json, report.md and curve.png; `latest` points
at the newest. A router is named after the router_examples release it learned from and a digest of what it
learned, so training twice on the same release with the same settings makes no second copy."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from flywheel.publish import LATEST, dataset_folder, point_latest
from flywheel.releases import resolve
from flywheel.router.evaluation import Evaluation, evaluate, markdown, plot
from flywheel.router.examples import read_examples
from flywheel.router.model import RouterConfig, RouterModel
from flywheel.settings import SCHEMAS_DIR

ROUTERS = "routers"
SETTINGS = SCHEMAS_DIR / "router.yaml"


def _settings(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def load_routing(path: Path = SETTINGS) -> dict:
    """The `routing:` section: the production defaults of flywheel.route."""
    return _settings(path).get("routing", {})


def load_config(path: Path = SETTINGS) -> RouterConfig:
    document = _settings(path)
    known = set(RouterConfig.__dataclass_fields__)
    unknown = set(document.get("model", {})) - known
    if unknown:
        raise ValueError(f"{path}: unknown router setting(s) {', '.join(sorted(unknown))} under model: "
                         f"(known: {', '.join(sorted(known))})")
    return RouterConfig(**document.get("model", {}))


def routers_folder(releases: Path) -> Path:
    return releases / ROUTERS


def router_versions(releases: Path) -> list[str]:
    folder = routers_folder(releases)
    if not folder.exists():
        return []
    return sorted((p.name for p in folder.iterdir() if p.is_dir() and not p.is_symlink()
                   and not p.name.startswith(".") and (p / "router.json").exists()),
                  key=lambda name: (folder / name / "router.json").stat().st_mtime)


def router_path(releases: Path, version: str | None = None) -> Path:
    """The folder of a router ('latest' or None: the newest); an error says how to make one."""
    folder = routers_folder(releases)
    known = router_versions(releases)
    if not known:
        raise LookupError(f"no router under {folder} yet: run `flywheel router train` after `flywheel publish`")
    if version in (None, LATEST):
        link = folder / LATEST
        return folder / (os.readlink(link) if link.is_symlink() else known[-1])
    if version not in known:
        raise LookupError(f"no router {version} under {folder}; there are {', '.join(known)}")
    return folder / version


def _split_files(releases: Path, release: str, split: str) -> Path:
    path = dataset_folder(releases, "router_examples") / release / "data" / f"{split}.parquet"
    if not path.exists():
        raise LookupError(f"router_examples {release} has no {split} split ({path})")
    return path


@dataclass
class Trained:
    version: str
    folder: Path
    model: RouterModel
    new: bool


def train(releases: Path, release: str | None = None, config: RouterConfig | None = None) -> Trained:
    """Fit a router on a router_examples release's train split and store it (unless the same one exists)."""
    release = resolve(releases, "router_examples", release)
    examples = read_examples(_split_files(releases, release, "train"))
    model = RouterModel.fit(examples.training(), config or load_config(),
                            {"dataset": "router_examples", "release": release, "split": "train",
                             "prompts": len(examples.clusters)})
    version = f"{release}-{model.digest()[:8]}"
    model.trained_on["router_version"] = version
    folder = routers_folder(releases)
    target = folder / version
    if (target / "router.json").exists():
        point_latest(folder, version)
        return Trained(version, target, RouterModel.load(target), new=False)
    incoming = folder / f".incoming-{version}-{uuid.uuid4().hex[:8]}"
    try:
        model.save(incoming)
        os.rename(incoming, target)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    point_latest(folder, version)
    return Trained(version, target, model, new=True)


def evaluate_router(releases: Path, version: str | None = None, *, bootstrap: int = 1000) -> tuple[Path, Evaluation]:
    """Score a stored router on the test split of the release it was trained on; writes evaluation.json,
    report.md and curve.png beside it."""
    folder = router_path(releases, version)
    model = RouterModel.load(folder)
    release = model.trained_on["release"]
    result = evaluate(model, read_examples(_split_files(releases, release, "test")), bootstrap=bootstrap)
    plot(result, folder / "curve.png")
    (folder / "report.md").write_text(markdown(result))
    (folder / "evaluation.json").write_text(result.to_json() + "\n")
    return folder, result


def stored_evaluation(folder: Path) -> dict | None:
    path = folder / "evaluation.json"
    return json.loads(path.read_text()) if path.exists() else None
