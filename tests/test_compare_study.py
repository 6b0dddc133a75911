"""The compare report's Optuna study section (from a real SQLite study), its stories side by
side, and the HTML report rendered in a real headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from storygen.compare.__main__ import main
from tests.test_compare import RUNS, write_sweep

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SPACE = {
    "model.optimizer.lr": FloatDistribution(1e-5, 1e-2, log=True),
    "model.backbone.lora.r": CategoricalDistribution([8, 16]),
}
TRIALS = [  # (state, value, lr, r)
    (TrialState.COMPLETE, 2.6, 0.001, 8),
    (TrialState.COMPLETE, 2.2, 0.003, 16),
    (TrialState.FAIL, None, 0.01, 8),
    (TrialState.COMPLETE, 2.9, 0.0003, 16),
    (TrialState.PRUNED, 3.1, 0.00002, 8),
]


def marked_story(job: int, number: int) -> str:
    return f"Run {job} wrote story {number} about a fox."


@pytest.fixture(scope="module")
def study_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep of four runs whose sweep dir names a stored study of five trials."""
    root = tmp_path_factory.mktemp("search")
    sweep = write_sweep(root / "multirun" / "2026-11-30" / "12-00-00")
    for run in RUNS:  # stories unlike their references, so each is found on the page by itself
        path = next((sweep / str(run.job) / "generations").glob("*.jsonl"))
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows = [row | {"generation": marked_story(run.job, n)} for n, row in enumerate(rows)]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    url = f"sqlite:///{root}/multirun/optuna/search.db"
    (root / "multirun" / "optuna").mkdir()
    study = optuna.create_study(study_name="search", storage=url)
    for state, value, lr, r in TRIALS:
        params = {"model.optimizer.lr": lr, "model.backbone.lora.r": r}
        trial = create_trial(state=state, value=value, params=params, distributions=SPACE)
        if state == TrialState.PRUNED:
            trial = create_trial(
                state=state, params=params, distributions=SPACE, intermediate_values={2: value}
            )
        study.add_trial(trial)
    (sweep / "optuna_study.yaml").write_text(
        f"study_name: search\ndirection: minimize\nstorage: {url}\nstorage_from_env: false\n"
    )
    main([str(sweep), "--html"])
    return sweep


def test_the_study_lists_every_trial_with_its_state_value_and_parameters(study_sweep):
    report = (study_sweep / "compare" / "report.md").read_text()
    section = report[report.index("## Optuna study `search`") :]
    assert "5 trials, direction minimize: 3 complete, 1 pruned, 1 failed." in section
    rows = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    assert rows == [
        "| 0 | complete | 2.6000 | 8 | 0.001 |",
        "| 1 | complete | 2.2000 | 16 | 0.003 |",
        "| 2 | failed | – | 8 | 0.01 |",
        "| 3 | complete | 2.9000 | 16 | 0.0003 |",
        "| 4 | pruned | – | 8 | 2e-05 |",
    ]
    for name in ("optuna_history.png", "optuna_importances.png"):
        assert f"]({name})" in section
        image = plt.imread(study_sweep / "compare" / name)
        assert image.shape[1] >= 600 and image[..., :3].std() > 0.05, f"{name} is blank"


def test_stories_side_by_side_show_prompt_reference_and_each_run(study_sweep):
    report = (study_sweep / "compare" / "report.md").read_text()
    section = report[report.index("## Stories side by side") : report.index("## Optuna study")]
    prompts = re.findall(r"^> (.*)$", section, flags=re.M)
    assert len(prompts) == 3
    tables = [line for line in section.splitlines() if line.startswith("| ")]
    header, stories = tables[0], tables[1]
    # runs best first by val/loss, each labelled by the override it alone has
    assert header == (
        "| reference | `model.optimizer.lr=0.003` | `model.optimizer.lr=0.001` "
        "| `model.optimizer.lr=0.0003` | `model.optimizer.lr=0.01` |"
    )
    cells = [cell.strip() for cell in stories.strip("|").split(" | ")]
    assert cells[0].startswith(prompts[0])  # the fixture's reference opens with its prompt
    assert cells[1:] == [marked_story(job, 0) for job in (1, 0, 3, 2)]


def dump_dom(report: Path, script: str, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """Headless Chromium loads `report` with `script` appended (a probe page beside it, deleted
    after) and prints the DOM the script left."""
    page = report.with_name("probe.html")
    page.write_text(report.read_text() + script)
    quiet = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
    quiet += "--disable-background-networking --disable-component-update --disable-sync"
    try:
        return subprocess.run(
            [CHROMIUM, *quiet.split(), f"--user-data-dir={tmp_path / 'profile'}", *flags]
            + ["--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        page.unlink()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (apt-get install chromium)")
def test_the_html_report_renders_every_image_and_story_in_chromium(study_sweep, tmp_path):
    out = study_sweep / "compare"
    # the page as written, plus a script that records each image's loaded width after load
    result = dump_dom(
        out / "report.html",
        "<script>window.addEventListener('load', () => document.body.setAttribute("
        "'data-images', [...document.images].map(i => i.getAttribute('src') + '=' + "
        "i.naturalWidth).join(';')));</script>",
        tmp_path,
    )
    dom = result.stdout
    assert result.returncode == 0 and "data-images" in dom, result.stderr[-2000:]
    widths = dict(
        item.rsplit("=", 1) for item in re.search(r'data-images="([^"]*)"', dom)[1].split(";")
    )
    expected = {"loss_curves.png", "rouge.png", "lengths.png"}
    expected |= {"optuna_history.png", "optuna_importances.png"}
    assert set(widths) == expected
    assert all(int(width) > 0 for width in widths.values()), widths
    text = html.unescape(dom)
    for job in (0, 1, 2, 3):
        for number in range(3):
            assert marked_story(job, number) in text


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (apt-get install chromium)")
def test_the_html_report_reads_like_a_tools_page_in_chromium(study_sweep, tmp_path):
    out = study_sweep / "compare"
    # in a narrow window: what the browser computed, recorded on the body after load
    result = dump_dom(
        out / "report.html",
        """<script>window.addEventListener('load', () => {
  const box = document.querySelector('.scroll'), first = box.querySelector('td');
  const cells = box.querySelectorAll('td:not(:first-child)');
  const number = [...cells].find(c => /^[0-9.,]+$/.test(c.textContent));
  const style = e => getComputedStyle(e);
  document.body.setAttribute('data-probe', JSON.stringify({
    font: style(document.body).fontFamily,
    overflow: style(box).overflowX,
    scrolls: box.scrollWidth > box.clientWidth,
    pageWider: document.documentElement.scrollWidth > window.innerWidth,
    firstColumn: style(first).position, firstText: first.textContent,
    numberAlign: style(number).textAlign,
    images: [...document.images].map(i => [
      i.getBoundingClientRect().width <= parseFloat(style(document.body).width),
      i.getAttribute('alt')]),
  }));
});</script>""",
        tmp_path,
        "--window-size=900,800",
    )
    found = re.search(r'data-probe="([^"]*)"', result.stdout)
    assert result.returncode == 0 and found, result.stderr[-2000:]
    page = json.loads(html.unescape(found[1]))
    assert "system-ui" in page["font"]  # a stylesheet, not the browser's default serif
    # the wide run table scrolls inside its box, the page itself does not widen
    assert page["overflow"] == "auto" and page["scrolls"] and not page["pageWider"]
    assert page["firstColumn"] == "sticky" and page["firstText"] == "1"  # the run column
    assert page["numberAlign"] == "right"
    # figures fit the page, and name the runs as the figures label them
    assert all(fits for fits, _ in page["images"]), page["images"]
    alts = dict((alt.split(";")[0], alt) for _, alt in page["images"])
    runs = "runs: lr=0.003; lr=0.001; lr=0.0003; lr=0.01"
    for title in ("Loss curves", "ROUGE", "Story lengths (generated vs reference, words)"):
        assert alts[title] == f"{title}; {runs}"
