"""Export a checkpoint as a Hugging Face directory: `python -m storygen.export ckpt_path=...`.

The model config comes from the checkpoint's own run (`<run>/.hydra/config.yaml`) when it is
there, so `ckpt_path` alone is enough; otherwise from the `model=` given on the command line.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the imports: a dependency out of range is one line
    from storygen.environment.versions import exit_on_unsupported_versions

    exit_on_unsupported_versions()

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from storygen.environment.resolvers import CONF_DIR
from storygen.environment.shutdown import exit_quickly
from storygen.errors import exit_on_user_error
from storygen.models.export import export_backbone
from storygen.models.trained import load_trained_model, model_overridden, run_dir_of


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        overrides = list(HydraConfig.get().overrides.task)
        model = load_trained_model(cfg.ckpt_path, cfg.model, model_overridden(overrides))
        out_dir = Path(cfg.out_dir or run_dir_of(Path(cfg.ckpt_path)) / "export")
        result = export_backbone(model.backbone, model.tokenizer, out_dir, merge=cfg.merge)
        print(f"exported: {result.model_dir}")
        if result.merged_dir is not None:
            print(
                f"merged:   {result.merged_dir} (max |logit diff| {result.merge_max_abs_diff:.2e})"
            )


if __name__ == "__main__":
    exit_quickly()
    main()
