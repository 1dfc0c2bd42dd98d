"""``descend demo`` end to end, on reduced settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image

from descend.cli.main import main

SECTIONS = ["ravine", "saddle", "minima", "noise", "decay", "classics", "orders"]


def test_demo_writes_every_section_with_its_figures(demo_report):
    out, _ = demo_report
    page = (out / "index.html").read_text()
    for slug in SECTIONS:
        assert f'id="{slug}"' in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 12
    for source in sources:
        path = out / source
        with Image.open(path) as image:
            image.verify()  # a real, complete PNG or GIF
    with Image.open(out / "images" / "race.gif") as gif:
        assert gif.n_frames > 10


def test_demo_results_hold_the_tables_and_the_rate_comparison(demo_report):
    out, _ = demo_report
    results = json.loads((out / "results.json").read_text())
    assert [s["slug"] for s in results["sections"]] == SECTIONS
    ravine = results["sections"][0]
    titles = [t["title"] for t in ravine["tables"]]
    assert any(t.startswith("Steps to loss 1e-6") for t in titles)
    rates = next(t for t in ravine["tables"] if t["title"].startswith("Linear rate"))
    kappas = {row[0] for row in rates["rows"]}
    assert kappas == {"10", "100", "1000"}
    for row in rates["rows"]:
        assert float(row[-1].rstrip("%")) < 5.0  # measured within a few percent of theory


def test_demo_terminal_summary_prints_every_section(demo_report):
    _, printed = demo_report
    for title in ("Ill-conditioning", "Saddle points", "Local minima", "Noisy gradients",
                  "Learning-rate decay", "classics", "First-order versus second-order"):
        assert title in printed
    assert "Steps to loss 1e-6" in printed and "predicts" in printed
    assert "Report written to" in printed


def test_demo_refuses_a_file_as_output_folder(tmp_path: Path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["demo", "--out", str(target)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is not a folder" in error


def test_demo_compares_first_and_second_order_methods(demo_report):
    out, printed = demo_report
    page = (out / "index.html").read_text()
    section = page[page.index('id="orders"'):]
    for name in ("orders_convergence.png", "orders_close_up.png", "orders_minibatch.png"):
        assert f'src="images/{name}"' in section
        with Image.open(out / "images" / name) as image:
            image.verify()
    orders = json.loads((out / "results.json").read_text())["sections"][-1]
    full_batch, newton, cost, minibatch = orders["tables"]
    methods = {(row[0], row[1]) for row in full_batch["rows"]}
    assert methods == {(problem, method) for problem in ("ravine", "digits")
                       for method in ("GD", "Nesterov", "Adam", "Newton", "BFGS", "L-BFGS")}
    newton_on_ravine = next(row for row in full_batch["rows"] if row[:2] == ["ravine", "Newton"])
    assert newton_on_ravine[3] == "1"
    assert [row[0] for row in cost["rows"]][1:] == ["1e+04", "1e+05", "1e+06", "1e+08"]
    assert cost["rows"][2][3] == "80 GB"
    assert "L-BFGS, fixed step" in {row[0] for row in minibatch["rows"]}
    assert "Full batch: iterations and wall time" in printed and "Minibatches of" in printed
