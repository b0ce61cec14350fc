"""docs/beyond.md is its data rendered: every number on the committed page equals what render.py reads, and each
word of an answer follows a rule whose false-positive rate is measured here in simulation."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "beyond.md"
DATA = ROOT / "docs" / "beyond"
NUMBER = re.compile(r"(?<![\w.\-])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?%?(?![\w.]\w)")
"""A number as the page writes it (``0.937``, ``+0.015``, ``93.75%``), not a digit inside a name (MLP7, hidden2)."""


@pytest.fixture(scope="module")
def render():
    spec = importlib.util.spec_from_file_location("render_beyond", DATA / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seeds(model: str) -> list[dict]:
    return [json.loads((DATA / f"{model}_seed{s}.json").read_text()) for s in range(5)]


def test_every_number_on_the_committed_page_is_rendered_from_its_source(render):
    rendered, committed = render.render(), PAGE.read_text()
    new, old = NUMBER.findall(rendered), NUMBER.findall(committed)
    differ = [(i, a, b) for i, (a, b) in enumerate(zip(old, new)) if a != b]
    assert len(old) == len(new) and not differ, (
        f"{len(differ)} of {len(old)} numbers on docs/beyond.md differ from its data (index, page, data): "
        f"{differ[:5]}; run `python docs/beyond/render.py`")
    assert committed == rendered, "the words of docs/beyond.md differ from its template; run docs/beyond/render.py"
    assert len(old) >= 1000  # the page is made of numbers: this test checks each of them


def test_page_numbers_agree_with_an_independent_reading_of_the_json(render):
    page = PAGE.read_text()
    mlp3 = seeds("mlp3")
    before = np.sort([s["interventions_test_set"]["baseline"] for s in mlp3])
    rewound = [s["interventions_test_set"]["rewind"][list(s["interventions_test_set"]["rewind"])[1]] for s in mlp3]
    after = np.sort(rewound)
    up = sum(r > s["interventions_test_set"]["baseline"] for r, s in zip(rewound, mlp3))
    assert (f"{before[2]:.3f} [{before[0]:.3f}, {before[4]:.3f}] before, {after[2]:.3f} [{after[0]:.3f}, "
            f"{after[4]:.3f}] after") in page
    assert f"up in {up} of 5 seeds" in page
    mlp7 = seeds("mlp7")
    flags = [s["probes"]["at_phases"]["noisy_memorised"]["hidden1"]["noisy_original"]["decodable"] for s in mlp7]
    accuracy = np.sort([s["probes"]["at_phases"]["noisy_memorised"]["hidden1"]["noisy_original"]["accuracy"]
                        for s in mlp7])
    assert f"hidden1 {accuracy[2]:.2f} [{accuracy[0]:.2f}, {accuracy[4]:.2f}], {sum(flags)} of 5" in page
    settled = np.sort([s["similarity"]["settled_epoch"]["hidden1"] for s in mlp7])
    assert f"settled epoch: hidden1 {settled[2]:.0f} [{settled[0]:.0f}, {settled[4]:.0f}]" in page
    between = json.loads((DATA / "mlp5_between.json").read_text())
    cka = np.sort([pair["cka_same"]["output"] for pair in between.values()])
    assert f"output {np.median(cka):.2f} [{cka[0]:.2f}, {cka[-1]:.2f}]." in page


def test_a_changed_source_changes_the_page(render, tmp_path):
    data = tmp_path / "beyond"
    shutil.copytree(DATA, data, ignore=shutil.ignore_patterns("*.py", "*.j2", "__pycache__"))
    for s in (0, 1):  # planted: hidden1 of MLP3 decodable in 3 of 5 seeds only -> "mixed"
        path = data / f"mlp3_seed{s}.json"
        numbers = json.loads(path.read_text())
        numbers["probes"]["at_phases"]["noisy_memorised"]["hidden1"]["noisy_original"]["decodable"] = False
        path.write_text(json.dumps(numbers))
    flags = [json.loads((data / f"mlp3_seed{s}.json").read_text())["probes"]["at_phases"]["noisy_memorised"]["hidden1"]
             ["noisy_original"]["decodable"] for s in range(5)]
    row = render.render(data=data).split("| MLP3 | hidden1 **")[1].split("|")[0]
    assert row.startswith(render.decodable_words(flags) + "**") and render.decodable_words(flags) != "decodable"


@pytest.mark.parametrize(("flags", "words"), [
    ([True] * 5, "decodable"), ([True] * 4 + [False], "decodable"), ([True] * 3 + [False] * 2, "mixed"),
    ([False] * 4 + [True], "not shown decodable"), ([False] * 5, "not shown decodable"),
])
def test_decodable_needs_four_fifths_of_the_seeds(render, flags, words):
    assert render.decodable_words(flags) == words


def test_depth_and_order_rules(render):
    layers = ["h1", "h2", "h3", "out"]
    words = {"h1": "decodable", "h2": "not shown decodable", "h3": "mixed", "out": "not shown decodable"}
    assert render.lost_from(layers, words) == "out"
    assert render.lost_from(layers, {**words, "h3": "not shown decodable"}) == "h2"
    assert render.lost_from(layers, {**words, "out": "mixed"}) is None
    ordered = {"h1": 3, "h2": 10, "h3": 10, "out": 40}
    assert render.settle_order_words([ordered] * 4 + [{**ordered, "h1": 12}], layers) == ("bottom-up", 4)
    assert render.settle_order_words([ordered] * 3 + [{**ordered, "h1": 12}] * 2, layers) == ("not bottom-up", 3)


def test_sign_test_against_enumeration(render):
    for differences in ([0.1] * 5, [0.1, 0.2, -0.1, 0.3, 0.4], [0.1, 0.0, 0.2, 0.3, -0.5], [-0.1] * 3 + [0.2] * 2):
        d = np.asarray(differences)
        d = d[d != 0]
        signs = np.array(list(itertools.product([-1, 1], repeat=len(d))))  # every equally likely sign pattern
        expected = np.mean((signs > 0).sum(axis=1) >= (d > 0).sum())
        assert render.sign_test_p(differences, "greater") == pytest.approx(expected)
        assert render.sign_test_p(-np.asarray(differences), "less") == pytest.approx(expected)
    assert render.sign_test_p([0.0] * 5, "greater") == 1.0


def test_ablation_test_against_enumeration(render):
    floor = 1 / 21
    for k in range(6):
        p_values = [floor] * k + [10 / 21] * (5 - k)
        expected = sum(np.prod([floor if i in chosen else 1 - floor for i in range(5)])
                       for m in range(k, 6) for chosen in itertools.combinations(range(5), m))
        assert render.ablation_p(p_values) == pytest.approx(expected)
    with pytest.raises(SystemExit, match="not multiples of 1/21"):
        render.ablation_p([0.05] * 5)


def test_false_positive_rates_of_the_rewind_and_ablation_words_in_simulation(render, tmp_path):
    """Under their nulls, a family says "raises test accuracy" / "matters more" at least once in at most 5% of the
    families (within two standard errors); the committed rates are what the simulation gives."""
    for rate, n in ((render.rewind_null_rate(3000), 3000), (render.ablation_null_rate(500), 500)):
        assert rate <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / n), rate
    render.simulate(tmp_path / "rules_null.txt", n_families=200, n_cells=8)
    small = render.rules_null(tmp_path)
    assert small["families"] == "200" and small["ablation_tests"] == "8"
    assert float(small["ablation_rate"]) == pytest.approx(render.ablation_null_rate(200, n_cells=8), abs=5e-5)
    committed = render.rules_null(DATA)
    assert float(committed["ablation_rate"]) <= 0.05 and float(committed["rewind_rate"]) <= 0.05
    cells = sum(len(rows) for rows in render.context()["ablations"].values())
    assert committed["ablation_tests"] == str(cells)  # simulated with the page's family
