"""The ablation study: `apply --each` writes one variant per position, `check A B ...` compares them in one
table (terminal, markdown, csv, latex, json)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import EXAMPLE, ROOT, check_yaml, contract_inserted, graph, run_cli
from rich.console import Console

from yolopatch.build.bench import Conditions, Latency, bench_on_device, time_models
from yolopatch.render.comparison import comparison_rows, comparison_table, comparison_text
from yolopatch.report import ModelReport


def _model(tmp_path):
    path = tmp_path / "yolov5s.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    return path


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_each_writes_one_variant_per_position_named_after_it(tmp_path):
    model = _model(tmp_path)
    result = run_cli("apply", str(model), "--layers", "backbone:C3", "--insert", "--op", "cbam", "--each")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in tmp_path.glob("yolov5s-cbam-L*.yaml"))
    assert names == [
        "yolov5s-cbam-L2.yaml",
        "yolov5s-cbam-L4.yaml",
        "yolov5s-cbam-L6.yaml",
        "yolov5s-cbam-L8.yaml",
    ]
    for name in names:
        layer = int(name.split("-L")[1].split(".")[0])
        contracted, inserted = contract_inserted(graph(EXAMPLE), graph((tmp_path / name).read_text()), "CBAM")
        assert contracted == graph(EXAMPLE) and inserted == [layer + 1], name
    assert f"Next: yolopatch check {model} {tmp_path / 'yolov5s-cbam-L*.yaml'}" in result.stdout


def test_each_replaces_too_and_skips_what_a_section_selection_skips(tmp_path):
    model = _model(tmp_path)
    result = run_cli("apply", str(model), "--layers", "head", "--op", "involution", "--each")
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in tmp_path.glob("yolov5s-involution-L*.yaml"))
    assert written and all(
        graph((tmp_path / n).read_text())[int(n[20:-5])][0] == "Involution" for n in written
    )
    assert "left as it is" in result.stderr  # Concat, Upsample and Detect rows: skipped with a note


def test_each_writes_all_or_nothing_and_a_second_run_writes_nothing(tmp_path):
    model = _model(tmp_path)
    (tmp_path / "yolov5s-cbam-L6.yaml").write_text("someone's own file\n")
    before = _files(tmp_path)
    refused = run_cli("apply", str(model), "-l", "backbone:C3", "--insert", "--op", "cbam", "--each")
    assert (
        refused.returncode == 1 and "yolov5s-cbam-L6.yaml" in refused.stderr and "--force" in refused.stderr
    )
    assert _files(tmp_path) == before
    assert (
        run_cli(
            "apply", str(model), "-l", "backbone:C3", "--insert", "--op", "cbam", "--each", "--force"
        ).returncode
        == 0
    )
    written = _files(tmp_path)
    again = run_cli("apply", str(model), "-l", "backbone:C3", "--insert", "--op", "cbam", "--each")
    assert again.returncode == 0 and "already up to date" in again.stderr and _files(tmp_path) == written


def test_each_with_diff_and_check_writes_nothing(tmp_path):
    model = _model(tmp_path)
    before = _files(tmp_path)
    diff = run_cli("apply", str(model), "-l", "2,4", "--insert", "--op", "se", "--each", "--diff")
    assert diff.returncode == 0 and diff.stdout.count("+++ ") == 2 and _files(tmp_path) == before
    check = run_cli("apply", str(model), "-l", "2,4", "--insert", "--op", "se", "--each", "--check")
    assert check.returncode == 1 and "would write 2 variant(s)" in check.stderr and _files(tmp_path) == before


@pytest.mark.parametrize("extra", [["--in-place"], ["-o", "x.yaml"]], ids=["in-place", "output"])
def test_each_is_a_usage_error_with_one_output_file(tmp_path, extra):
    result = run_cli("apply", str(_model(tmp_path)), "-l", "2,4", "--insert", "--each", *extra)
    assert result.returncode == 2 and "--each" in result.stderr


def _report(name, modules, params, gflops):
    return ModelReport(name, [], modules, params, params, gflops, 0.0, 640, 1, [8.0, 16.0, 32.0])


REPORTS = [
    _report("yolov5s.yaml", 214, 7235389, 16.6228),
    _report("yolov5s-cbam-L4.yaml", 223, 7237673, 16.6274),
    _report("yolov5s-cbam-L8.yaml", 223, 7268801, 16.6753),
]

MARKDOWN = """\
| model | layers | params | Δ params | GFLOPs | Δ GFLOPs |
|:---|---:|---:|---:|---:|---:|
| yolov5s.yaml (reference) | 214 | 7,235,389 | — | 16.62 | — |
| yolov5s-cbam-L4.yaml | 223 | 7,237,673 | +2,284 (+0.03%) | 16.63 | +0.00 (+0.03%) |
| yolov5s-cbam-L8.yaml | 223 | 7,268,801 | +33,412 (+0.46%) | 16.68 | +0.05 (+0.32%) |
"""


def test_markdown_is_a_table_with_the_reference_marked():
    text = comparison_text(comparison_rows(REPORTS), "markdown")
    assert text.startswith(MARKDOWN) and "differences against the reference row" in text


def test_csv_carries_the_raw_numbers():
    lines = comparison_text(comparison_rows(REPORTS), "csv").splitlines()
    assert (
        lines[0]
        == "model,reference,layers,params,params_change,params_change_pct,gflops,gflops_change,gflops_change_pct"
    )
    assert lines[1] == "yolov5s.yaml,True,214,7235389,,,16.6228,,"
    assert lines[3].startswith("yolov5s-cbam-L8.yaml,False,223,7268801,33412,0.461")


def test_latex_is_a_booktabs_tabular_with_escapes():
    text = comparison_text(
        comparison_rows([_report("a_b.yaml", 1, 10, 1.0), _report("c%d.yaml", 2, 20, 2.0)]), "latex"
    )
    assert text.splitlines()[:3] == [
        r"\begin{tabular}{lrrrrr}",
        r"\toprule",
        r"model & layers & params & $\Delta$ params & GFLOPs & $\Delta$ GFLOPs \\",
    ]
    assert r"a\_b.yaml (reference) & 1 & 10 & -- & 1.00 & -- \\" in text
    assert r"c\%d.yaml & 2 & 20 & +10 (+100.00\%) & 2.00 & +1.00 (+100.00\%) \\" in text


def _render(width):
    console = Console(width=width, record=True, color_system=None, force_terminal=False)
    console.print(comparison_table(comparison_rows(REPORTS), width))
    return console.export_text()


GOLDEN_100 = """\
┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━┓
┃ model                ┃ layers ┃    params ┃         Δ params ┃ GFLOPs ┃       Δ GFLOPs ┃
┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━┩
│ yolov5s.yaml         │    214 │ 7,235,389 │                — │  16.62 │              — │
│ yolov5s-cbam-L4.yaml │    223 │ 7,237,673 │  +2,284 (+0.03%) │  16.63 │ +0.00 (+0.03%) │
│ yolov5s-cbam-L8.yaml │    223 │ 7,268,801 │ +33,412 (+0.46%) │  16.68 │ +0.05 (+0.32%) │
└──────────────────────┴────────┴───────────┴──────────────────┴────────┴────────────────┘
"""

GOLDEN_80 = """\
┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━┓
┃ model                ┃ layers ┃    params ┃ Δ params ┃ GFLOPs ┃ Δ GFLOPs ┃
┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━┩
│ yolov5s.yaml         │    214 │ 7,235,389 │        — │  16.62 │        — │
│ yolov5s-cbam-L4.yaml │    223 │ 7,237,673 │   +2,284 │  16.63 │    +0.00 │
│ yolov5s-cbam-L8.yaml │    223 │ 7,268,801 │  +33,412 │  16.68 │    +0.05 │
└──────────────────────┴────────┴───────────┴──────────┴────────┴──────────┘
"""


@pytest.mark.parametrize(("width", "golden"), [(100, GOLDEN_100), (80, GOLDEN_80)], ids=["100", "80"])
def test_the_terminal_table_fits_without_wrapping_a_name_or_a_number(width, golden):
    text = _render(width)
    assert text.startswith(golden)
    assert all(len(line) <= width for line in text.splitlines()[: golden.count("\n")])


def test_check_compares_several_models_with_the_numbers_of_each(tmp_path):
    model = _model(tmp_path)
    assert run_cli("apply", str(model), "-l", "4,8", "--insert", "--op", "cbam", "--each").returncode == 0
    variants = sorted(tmp_path.glob("yolov5s-cbam-L*.yaml"))
    result = run_cli("check", str(model), *map(str, variants), "--img", "64", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for path, row in zip([model, *variants], data["comparison"], strict=True):
        assert row["params"] == check_yaml(path.read_text(), str(path), 64, 1).params
    assert [row["reference"] for row in data["comparison"]] == [True, False, False]
    assert data["comparison"][1]["params_change"] == data["comparison"][1]["params"] - 7235389


class _FakeClock:
    """Each call returns the next of the given times: a timing's length is what the test says."""

    def __init__(self, ticks):
        self.ticks = iter(ticks)

    def __call__(self):
        return next(self.ticks)


class _Recorder(torch.nn.Module):
    def __init__(self, name, calls):
        super().__init__()
        self.name, self.calls = name, calls

    def forward(self, x):
        self.calls.append(self.name)
        return x


def test_every_model_is_warmed_up_then_timed_in_turns_with_a_median_and_quartiles():
    calls: list[str] = []
    models = {"a": _Recorder("a", calls), "b": _Recorder("b", calls)}
    # per run: a then b; durations a = 10, 20, 30 ms and b = 1, 2, 3 ms
    durations = [0.010, 0.001, 0.020, 0.002, 0.030, 0.003]
    ticks = [t for d in durations for t in (0.0, d)]
    synced: list[int] = []
    result = time_models(
        models,
        torch.zeros(1),
        warmup=2,
        runs=3,
        clock=_FakeClock(ticks),
        synchronize=lambda: synced.append(1),
    )
    assert calls == ["a", "b", "a", "b"] + ["a", "b"] * 3  # warm-up of both first, then turns
    assert len(synced) == 1 + 6  # once after the warm-up, after every timed forward
    assert result["a"] == Latency(20.0, 15.0, 25.0) and result["b"] == Latency(2.0, 1.5, 2.5)
    assert result["a"].fps == pytest.approx(50.0)


def test_the_conditions_label_says_what_was_measured_and_what_was_not():
    label = Conditions("cpu", "float32", 2, 1, 640, True, 10, 50).label()
    assert label == (
        "model forward only (no pre-processing, no NMS), cpu, 2 thread(s), float32, batch 1, 640x640, fused; "
        "median of 50 runs after 10 warm-up, models timed in turns"
    )


def test_fp16_timing_on_a_cpu_is_refused():
    with pytest.raises(ValueError, match="fp16 timing needs CUDA"):
        bench_on_device({"m": torch.nn.Identity()}, 32, 1, "cpu", True, False, 5)


def test_check_bench_and_fused_in_one_table(tmp_path):
    model = _model(tmp_path)
    assert run_cli("apply", str(model), "-l", "8", "--insert", "--op", "se", "--each").returncode == 0
    variant = tmp_path / "yolov5s-se-L8.yaml"
    result = run_cli(
        "check", str(model), str(variant), "--img", "64", "--fused", "--bench", "--runs", "5", "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    conditions = data["latency_conditions"]
    assert (
        conditions["device"],
        conditions["batch"],
        conditions["img"],
        conditions["fused"],
        conditions["runs"],
    ) == ("cpu", 1, 64, True, 5)
    base, se = data["comparison"]
    assert (base["fused_layers"], base["fused_params"]) == (157, 7225885)  # YOLOv5 v7.0's fused yolov5s
    assert se["fused_params"] - base["fused_params"] == se["params"] - base["params"]  # SE has no BatchNorm
    assert all(row["latency_q1_ms"] <= row["latency_ms"] <= row["latency_q3_ms"] for row in (base, se))


def test_bench_with_a_yolov5_checkout_is_refused_before_any_build(tmp_path):
    result = run_cli("check", str(_model(tmp_path)), "--repo", str(tmp_path), "--bench")
    assert (
        result.returncode == 1 and "--bench builds YOLOv5 yamls with yolopatch's own builder" in result.stderr
    )


def test_fused_and_bench_compare_one_family_at_a_time(tmp_path):
    other = tmp_path / "yolov8n.yaml"
    other.write_text(
        (ROOT / "tests" / "fixtures" / "ultralytics" / "scales.yaml").read_text(), encoding="utf-8"
    )
    result = run_cli("check", str(_model(tmp_path)), str(other), "--fused")
    assert result.returncode == 1 and "mix YOLOv5 and ultralytics yamls" in result.stderr
