"""A W&B workspace for one sweep, built in code with `wandb-workspaces` (the `dashboard` extra):
`python -m storygen.compare <sweep> --wandb-workspace ENTITY/PROJECT`.

What a researcher looks for on a sweep's first visit: the loss curves, a parallel-coordinates
panel from the keys the sweep varied into its optimized metric, parameter importance for that
metric, and the stories each run generated, all filtered to the sweep's W&B group. Saving
needs W&B online; offline, the workspace's spec is written beside the report for a later save.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from storygen.environment.wandb_run import sweep_group, swept_keys
from storygen.errors import StorygenError

SPEC_FILE = "wandb_workspace.json"


def build_sweep_workspace(entity: str, project: str, group: str, swept: list[str], metric: str):
    """The workspace (a `wandb_workspaces.workspaces.Workspace`) for the runs of `group`."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces.expr import Metric

    step = "trainer/global_step"
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(f"sweep.{key}")) for key in swept]
    columns.append(wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(metric)))
    return ws.Workspace(
        entity=entity,
        project=project,
        name=f"storygen sweep {group}",
        sections=[
            ws.Section(
                name="Which run is better",
                is_open=True,
                panels=[
                    wr.ParallelCoordinatesPlot(columns=columns, title=f"swept keys -> {metric}"),
                    wr.ParameterImportancePlot(with_respect_to=metric),
                ],
            ),
            ws.Section(
                name="Loss",
                is_open=True,
                panels=[
                    wr.LinePlot(title="train/loss", x=step, y=["train/loss"]),
                    wr.LinePlot(title="val/loss", x=step, y=["val/loss"]),
                ],
            ),
            ws.Section(
                name="Stories",
                is_open=True,
                panels=[wr.WeavePanelSummaryTable(table_name="val/generations")],
            ),
        ],
        runset_settings=ws.RunsetSettings(filters=[Metric("Group") == group]),
    )


def sweep_workspace(sweep_dir: Path, wandb_project: str):
    """The workspace of the sweep in `sweep_dir`, from its first job's saved configs: the group
    its runs were logged under, the keys it varied and its optimized metric."""
    entity, _, project = wandb_project.partition("/")
    if not entity or not project:
        raise StorygenError(
            f"--wandb-workspace {wandb_project}: name the W&B project as ENTITY/PROJECT."
        )
    from storygen.compare.sources import find_run_dirs

    saved = find_run_dirs(sweep_dir)[0] / ".hydra"
    hydra = OmegaConf.load(saved / "hydra.yaml").hydra
    config = OmegaConf.load(saved / "config.yaml")
    swept = swept_keys(hydra) if hydra.mode == "MULTIRUN" else []
    if not swept:
        raise StorygenError(
            f"{sweep_dir} is not a sweep (no key varied); --wandb-workspace builds a sweep's."
        )
    group = sweep_group(config.task_name, hydra)
    return build_sweep_workspace(entity, project, group, swept, config.optimized_metric)


def write_or_save(workspace, out: Path, online: bool) -> str:
    """Save the workspace to W&B when online; always write its spec to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    spec = out / SPEC_FILE
    # the spec W&B stores: `_to_model` is private, pinned with the package (pyproject.toml)
    spec.write_text(json.dumps(workspace._to_model().model_dump(by_alias=True), indent=1))
    if online:
        workspace.save()
        return f"W&B workspace {workspace.url} (spec {spec})"
    return f"W&B workspace spec {spec} (offline: not saved)"
