"""Export a checkpoint as a Hugging Face directory: `python -m storygen.export ckpt_path=...`.

The model config comes from the checkpoint's own run (`<run>/.hydra/config.yaml`) when it is
there, so `ckpt_path` alone is enough; otherwise from the `model=` given on the command line.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from storygen.config import setup_environment
from storygen.errors import StorygenError, exit_on_user_error
from storygen.models.export import export_backbone


def run_dir_of(ckpt_path: Path) -> Path:
    """`<run>/checkpoints/last.ckpt` -> `<run>`."""
    return ckpt_path.resolve().parent.parent


def model_config_for(ckpt_path: Path, cfg: DictConfig) -> DictConfig:
    """The model config of the run that wrote the checkpoint, resolved in that run's dir."""
    saved = run_dir_of(ckpt_path) / ".hydra" / "config.yaml"
    if not saved.is_file():
        return cfg.model
    run_cfg = OmegaConf.load(saved)
    with open_dict(run_cfg):
        run_cfg.paths.output_dir = str(run_dir_of(ckpt_path))
    return run_cfg.model


def load_trained_model(ckpt_path: str, cfg: DictConfig):
    """A StoryLM rebuilt from its run's config, with the checkpoint's weights loaded."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise StorygenError(
            f"checkpoint {ckpt_path} does not exist; "
            "pass ckpt_path=<run dir>/checkpoints/last.ckpt."
        )
    model = instantiate(model_config_for(path, cfg))
    model.load_checkpoint_weights(path)
    return model


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        model = load_trained_model(cfg.ckpt_path, cfg)
        out_dir = Path(cfg.out_dir or run_dir_of(Path(cfg.ckpt_path)) / "export")
        result = export_backbone(model.backbone, model.tokenizer, out_dir, merge=cfg.merge)
        print(f"exported: {result.model_dir}")
        if result.merged_dir is not None:
            print(
                f"merged:   {result.merged_dir} (max |logit diff| {result.merge_max_abs_diff:.2e})"
            )


if __name__ == "__main__":
    setup_environment()
    main()
