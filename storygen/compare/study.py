"""The Optuna study behind a search: its trials (parameters, state, value) and Optuna's own
optimization-history and parameter-importance plots, read from the study's storage.

A sweep dir names its study in `optuna_study.yaml` (the sweeper writes it, password hidden);
a URL that came from STORYGEN_OPTUNA_STORAGE is read from the environment again.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

log = logging.getLogger(__name__)
STUDY_FILE = "optuna_study.yaml"
STORAGE_ENV = "STORYGEN_OPTUNA_STORAGE"


@dataclass(frozen=True)
class StudyRef:
    study_name: str
    url: str


def find_study(dirs: list[Path], storage: str | None = None) -> StudyRef | None:
    """The study the first sweep dir (or a trial's sweep dir) names, if any."""
    for given in dirs:
        for candidate in (given / STUDY_FILE, given.parent / STUDY_FILE):
            if candidate.is_file():
                saved = OmegaConf.load(candidate)
                url = storage or (
                    os.environ.get(STORAGE_ENV) if saved.get("storage_from_env") else None
                )
                return StudyRef(saved.study_name, url or saved.storage)
    return None


def study_section(ref: StudyRef, out: Path) -> list[str]:
    """Markdown lines: the trials table and the two plots (or why a plot is missing).
    Optuna is imported here only: compare works without the sweep extra."""
    import optuna

    lines = ["", f"## Optuna study `{ref.study_name}`", ""]
    try:
        study = load_study(ref)
    except Exception as exc:  # the report of the runs is still worth writing
        log.warning("Optuna study %s not read: %s", ref.study_name, exc)
        return lines + [f"Could not read the study ({exc}); pass --storage URL."]
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for trial in trials for name in trial.params})
    counts = {state_name(state): 0 for state in optuna.trial.TrialState}
    for trial in trials:
        counts[state_name(trial.state)] += 1
    direction = study.direction.name.lower()
    lines.append(
        f"{len(trials)} trials, direction {direction}: "
        + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        + "."
    )
    lines += ["", "| trial | state | value | " + " | ".join(params) + " |"]
    lines.append("|" + "---|" * (3 + len(params)))
    for trial in trials:
        value = "–" if trial.value is None or math.isnan(trial.value) else f"{trial.value:.4f}"
        cells = [str(trial.number), state_name(trial.state), value]
        cells += [str(trial.params.get(name, "–")) for name in params]
        lines.append("| " + " | ".join(cells) + " |")
    for title, filename, plot in (
        ("Optimization history", "optuna_history.png", optuna_plot_history),
        ("Parameter importances", "optuna_importances.png", optuna_plot_importances),
    ):
        (out / filename).unlink(missing_ok=True)
        lines += ["", f"### {title}", ""]
        reason = plot(study, out / filename)
        lines.append(f"![{title}]({filename})" if reason is None else reason)
    return lines


def state_name(state) -> str:
    """Optuna's state in run.json's words: complete, pruned, failed, running, waiting."""
    return "failed" if state.name == "FAIL" else state.name.lower()


def load_study(ref: StudyRef):
    import optuna

    if ref.url.startswith("sqlite:///") and not Path(ref.url[len("sqlite:///") :]).is_file():
        raise FileNotFoundError(f"no study database at {ref.url}")
    return optuna.load_study(study_name=ref.study_name, storage=ref.url)


def save_axes(axes, path: Path) -> None:
    figure = axes.figure
    figure.set_size_inches(8, 4.5)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def optuna_plot_history(study, path: Path) -> str | None:
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_optimization_history

    if not study.get_trials(states=(TrialState.COMPLETE,)):
        return "No completed trial yet."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        save_axes(plot_optimization_history(study), path)
    return None


def optuna_plot_importances(study, path: Path) -> str | None:
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_param_importances

    if len(study.get_trials(states=(TrialState.COMPLETE,))) < 2:
        return "Needs at least two completed trials."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # PED-ANOVA: Optuna's own, without fANOVA's scikit-learn dependency
            evaluator = PedAnovaImportanceEvaluator()
            save_axes(plot_param_importances(study, evaluator=evaluator), path)
        except (ValueError, RuntimeError) as exc:  # e.g. no parameter varied
            return f"Not computed: {exc}"
    return None
