import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from tests.conftest import IMAGENET_SAMPLES, needs_imagenet_samples
from tests.study.test_analysis import synthetic_table
from tests.study_helpers import labelled_images, small_study
from wmprobe.reporting import build_report
from wmprobe.reporting import figures as F
from wmprobe.reporting.browser import load_page
from wmprobe.study import analysis

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="headless Chromium is not installed (apt-get install -y chromium)",
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    images = labelled_images(tmp_path_factory.mktemp("labelled"))
    return small_study(images, tmp_path_factory.mktemp("study"))


def _runs(root: Path) -> dict[str, Path]:
    if (root / "run.json").is_file():
        return {json.loads((root / "run.json").read_text())["model"]: root}
    return {p.name: p for p in sorted((root / "models").iterdir()) if (p / "run.json").is_file()}


def check_figure_csvs_match_tables(root: Path, figures_dir: Path) -> list[str]:
    """Every figure's CSV against the run folders' own files, read here with pandas alone."""
    runs = _runs(root)
    units = {m: pd.read_parquet(p / "units.parquet") for m, p in runs.items()}
    checked = []
    for csv in sorted(figures_dir.glob("*.csv")):
        data = pd.read_csv(csv, keep_default_na=False)
        key = csv.stem
        if key in ("sensitive_logits", "sensitive_features"):
            for row in data.itertuples():
                t = units[row.model]
                d = t[(t.scenario == row.scenario) & (t.layer == row.layer)]["d"]
                assert row.count == int((d > row.threshold).sum()) and row.units == len(d)
                assert row.share == pytest.approx(row.count / len(d))
                if (runs[row.model] / "counts.csv").is_file():  # an audit writes it
                    saved = pd.read_csv(runs[row.model] / "counts.csv")
                    saved = saved[(saved.scenario == row.scenario) & (saved.layer == row.layer)]
                    assert saved[f"d>{row.threshold:g}"].item() == row.count
        elif key.startswith("classes_"):
            scenario = key[len("classes_") :]
            logits = {
                m: t[(t.layer == "logits") & (t.scenario == scenario)].set_index("unit")
                for m, t in units.items()
            }
            mean = pd.concat([v["auc"] for v in logits.values()], axis=1).mean(axis=1)
            for row in data.itertuples():
                assert row.auc == logits[row.model].loc[row.unit, "auc"]
                assert row.class_name == logits[row.model].loc[row.unit, "class_name"]
                assert row.mean_auc == pytest.approx(mean.loc[row.unit], abs=1e-12)
            k = int(data["rank"].max())
            top = data[data.side == "top"].drop_duplicates("rank").sort_values("rank")
            assert np.allclose(top["mean_auc"], np.sort(mean.to_numpy())[::-1][:k])
        elif key == "accuracy":
            for row in data.itertuples():
                saved = pd.read_csv(runs[row.model] / "accuracy.csv").set_index("variant")
                assert row.top1 == saved.loc[row.variant, "top1"]
                preds = pd.read_parquet(runs[row.model] / "predictions.parquet")
                assert row.top1 == pytest.approx(
                    (preds[f"pred_{row.variant}"] == preds.label).mean()
                )
                assert row.drop == pytest.approx(saved.loc["clean", "top1"] - row.top1)
        elif key == "depth_profile":
            for row in data.itertuples():
                t = units[row.model]
                d = t[(t.scenario == row.scenario) & (t.layer == row.layer)]["d"]
                assert row.count == int((d > 0.9).sum()) and row.share == pytest.approx(
                    d.gt(0.9).mean()
                )
        elif key.startswith("units_"):
            top = pd.read_parquet(runs[key[len("units_") :]] / "top_images.parquet")
            merged = data.merge(
                top, on=["scenario", "layer", "unit", "image_rank"], suffixes=("", "_t")
            )
            assert len(merged) == len(data) > 0
            for c in ("clean", "probe", "change", "d"):
                assert (merged[c] == merged[f"{c}_t"]).all(), c
            assert data["text_matches"].all()
        elif key.startswith("where_"):  # explain's overlays: the rows of localization.parquet
            model = next(m for m in runs if key.startswith(f"where_{m}_"))
            rows = pd.read_parquet(runs[model] / "explain" / "localization.parquet")
            merged = data.merge(rows, on=["scenario", "layer", "unit", "method", "image_id"])
            assert len(merged) == len(data) > 0
            for c in ("mass", "clean_mass", "chance", "box_left", "box_top"):
                csv_values = pd.to_numeric(merged[f"{c}_x"], errors="coerce")  # NaN is read as ""
                assert np.allclose(csv_values, merged[f"{c}_y"], equal_nan=True), c
        elif key.startswith("sheet_"):
            assert data["text"].astype(str).str.len().gt(0).all() and data["image_id"].is_unique
        else:
            raise AssertionError(f"no check for the figure CSV {csv.name}")
        checked.append(key)
    return checked


@pytest.mark.slow
def test_every_figure_csv_equals_the_tables(study):
    figures_dir = study.out / "report" / "figures"
    checked = check_figure_csvs_match_tables(study.out, figures_dir)
    assert {"sensitive_logits", "sensitive_features", "accuracy"} <= set(checked)
    expected = {"classes_chinese", "classes_numerals", "sheet_chinese", "units_tiny_imagenet_net"}
    assert expected <= set(checked)
    for key in ("sensitive_logits", "classes_chinese", "accuracy"):
        assert (figures_dir / f"{key}.svg").read_text().lstrip().startswith("<?xml")
        assert Image.open(figures_dir / f"{key}.png").size[0] > 300


@pytest.mark.slow
def test_report_lists_skipped_models_and_is_self_contained(study):
    html = study.report_html.read_text()
    assert "no_such_net" in html and "UnknownModelError" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script src" not in html and 'rel="stylesheet"' not in html
    assert html.count('<figure class="wm"') == len(
        list((study.out / "report/figures").glob("*.csv"))
    )
    assert "wmprobe reproduce" in html or "study command" in html


@pytest.mark.slow
def test_report_of_block_layers_and_extra_columns(tmp_path):
    table = synthetic_table(models=("m1",), scenarios=("chinese",))
    table.to_parquet(tmp_path / "units.parquet")
    (tmp_path / "run.json").write_text(
        json.dumps({"model": "m1", "images": str(tmp_path / "gone"), "scenarios": ["chinese"]})
    )
    report = build_report(tmp_path, k=4)
    assert "depth_profile" in report.figures
    assert any("not here" in note for note in report.notes)  # no image folder, said so
    assert any("no top_images" in note for note in report.notes)
    checked = check_figure_csvs_match_tables(tmp_path, tmp_path / "report" / "figures")
    assert "depth_profile" in checked and "classes_chinese" in checked
    ranking = pd.read_csv(tmp_path / "report/figures/classes_chinese.csv")
    assert {"ci_low", "ci_high"} <= set(ranking.columns)


def test_figures_are_figures_and_bad_input_is_named():
    table = synthetic_table()
    counts = analysis.sensitive_counts(table)
    ranking = analysis.class_ranking(table, k=5)
    profile = analysis.depth_profile(table)
    acc = pd.DataFrame({"model": ["a", "a"], "variant": ["clean", "latin"], "top1": [0.8, 0.6]})
    made = [
        F.class_auc_figure(ranking, "latin"),
        F.sensitive_units_figure(counts, "logits", "count"),
        F.sensitive_units_figure(counts, "features", "share"),
        F.accuracy_figure(acc),
        F.depth_profile_figure(profile),
        F.image_grid_figure([[Image.new("RGB", (224, 224))]], [["x"]]),
    ]
    assert all(isinstance(f, Figure) for f in made)
    assert len(made[1].axes) == 2  # one panel per scenario
    with pytest.raises(ValueError, match="scenario"):
        F.class_auc_figure(ranking, "elvish")
    with pytest.raises(ValueError, match="`value`"):
        F.sensitive_units_figure(counts, "logits", "percent")
    with pytest.raises(ValueError, match="empty"):
        F.depth_profile_figure(profile.iloc[:0])
    with pytest.raises(ValueError, match="shape of `rows`"):
        F.image_grid_figure([[Image.new("RGB", (9, 9))]], [["a", "b"]])


@needs_chromium
@pytest.mark.slow
def test_report_loads_in_headless_chromium_with_every_figure(study):
    page = load_page(study.report_html)
    assert page.console == []
    body = re.search(r"<body[^>]*>", page.dom).group(0)
    n = html_figures = study.report_html.read_text().count('<figure class="wm"')
    assert html_figures >= 8
    assert f'data-figures="{n}"' in body and f'data-figures-loaded="{n}"' in body, body
    assert 'data-errors="0"' in body


@needs_chromium
@pytest.mark.slow
def test_tables_sort_when_a_header_is_clicked(study, tmp_path):
    html = study.report_html.read_text()
    probe = (
        "<script>window.addEventListener('load', function () {"
        "var t = document.querySelectorAll('#sensitive table.sortable')[0];"
        "var th = t.querySelectorAll('th')[5]; th.click(); th.click();"  # count, descending
        "var v = Array.prototype.map.call(t.tBodies[0].rows, function (r) {"
        "return r.cells[5].getAttribute('data-v'); });"
        "document.body.setAttribute('data-sorted', v.join(','));});</script></body>"
    )
    page = tmp_path / "sort.html"
    page.write_text(html.replace("</body>", probe))
    loaded = load_page(page)
    values = [int(v) for v in re.search(r'data-sorted="([^"]*)"', loaded.dom).group(1).split(",")]
    assert len(values) > 4 and values == sorted(values, reverse=True)
    assert loaded.console == []


@needs_imagenet_samples()
@pytest.mark.slow
def test_real_data_study_report(tmp_path):
    result = small_study(
        IMAGENET_SAMPLES, tmp_path, models=["efficientnet_lite0"], scenarios=["chinese"], limit=12
    )
    assert result.statuses["efficientnet_lite0"].status == "audited"
    checked = check_figure_csvs_match_tables(tmp_path, tmp_path / "report" / "figures")
    assert "classes_chinese" in checked and "accuracy" in checked
    ranking = pd.read_csv(tmp_path / "report/figures/classes_chinese.csv")
    assert ranking["class_name"].str.len().gt(0).all() and ranking["unit"].between(0, 999).all()
    if shutil.which("chromium"):
        page = load_page(result.report_html)
        assert page.console == [] and 'data-errors="0"' in page.dom
