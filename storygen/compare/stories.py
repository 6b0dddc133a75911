"""Stories side by side: for the first few test prompts, the prompt, the reference and each
run's story next to each other, each run labelled by the overrides that set it apart."""

from __future__ import annotations

from storygen.compare.sources import ComparedRun

NUM_PROMPTS = 3
MAX_RUNS = 6


def label(run: ComparedRun, shared: set[str]) -> str:
    own = [f"`{o}`" for o in run.overrides if o not in shared]
    return " ".join(own) or run.name


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip() or "(empty)"


def stories_section(runs: list[ComparedRun], shared: set[str]) -> list[str]:
    """Markdown lines; `runs` come best first, and at most MAX_RUNS of them are shown."""
    with_stories = [run for run in runs if run.generations][:MAX_RUNS]
    lines = ["", "## Stories side by side", ""]
    if not with_stories:
        return lines + ["No run wrote generated stories."]
    prompts: list[str] = []
    for run in with_stories:
        prompts += [p for p in run.prompts if p not in prompts]
    prompts = prompts[:NUM_PROMPTS]
    shown = len(with_stories)
    total = sum(1 for run in runs if run.generations)
    lines.append(
        f"The first {len(prompts)} prompts of the runs' story split; "
        + (f"the best {shown} of {total} runs." if shown < total else f"all {shown} runs.")
    )
    for number, prompt in enumerate(prompts, 1):
        stories = {
            run.name: dict(zip(run.prompts, zip(run.references, run.generations)))[prompt]
            for run in with_stories
            if prompt in run.prompts
        }
        reference = next(iter(stories.values()))[0]
        columns = [run for run in with_stories if run.name in stories]
        lines += ["", f"### Prompt {number}", "", f"> {cell(prompt)}", ""]
        lines.append("| reference | " + " | ".join(label(r, shared) for r in columns) + " |")
        lines.append("|" + "---|" * (1 + len(columns)))
        cells = [cell(reference)] + [cell(stories[r.name][1]) for r in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
