"""minidl-bench: the JSON it writes, references reported absent, the case definitions and the
child-process protocol. Runs use the test-only "tiny" size (a few ms per case)."""

import contextlib
import io
import json
import os
import platform

import numpy as np
import pytest

from minidl.bench import case as case_mod
from minidl.bench import cli, report, runner

ENGINE_STATS = {"min_s", "median_s", "spread", "samples_s", "calls_per_sample", "value_best"}


def run_bench(tmp_path, *args):
    path = tmp_path / "bench.json"
    status = cli.main(["--size", "tiny", "--no-progress", "--json", str(path), *args])
    assert status == 0
    return json.loads(path.read_text())


def check_schema(doc, threads, groups):
    """Every key the JSON promises, with its type."""
    assert doc["schema"] == report.SCHEMA
    assert doc["size"] == "tiny" and doc["threads"] == threads and doc["groups"] == groups
    m = doc["machine"]
    assert isinstance(m["cpu"], str) and m["cpu"]
    assert isinstance(m["logical_cpus"], int) and isinstance(m["cores"], int) and m["cores"] >= 1
    assert {"version", "isa", "thread_pool", "compiler", "numpy"} <= set(m["minidl"])
    assert isinstance(doc["peaks"], dict)
    for isa, value in doc["peaks"].items():
        assert isa == "absent" and isinstance(value, str) or value > 0
    assert set(doc["load"]) == {"before", "after"}
    assert doc["seconds"] > 0
    assert set(doc["engines"]) <= set(case_mod.ENGINES)
    for per_threads in doc["engines"].values():
        assert set(per_threads) == {str(n) for n in threads}
        for hello in per_threads.values():
            assert "version" in hello or "absent" in hello
    expected = [(c.name, n) for n in threads for c in case_mod.cases("tiny", tuple(groups))]
    assert [(r["case"], r["threads"]) for r in doc["results"]] == expected
    for r in doc["results"]:
        assert r["group"] in groups and r["unit"] in ("GFLOP/s", "Gcmp/s", "images/s", "us")
        ours = r["engines"]["minidl"]
        assert ENGINE_STATS <= set(ours), ours
        assert 0 < ours["min_s"] <= ours["median_s"] and ours["min_s"] == min(ours["samples_s"])
        assert len(ours["samples_s"]) == doc["settings"]["rounds"]
        assert ours["value_best"] == pytest.approx(
            case_mod.find(r["case"], "tiny").rate(ours["min_s"])
        )
        for engine, ratio in r["ratios"].items():
            assert ratio == pytest.approx(r["engines"][engine]["min_s"] / ours["min_s"])
        assert r["peak_fraction"] is None or r["peak_fraction"] > 0


@pytest.fixture(scope="module")
def gemm_run(tmp_path_factory):
    """A tiny GEMM and pooling run at 1 and 2 threads: its JSON and printed output."""
    tmp = tmp_path_factory.mktemp("bench")
    path = tmp / "bench.json"
    args = ["--size", "tiny", "--no-progress", "--only", "gemm,pool", "--threads", "1,2"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([*args, "--json", str(path)]) == 0
    return json.loads(path.read_text()), out.getvalue()


def test_json_schema_of_a_tiny_run(gemm_run):
    doc, out = gemm_run
    check_schema(doc, [1, 2], ["gemm", "pool"])
    line = doc["results"][0]
    assert line["case"] == "matmul 32^3"
    assert "numpy" in line["ratios"]  # NumPy is a dependency: always there
    assert "blas" in doc["engines"]["numpy"]["1"]["info"]
    assert "matmul 32^3" in out and "ratio = reference time / minidl time" in out


def test_every_group_runs_at_tiny_size(tmp_path):
    groups = list(case_mod.GROUPS)
    doc = run_bench(tmp_path, "--threads", "1")
    check_schema(doc, [1], groups)
    busy = [r for r in doc["results"] if r["busy"]]
    assert busy and all("busy" in r["engines"]["minidl"] for r in busy)
    assert not [e for r in doc["results"] for e in r["engines"].values() if "error" in e]


@pytest.fixture
def hidden_torch(tmp_path, monkeypatch):
    """A PYTHONPATH entry whose `torch` fails to import, as if PyTorch were not installed: the
    children inherit it, this process is unaffected."""
    fake = tmp_path / "hide" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named torch (hidden by test)')")
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(fake.parent), old) if p))


def test_a_missing_reference_is_reported_absent(tmp_path, hidden_torch, capsys):
    doc = run_bench(tmp_path, "--only", "gemm,lenet", "--threads", "1")
    check_schema(doc, [1], ["gemm", "lenet"])
    assert "hidden by test" in doc["engines"]["torch"]["1"]["absent"]
    for r in doc["results"]:
        assert "absent" in r["engines"]["torch"] and "torch" not in r["ratios"]
        assert "error" not in json.dumps(r["engines"])
    out = capsys.readouterr().out
    assert "reference torch: absent" in out
    assert "absent" in next(line for line in out.splitlines() if line.startswith("matmul 32^3"))


def test_plot_is_a_png(gemm_run, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    report.plot(gemm_run[0], str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert cli.main(["--size", "tiny", "--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install 'minidl[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threads", "0"], "thread counts must be >= 1"),
        (["--threads", "two"], "expected integers"),
        (["--only", "gemm,softmax"], "unknown group(s) softmax"),
        (["--quick", "--full"], "not allowed with"),
    ],
)
def test_bad_arguments_are_refused(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_case_and_size_are_refused():
    with pytest.raises(KeyError, match="no benchmark case 'nope'"):
        case_mod.find("nope", "tiny")
    with pytest.raises(ValueError, match="size must be one of"):
        case_mod.cases("huge")


def test_worker_reports_errors_and_keeps_serving(tmp_path):
    worker = runner.Worker("minidl", 1)
    try:
        hello = worker.read()
        assert hello["version"]
        # minidl is timed with its allocator tuned, as minidl-train runs it (glibc here).
        assert hello["info"]["malloc_tuned"] is (platform.libc_ver()[0] == "glibc")
        answer = worker.request({"op": "setup", "case": "nope", "size": "tiny", "data": "x"})
        assert "no benchmark case" in answer["error"]
        assert "before a successful setup" in worker.request({"op": "sample"})["error"]
        case = case_mod.find("matmul 32^3", "tiny")
        path = runner.data_files([case], str(tmp_path))[case.name]
        setup = {"op": "setup", "case": case.name, "size": "tiny", "data": path}
        assert worker.request({**setup, "warmup": 1, "min_sample_s": 0.001})["number"] >= 1
        assert worker.request({"op": "sample"})["seconds"] > 0
    finally:
        worker.close()
    assert worker.proc.returncode == 0


def test_each_case_gets_its_own_data(tmp_path):
    """Cases sharing a data function share one file; every case's file holds its own data."""
    cases = case_mod.cases("tiny")
    paths = runner.data_files(cases, str(tmp_path))
    assert len(set(paths.values())) < len(cases)
    for case in cases:
        expected = case.data()
        with np.load(paths[case.name]) as stored:
            assert sorted(stored.files) == sorted(expected), case.name
            for key, value in expected.items():
                np.testing.assert_array_equal(stored[key], value, err_msg=f"{case.name}: {key}")


def test_engines_compute_the_same_function_from_the_same_data():
    """The cases hand every engine identical inputs and initial weights: outputs agree."""
    torch = pytest.importorskip("torch")
    checked = set()
    for case in case_mod.cases("tiny", ("conv", "pool", "lenet", "latency", "resnet20")):
        if "fwd+bwd" in case.name or "train" in case.name:
            continue
        data = case.data()
        outs = {}
        for engine, build in case.builders.items():
            try:
                outs[engine] = build(data, 1)()
            except case_mod.Absent:
                continue
        ref = np.asarray(outs.pop("minidl").data)
        for engine, out in outs.items():
            if isinstance(out, torch.Tensor):
                out = out.detach().numpy()
            elif isinstance(out, list):  # onnxruntime's outputs
                out = out[0]
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5, err_msg=case.name)
            checked.add(engine)
    assert {"numpy", "torch"} <= checked
