"""Training throughput: storygen's fit loop vs a hand-written PyTorch loop vs transformers.Trainer.

    python benchmarks/train_throughput.py [--layers 4] [--width 256] [--heads 4]
        [--batch-size 8] [--max-length 128] [--warmup-steps 3] [--steps 10] [--repeats 3]
        [--num-workers 0] [--quickstart] [--compile] [--no-glibc]

All three train the same tiny GPT-2 (random init from one seed, fp32, CPU) on the same
batches (StoryDataModule's train loader over the bundled TinyStories sample: same seed, same
order) with the same AdamW partial, linear warm-up schedule and gradient clipping at 1.0
(storygen's trainer default): only the loops differ.

- storygen: the composed conf/ tree (`model=gpt2_tiny trainer=cpu logger=csv`), the real
  StoryLM and Lightning Trainer, logging every 10 steps (the default `log_every_n_steps`)
  to CSV, with the default callbacks but the checkpoint writers and story metrics
  (LearningRateMonitor, and the NaN guard and RNG-state callbacks where the config has
  them); no progress bar, no checkpoints, no validation (story metrics only run there).
  W&B, the other default logger, is left out: it writes from its own process.
- hand loop: forward, backward, clip, step, schedule, zero_grad.
- transformers.Trainer: the same optimizer and scheduler passed in, same loader, logging
  every 10 steps, no saving, no reporting.
- hand loop, glibc malloc: the hand loop in a child process without tcmalloc, i.e. a plain
  PyTorch loop as users run it. This process itself runs under tcmalloc, as storygen's
  entry points do (storygen/environment/allocator.py), so the first three sides share an allocator.
  Target: storygen / this side >= 1.2 (`--quickstart`: the quickstart's model and batches,
  GPT-2 2 x 128, 4 heads, batch 16 x 256, grouped by length).

Each run times the steps after `--warmup-steps` (steady state: Trainer start-up excluded)
and the sides alternate within each repeat. tokens/s is the median over repeats of each
run's tokens / seconds; "step-median" is the median over every timed step, which shrugs off
a busy spell on a shared machine but also hides periodic work (logging every 10 steps), so
the ratios use the first. Targets: storygen / hand loop >= 0.97, storygen /
transformers.Trainer >= 1.0. GFLOP/s counts 6 x matmul weights per token (the tied LM head
included, embedding lookups not) plus attention (12 x layers x width x context), against
this machine's fp32 matmul peak measured in the same run (4096 x 4096 torch.matmul, median
of the runs before and after). The last loss shows the work is the same: storygen and the
hand loop agree exactly; transformers.Trainer re-seeds before training, so its dropout masks
and its loss differ slightly. On 2 cores, anything else running makes OpenMP threads wait
for each other and slows steps several-fold: the load average is printed for that reason.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

if __name__ == "__main__":  # as storygen's entry points: tcmalloc, before torch is imported
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from storygen.environment.allocator import preload_fast_allocator

    preload_fast_allocator()

import datasets
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch import Callback
from omegaconf import DictConfig, open_dict
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from storygen.environment.resolvers import CONF_DIR, setup_environment
from storygen.models.module import parameter_groups
from storygen.train import instantiate_group

Timed = tuple[list[float], list]  # seconds of each timed step, the loss of every step

# no checkpoint writers; story metrics only run at validation, which is off here
DROPPED_CALLBACKS = ("model_checkpoint", "interruption", "story_metrics")


def compose_config(args: argparse.Namespace, output_dir: str) -> DictConfig:
    """The config `python -m storygen.train` would get with these overrides."""
    overrides = [
        "model=gpt2_tiny",
        f"model.backbone.architecture.n_layer={args.layers}",
        f"model.backbone.architecture.n_embd={args.width}",
        f"model.backbone.architecture.n_head={args.heads or max(1, args.width // 64)}",
        f"model.backbone.architecture.n_positions={max(256, args.max_length)}",
        "data=tinystories",
        "data.corpus.source=sample",
        f"data.batch_size={args.batch_size}",
        f"data.max_length={args.max_length}",
        f"data.num_workers={args.num_workers}",
        f"data.group_by_length={args.group_by_length}",
        "data.cache_dir=null",
        "trainer=cpu",
        f"++trainer.max_steps={args.warmup_steps + args.steps}",
        "trainer.enable_progress_bar=false",
        "++trainer.enable_checkpointing=false",
        "++trainer.limit_val_batches=0",
        "logger=csv",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = cfg.paths.output_dir = output_dir
        for name in DROPPED_CALLBACKS:
            cfg.callbacks.pop(name, None)
    return cfg


class LightningClock(Callback):
    """perf_counter() and the loss at the end of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())
        self.losses.append(outputs["loss"].detach())


class TransformersClock(TrainerCallback):
    """perf_counter() at the end of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.times.append(time.perf_counter())


def step_seconds(times: list[float], warmup: int) -> list[float]:
    """Seconds of each step after the warm-up, end of one step to end of the next."""
    return [end - start for start, end in zip(times[warmup - 1 :], times[warmup:])]


def run_storygen(cfg: DictConfig, datamodule, tokenizer, warmup: int) -> Timed:
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model, tokenizer=tokenizer)
    clock = LightningClock()
    callbacks = instantiate_group(cfg.callbacks) + [clock]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=instantiate_group(cfg.logger))
    trainer.fit(model, datamodule=datamodule)
    return step_seconds(clock.times, warmup), clock.losses


def build_backbone_and_optimizer(cfg: DictConfig, total_steps: int):
    torch.manual_seed(cfg.seed)
    backbone = instantiate(cfg.model.backbone)
    optimizer_factory = instantiate(cfg.model.optimizer)
    optimizer = optimizer_factory(parameter_groups(backbone))
    scheduler = instantiate(cfg.model.scheduler)(optimizer, num_training_steps=total_steps)
    return backbone, optimizer, scheduler


def run_hand_loop(cfg: DictConfig, datamodule, warmup: int) -> Timed:
    total = cfg.trainer.max_steps
    model, optimizer, scheduler = build_backbone_and_optimizer(cfg, total)
    model.train()
    times, losses = [], []
    for step, batch in enumerate(datamodule.train_dataloader()):
        if step == total:
            break
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.gradient_clip_val)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        times.append(time.perf_counter())
    return step_seconds(times, warmup), losses


def run_hf_trainer(cfg: DictConfig, datamodule, warmup: int, output_dir: str) -> Timed:
    total = cfg.trainer.max_steps
    model, optimizer, scheduler = build_backbone_and_optimizer(cfg, total)
    model.config.use_cache = False  # as storygen's StoryLM.forward
    losses: list[torch.Tensor] = []

    class SameBatchesTrainer(Trainer):
        def get_train_dataloader(self):
            return datamodule.train_dataloader()

        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            losses.append(loss.detach())
            return loss

    arguments = TrainingArguments(
        output_dir=output_dir,
        max_steps=total,
        per_device_train_batch_size=cfg.data.batch_size,
        max_grad_norm=cfg.trainer.gradient_clip_val,
        logging_steps=cfg.trainer.log_every_n_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=cfg.data.num_workers,
        seed=cfg.seed,
    )
    clock = TransformersClock()
    trainer = SameBatchesTrainer(
        model=model,
        args=arguments,
        optimizers=(optimizer, scheduler),
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)  # logs are still made every 10 steps, not printed
    trainer.train()
    return step_seconds(clock.times, warmup), losses


def run_hand_loop_glibc(args: argparse.Namespace, warmup: int) -> Timed:
    """The hand loop in a child process on glibc's malloc (no LD_PRELOAD)."""
    from storygen.environment.allocator import ENV_VAR, PRELOADED_VAR

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", PRELOADED_VAR)}
    env[ENV_VAR] = "system"
    command = [sys.executable, __file__, "--child-hand-loop", *sys.argv[1:]]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"the glibc child failed:\n{result.stderr[-3000:]}")
    timed = json.loads(result.stdout.strip().splitlines()[-1])
    assert not timed["tcmalloc"], "the glibc side must not run on tcmalloc"
    return timed["seconds"], [torch.tensor(timed["loss"])]


def matmul_gflops(size: int = 4096, repeats: int = 5) -> float:
    """Median fp32 torch.matmul GFLOP/s: the machine's practical peak."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def training_flops_per_token(model: torch.nn.Module, context: int) -> float:
    """6 x weights used in matmuls (the LM head included, embedding lookups not) + attention."""
    matmul_weights = sum(
        module.weight.numel()
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
    )
    config = model.config
    return 6 * matmul_weights + 12 * config.n_layer * config.n_embd * context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256, help="n_embd")
    parser.add_argument("--heads", type=int, default=None, help="n_head (default: width / 64)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=0, help="data.num_workers, all sides")
    parser.add_argument(
        "--compile", action="store_true", help="add a side: storygen with model.compile_backbone"
    )
    parser.add_argument(
        "--quickstart",
        action="store_true",
        help="the quickstart's shape: --layers 2 --width 128 --heads 4 --batch-size 16 "
        "--max-length 256",
    )
    parser.add_argument(
        "--no-glibc", action="store_true", help="leave out the hand loop on glibc's malloc"
    )
    parser.add_argument(
        "--group-by-length", action="store_true", help="data.group_by_length=true, all sides"
    )
    parser.add_argument("--child-hand-loop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quickstart:
        args.layers, args.width, args.heads, args.batch_size, args.max_length = 2, 128, 4, 16, 256
        args.group_by_length = True  # as conf/experiment/quickstart.yaml
    assert args.warmup_steps >= 1, "the first step is always warm-up"

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*loss_type=None.*")
    warnings.filterwarnings("ignore", ".*exists and is not empty.*")
    warnings.filterwarnings("ignore", ".*treespec.*")
    datasets.disable_progress_bars()
    setup_environment()

    with tempfile.TemporaryDirectory(prefix="storygen-bench-") as tmp:
        cfg = compose_config(args, tmp)
        tokenizer = instantiate(cfg.model.tokenizer)
        datamodule = instantiate(cfg.data, tokenizer=tokenizer)
        datamodule.setup()
        if args.child_hand_loop:
            seconds, losses = run_hand_loop(cfg, datamodule, args.warmup_steps)
            maps = Path("/proc/self/maps").read_text()
            print(
                json.dumps(
                    {"seconds": seconds, "loss": float(losses[-1]), "tcmalloc": "tcmalloc" in maps}
                )
            )
            return
        total = cfg.trainer.max_steps
        batches = [batch for _, batch in zip(range(total), datamodule.train_dataloader())]
        assert len(batches) == total, "fewer batches in an epoch than steps: lower --steps"
        per_token = partial(training_flops_per_token, instantiate(cfg.model.backbone))
        timed = batches[args.warmup_steps :]
        step_tokens = [batch["input_ids"].numel() for batch in timed]
        step_flops = [n * per_token(b["input_ids"].shape[1]) for n, b in zip(step_tokens, timed)]

        load_before = os.getloadavg()[0]
        peaks = [matmul_gflops()]
        sides = {
            "storygen (Lightning)": lambda: run_storygen(
                cfg, datamodule, tokenizer, args.warmup_steps
            ),
            "hand-written loop": lambda: run_hand_loop(cfg, datamodule, args.warmup_steps),
            "transformers.Trainer": lambda: run_hf_trainer(
                cfg, datamodule, args.warmup_steps, f"{tmp}/hf"
            ),
        }
        if not args.no_glibc:
            sides["hand loop, glibc malloc"] = lambda: run_hand_loop_glibc(args, args.warmup_steps)
        if args.compile:
            compiled_cfg = copy.deepcopy(cfg)
            compiled_cfg.model.compile_backbone = True
            sides["storygen, compiled"] = lambda: run_storygen(
                compiled_cfg, datamodule, tokenizer, args.warmup_steps
            )
        steps: dict[str, list[list[float]]] = {name: [] for name in sides}
        final_loss: dict[str, float] = {}
        for _ in range(args.repeats):  # the sides alternate, so a busy spell hits all of them
            for name, run in sides.items():
                seconds, losses = run()
                steps[name].append(seconds)
                final_loss[name] = float(losses[-1])
        peaks.append(matmul_gflops())
        load_after = os.getloadavg()[0]

    peak = statistics.median(peaks)
    shape = timed[0]["input_ids"].shape
    print(
        f"GPT-2 {args.layers} x {args.width}, batch {shape[0]} x {shape[1]} tokens, fp32, "
        f"{torch.get_num_threads()} threads; {args.steps} timed steps after {args.warmup_steps} "
        f"warm-up, {args.repeats} repeats; fp32 matmul peak {peak:.0f} GFLOP/s; "
        f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs; "
        f"allocator {os.environ.get('STORYGEN_PRELOADED_ALLOCATOR', 'glibc malloc')}"
    )
    print(
        f"{'loop':<24}{'tokens/s':>10}{'GFLOP/s':>9}{'of peak':>9}"
        f"{'step-median tok/s':>19}{'last loss':>11}"
    )
    rates, step_rates = {}, {}
    for name, runs in steps.items():
        # median over repeats of each run's tokens / seconds over its timed steps
        rates[name] = statistics.median(sum(step_tokens) / sum(run) for run in runs)
        # median over every timed step of every repeat: blind to periodic work, robust to bursts
        step_rates[name] = statistics.median(
            n / dt for run in runs for n, dt in zip(step_tokens, run)
        )
        gflops = rates[name] * sum(step_flops) / sum(step_tokens) / 1e9
        print(
            f"{name:<24}{rates[name]:>10.0f}{gflops:>9.1f}{gflops / peak:>9.1%}"
            f"{step_rates[name]:>19.0f}{final_loss[name]:>11.4f}"
        )
    ours, hand, hf = list(rates.values())[:3]
    ours_step, hand_step, hf_step = list(step_rates.values())[:3]
    print(
        f"storygen / hand-written loop: {ours / hand:.3f} (per-step median "
        f"{ours_step / hand_step:.3f})  [target >= 0.97]"
    )
    print(
        f"storygen / transformers.Trainer: {ours / hf:.3f} (per-step median "
        f"{ours_step / hf_step:.3f})  [target >= 1.0]"
    )
    if not args.no_glibc:
        glibc, glibc_step = rates["hand loop, glibc malloc"], step_rates["hand loop, glibc malloc"]
        print(
            f"storygen / hand loop on glibc malloc: {ours / glibc:.3f} (per-step median "
            f"{ours_step / glibc_step:.3f})  [target >= 1.2]"
        )
    if args.compile:
        compiled, compiled_step = rates["storygen, compiled"], step_rates["storygen, compiled"]
        print(
            f"storygen compiled / eager: {compiled / ours:.3f} (per-step median "
            f"{compiled_step / ours_step:.3f})"
        )


if __name__ == "__main__":
    main()
