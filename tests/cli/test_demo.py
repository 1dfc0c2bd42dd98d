"""``descend demo`` end to end, on reduced settings: the page, the results, and every sentence
that states a measured value, checked against the data it describes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descend.cli.main import main
from descend.lab.tour import SECTIONS, TourSettings, total_runs

pytestmark = pytest.mark.slow

#: Every section's anchor, from the tour's registry.
SLUGS = [section.slug for section in SECTIONS]


@pytest.fixture(scope="module")
def results(demo_report) -> dict[str, dict]:
    out, _ = demo_report
    data = json.loads((out / "results.json").read_text())
    return {section["slug"]: section for section in data["sections"]}


def _caption(section: dict, image: str) -> str:
    return next(f["caption"] for f in section["figures"] if f["file"].endswith(image))


def _claim(section: dict, start: str) -> dict:
    return next(c for c in section["claims"] if c["statement"].startswith(start))


def _traces(items: list[dict]) -> dict[str, dict]:
    return {item["label"]: item for item in items}


def test_demo_writes_every_section_with_its_figures(demo_report):
    out, _ = demo_report
    page = (out / "index.html").read_text()
    for slug in SLUGS:
        assert f'id="{slug}"' in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 12
    for source in sources:
        with Image.open(out / source) as image:
            image.verify()  # a real, complete PNG or GIF
    with Image.open(out / "images" / "race.gif") as gif:
        assert gif.n_frames > 10


def test_the_contents_number_each_section_once_and_the_page_links_the_playground(demo_report):
    out, _ = demo_report
    page = (out / "index.html").read_text()
    contents = re.search(r"<nav><ol>(.*?)</ol></nav>", page, re.S).group(1)
    items = re.findall(r"<li><a [^>]*>([^<]*)</a></li>", contents)
    assert items[0] == "Ill-conditioning: the ravine"  # the <ol> numbers it
    assert not any(re.match(r"\d", item) for item in items)
    headings = re.findall(r"<h2>([^<]*)</h2>", page)
    assert headings[:2] == ["1. Ill-conditioning: the ravine", "2. Saddle points"]
    assert "<code>descend playground</code>" in page
    assert 'id="zoom"' in page and "zoom-in" in page  # figures enlarge on a click


def test_the_progress_total_is_the_runs_the_tour_makes(results):
    quick = TourSettings(quick=True)
    assert list(results) == SLUGS  # the report's order is the registry's
    for section in SECTIONS:
        assert results[section.slug]["runs"] == section.runs(quick), section.slug
    assert sum(section["runs"] for section in results.values()) == total_runs(quick)


def test_demo_results_hold_the_tables_and_the_rate_comparison(results):
    ravine = results["ravine"]
    titles = [t["title"] for t in ravine["tables"]]
    assert any(t.startswith("Steps until the loss stays below 1e-06") for t in titles)
    rates = next(t for t in ravine["tables"] if t["title"].startswith("Linear rate"))
    assert {row[0] for row in rates["rows"]} == {"10", "100", "1000"}
    for row in rates["rows"]:
        assert float(row[-1].rstrip("%")) < 5.0  # measured within a few percent of theory


def test_every_step_count_header_says_the_loss_stays_below(results):
    for section in results.values():
        for table in section["tables"]:
            for column in table["columns"]:
                if column.startswith("steps") and "iteration" not in column:
                    assert "stays" in column, (table["title"], column)


def test_race_step_counts_are_where_the_loss_stays_below(results):
    traces = _traces(results["ravine"]["data"]["traces"])
    table = results["ravine"]["tables"][0]
    assert "stays below 0.001" in table["columns"][2]
    for row in table["rows"]:
        excess = np.array(traces[row[0]]["loss"])
        above = np.flatnonzero(excess > 1e-3)
        expected = "-" if above[-1] == len(excess) - 1 else str(above[-1] + 1)
        assert row[2] == expected, row


def _evidence(section: dict) -> str:
    """Every claim's evidence in a section: where its measured numbers are stated."""
    return " ".join(claim["evidence"] for claim in section["claims"])


def _table(section: dict, start: str) -> dict:
    return next(t for t in section["tables"] if t["title"].startswith(start))


def test_the_ravine_claims_state_what_the_race_shows(results):
    section = results["ravine"]
    caption = _evidence(section)
    across = {name: np.array(values) for name, values in section["data"]["across_valley"].items()}
    signs = np.sign(across["SGD"][:21])
    flips = int(np.sum(signs[1:] != signs[:-1]))
    assert f"changes sign at {flips} of its first 20 steps" in caption
    traces = _traces(section["data"]["traces"])
    excess = {name: trace["loss"][-1] for name, trace in traces.items()}
    assert f"{excess['SGD']:.3g} for SGD" in caption
    assert f"{excess['Nesterov']:.3g} for Nesterov" in caption
    claim = _claim(section, "momentum and Nesterov get further")
    assert claim["holds"] == (
        excess["Nesterov"] < excess["SGD"] and excess["Momentum"] < excess["SGD"]
    )


def test_the_100d_saddle_caption_states_the_measured_distances(results):
    section = results["saddle"]
    caption = _caption(section, "saddle_nd_distance.png")
    distances = {name: np.array(d) for name, d in section["data"]["distance_100d"].items()}
    steps = len(distances["SGD"]) - 1
    final = re.search(
        rf"After {steps} steps the distances are: ([^.]*\.\d\d(?:[^.]*\.\d\d)*)", caption
    ).group(1)
    stated = {name: float(value) for name, value in re.findall(r"([A-Za-z+]+) (\d+\.\d\d)", final)}
    assert stated.keys() == distances.keys()
    for name, value in stated.items():
        assert value == pytest.approx(distances[name][-1], abs=0.005)
    wells = section["data"]["wells_distance"]
    assert f"The minima lie {wells:.2f} from the saddle" in caption
    for name, d in distances.items():
        beyond = np.flatnonzero(d > section["data"]["near"])
        text = f"{name} step {beyond[0]}" if beyond.size else f"{name} not within {steps} steps"
        assert text in _evidence(section)
    leave = {name: np.flatnonzero(d > 0.1)[0] for name, d in distances.items()}
    others = max(step for name, step in leave.items() if name != "SGD")
    assert _claim(section, "in high dimensions SGD")["holds"] == (leave["SGD"] > 2 * others)


def test_the_minima_claims_state_where_each_run_ends(results):
    section = results["minima"]
    barrier = section["data"]["double_well_barrier_x"]
    ends = {t["label"]: t["trajectory"][-1] for t in section["data"]["double_well"]}
    deep = [name for name, end in ends.items() if end[0] < barrier]
    shallow = [name for name, end in ends.items() if end[0] >= barrier]
    caption = _evidence(section)
    for name in deep:
        assert name in caption.split("Ending in the deep well: ")[1].split(";")[0]
    for name in shallow:
        assert name in caption.split("in the shallow one: ")[1]
    claim = _claim(section, "plain gradient descent settles in the nearer")
    assert claim["holds"] == ("SGD" in shallow and {"Momentum", "Nesterov"} <= set(deep))

    caption = _claim(section, "plain gradient descent stays in the first dip")["evidence"]
    rastrigin = {
        t["label"]: tuple(int(v) for v in np.round(t["trajectory"][-1]))
        for t in section["data"]["rastrigin"]
    }
    start = (3, -2)  # the lattice point next to (2.7, -2.16)
    stayers = caption.split(f" in the dip at {start}")[0]
    for name, dip in rastrigin.items():
        if dip == start:
            assert name in stayers
        else:
            assert name not in stayers and f"{name} (to the dip at {dip}" in caption
    assert _claim(section, "plain gradient descent stays in the first dip")["holds"] == (
        rastrigin["SGD"] == start
    )


def test_the_noise_tables_state_the_measured_floors(results):
    section = results["noise"]
    sgd = section["data"]["traces"][0]
    excess = np.array(sgd["loss"]) - sgd["minimum_value"]
    averaged = np.array(sgd["averaged_loss"]) - sgd["minimum_value"]
    tail = len(excess) // 4
    raw, smooth = excess[-tail:].mean(), averaged[-tail:].mean()
    sgd_row = _table(section, "Batch 4")["rows"][0]
    assert float(sgd_row[2]) == pytest.approx(raw, rel=1e-3)
    assert float(sgd_row[3]) == pytest.approx(smooth, rel=1e-3)
    assert _claim(section, "averaging the weights goes below")["holds"] == (smooth < raw)
    floors = [
        np.mean((np.array(t["loss"]) - t["minimum_value"])[-tail:])
        for t in section["data"]["batch_traces"]
    ]
    rows = _table(section, "Gradient noise against batch size")["rows"]
    for row, batch, floor in zip(rows, (1, 4, 16, 64, 256), floors, strict=True):
        assert row[0] == str(batch) and float(row[3]) == pytest.approx(floor, rel=1e-3)


def test_every_claim_is_shown_and_quick_settings_say_so(demo_report, results):
    out, printed = demo_report
    page = (out / "index.html").read_text()
    assert "Quick settings" in page
    for section in results.values():
        for claim in section["claims"]:
            marker = "" if claim["holds"] else "Not shown by this run: "
            assert f"{marker}{claim['statement']}".replace("'", "&#x27;") in page
            if not claim["holds"]:
                assert claim["statement"] in printed


def test_demo_terminal_summary_prints_every_section(demo_report):
    _, printed = demo_report
    for section in SECTIONS:
        assert section.title in printed
    assert "Steps until the loss stays below 1e-06" in printed and "predicts" in printed
    assert "Report written to" in printed and "descend playground" in printed


def test_demo_refuses_a_file_as_output_folder(tmp_path: Path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["demo", "--out", str(target)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is not a folder" in error


def test_demo_compares_first_and_second_order_methods(demo_report, results):
    out, printed = demo_report
    page = (out / "index.html").read_text()
    section = page[page.index('id="orders"') :]
    for name in ("orders_convergence.png", "orders_close_up.png", "orders_minibatch.png"):
        assert f'src="images/{name}"' in section
        with Image.open(out / "images" / name) as image:
            image.verify()
    orders = results["orders"]
    full_batch, newton, cost, minibatch = orders["tables"]
    methods = {(row[0], row[1]) for row in full_batch["rows"]}
    assert methods == {
        (problem, method)
        for problem in ("ravine", "digits")
        for method in ("GD", "Nesterov", "Adam", "Newton", "BFGS", "L-BFGS")
    }
    newton_on_ravine = next(row for row in full_batch["rows"] if row[:2] == ["ravine", "Newton"])
    assert newton_on_ravine[3] == "1"
    assert _claim(orders, "Newton's method lands")["holds"]
    assert [row[0] for row in cost["rows"]][1:] == ["1e+04", "1e+05", "1e+06", "1e+08"]
    assert cost["rows"][2][3] == "80 GB"
    assert "L-BFGS, fixed step" in {row[0] for row in minibatch["rows"]}
    assert "Full batch: iterations and wall time" in printed and "Minibatches of" in printed


def _settled(values: np.ndarray, level: float) -> int | None:
    above = np.flatnonzero(values > level)
    if above.size and above[-1] == len(values) - 1:
        return None
    return int(above[-1]) + 1 if above.size else 0


def test_the_2d_saddle_claim_states_the_measured_escapes(results):
    section = results["saddle"]
    caption = _claim(section, "momentum and the adaptive methods leave")["evidence"]
    steps = {}
    for trace in section["data"]["traces_2d"]:
        steps[trace["label"]] = _settled(np.array(trace["loss"]), -1.0)
        assert f"{trace['label']} step {steps[trace['label']]}" in caption
    claim = _claim(section, "momentum and the adaptive methods leave")
    assert claim["holds"] == all(
        step < steps["SGD"] for name, step in steps.items() if name != "SGD"
    )


def test_the_decay_table_states_the_measured_floors(results):
    section = results["decay"]
    rows = _table(section, "Schedules")["rows"]
    caption = _caption(section, "decay.png")
    assert not re.search(r"\d\.\d", caption)  # the numbers are in the table, said once
    for name, traces in section["data"].items():
        floors = {}
        for trace in traces:
            excess = np.array(trace["loss"]) - trace["minimum_value"]
            floors[trace["label"]] = excess[-(len(excess) // 4) :].mean()
            row = next(r for r in rows if r[0] == name and r[2].startswith(trace["label"]))
            assert float(row[4]) == pytest.approx(floors[trace["label"]], rel=1e-3)
        decayed = [floor for label, floor in floors.items() if label != "constant"]
        assert min(decayed) < floors["constant"] or not _claim(section, "a decayed")["holds"]


def test_the_classics_caption_names_the_runs_that_settle(results):
    section = results["classics"]
    caption = _caption(section, "classics.png")
    titles = {
        "rosenbrock": "Rosenbrock's function",
        "beale": "Beale's function",
        "booth": "Booth's function",
    }
    for name, title in titles.items():
        part = caption.split(f"on {title}, ")[1].split(";")[0].rstrip(".")
        settled = {
            t["label"]
            for t in section["data"][name]
            if _settled(np.array(t["loss"]), 1e-6) is not None
        }
        named = set() if part == "none" else set(re.split(r", | and ", part))
        assert named == settled, (title, part)


def test_the_second_order_captions_state_the_measured_iterations(results):
    section = results["orders"]
    rows = {(row[0], row[1]): row for row in section["tables"][0]["rows"]}
    newton = rows[("ravine", "Newton")][3]
    caption = _caption(section, "orders_convergence.png")
    assert f"after {newton} iteration" in caption
    floors = [float(row[5]) for row in section["tables"][3]["rows"]]
    caption = _caption(section, "orders_minibatch.png")
    stated = float(re.search(r"stays at (\S+) or above", caption).group(1))
    assert stated == pytest.approx(min(floors), rel=2e-3)  # the table shows 4 digits
