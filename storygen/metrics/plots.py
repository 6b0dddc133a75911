"""Pictures of story metrics, written as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from storygen.metrics.lengths import word_counts  # noqa: E402


def plot_lengths(generations: list[str], references: list[str], path: Path) -> Path:
    """Overlaid histograms of generated and reference story lengths in words."""
    figure, axes = plt.subplots(figsize=(7, 4))
    draw_lengths(axes, generations, references)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def draw_lengths(axes: plt.Axes, generations: list[str], references: list[str]) -> None:
    """The histograms of `plot_lengths` on given axes, so a comparison can draw one per run."""
    generated, reference = word_counts(generations), word_counts(references)
    bins = max(10, min(40, len(generated) // 2))
    top = max(generated + reference + [1])
    axes.hist(reference, bins=bins, range=(0, top), alpha=0.6, label="reference")
    axes.hist(generated, bins=bins, range=(0, top), alpha=0.6, label="generated")
    axes.set_xlabel("words per story")
    axes.set_ylabel("stories")
    axes.legend()
