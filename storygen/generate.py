"""Write stories with a trained model, streaming tokens as they come:
`python -m storygen.generate ckpt_path=... prompt="Once upon a time,"` (or `prompts_file=`).
"""

from __future__ import annotations

if __name__ == "__main__":  # before the imports: a dependency out of range is one line, and
    # tcmalloc for CPU runs (LD_PRELOAD acts only at process start)
    from storygen.environment.allocator import preload_fast_allocator
    from storygen.environment.versions import exit_on_unsupported_versions

    exit_on_unsupported_versions()
    preload_fast_allocator()

from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import TextStreamer

from storygen.environment.resolvers import CONF_DIR
from storygen.environment.shutdown import exit_quickly
from storygen.errors import StorygenError, exit_on_user_error
from storygen.models.generation import encode_prompts
from storygen.models.trained import load_for_generation, model_overridden
from storygen.run.checks import GENERATE_RANGES, check_ranges, config_values


def read_prompts(prompt: str | None, prompts_file: str | None) -> list[str]:
    if prompts_file:
        path = Path(prompts_file)
        if not path.is_file():
            raise StorygenError(f"prompts_file {path} does not exist.")
        try:
            prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as exc:
            raise StorygenError(
                f"prompts_file {path} is not UTF-8 text (byte {exc.start}); re-encode it as UTF-8."
            ) from None
        prompts = [p for p in prompts if p]
        if not prompts:
            raise StorygenError(f"prompts_file {path} holds no prompts; write one per line.")
        return prompts
    if prompt is None or not str(prompt).strip():
        raise StorygenError(
            'the prompt is empty; pass prompt="Once upon a time," or prompts_file=...'
        )
    return [str(prompt)]


@torch.no_grad()
def stream_stories(backbone, tokenizer, prompts: list[str], template: str, settings, seed: int):
    """Print each prompt, then its story token by token."""
    torch.manual_seed(seed)
    backbone.eval()
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    device = next(backbone.parameters()).device
    for number, prompt in enumerate(prompts, start=1):
        print(f"\n--- story {number} ---\n{prompt}", end="", flush=True)
        encoded = encode_prompts(tokenizer, [template.format(prompt=prompt)]).to(device)
        backbone.generate(
            **encoded,
            **settings.generate_kwargs(),
            streamer=streamer,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="generate")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        prompts = read_prompts(cfg.prompt, cfg.prompts_file)
        if cfg.generation.max_new_tokens is None:
            raise StorygenError(
                "generation.max_new_tokens=null sizes stories by reference stories, and generate "
                "has none; set a number (e.g. generation.max_new_tokens=200)."
            )
        check_ranges(config_values(cfg, GENERATE_RANGES), GENERATE_RANGES)
        backbone, tokenizer, precision = load_for_generation(
            cfg.ckpt_path,
            cfg.model,
            cfg.base_model,
            cfg.precision,
            model_overridden(list(HydraConfig.get().overrides.task)),
        )
        with precision.forward_context():
            stream_stories(
                backbone,
                tokenizer,
                prompts,
                cfg.prompt_template,
                instantiate(cfg.generation),
                cfg.seed,
            )


if __name__ == "__main__":
    exit_quickly()
    main()
