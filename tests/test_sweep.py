"""The sweep's settings, tables, bootstrap intervals, plans and figures (no training here)."""

import dataclasses
import doctest
import importlib
import math

import numpy as np
import pytest
import scipy.stats

from jaxstab import experiment
from jaxstab.data import gaussian_mixture
from jaxstab.sweep import report, runner, store
from jaxstab.sweep.spec import SweepSpec, settings

# --- settings and the spec -----------------------------------------------------------


def test_every_config_field_is_one_setting():
    fields = experiment.fields()
    assert [s.field for s in settings()] == [f.name for f in fields]
    for s, f in zip(settings(), fields):
        assert s.role == f.metadata["role"] and s.help == f.metadata["help"]
        assert s.option == (f.metadata["plural"] if s.is_axis else f.name)
    axes = {s.field for s in settings() if s.is_axis}
    assert axes == {f.name for f in experiment.fields("static") + experiment.fields("traced")}


def test_the_parser_is_derived_from_the_settings():
    from jaxstab import cli

    sub = cli._parser()._subparsers._group_actions[0].choices["sweep"]
    flags = {o for a in sub._actions for o in a.option_strings if o.startswith("--")}
    own = {"--help", "--out", "--resume", "--quiet", "--no-figures", "--profile",
           "--no-compile-cache", "--cpu-devices", "--distributed"}  # fmt: skip
    assert flags - own == {s.flag for s in settings()}
    assert "--weight-decays" in flags and "--momenta" in flags and "--init-gains" in flags


@pytest.mark.parametrize(
    "option,text,value",
    [
        ("depths", "2, 8", (2, 8)),
        ("lrs", "0.1,0.1000001", (0.1, 0.1000001)),
        ("clips", "none,1", (None, 1.0)),
        ("activations", "tanh", ("tanh",)),
    ],
)
def test_parse_list(option, text, value):
    s = {s.option: s for s in settings()}[option]
    got = s.parse_list(text)
    assert got == value and [type(v) for v in got] == [type(v) for v in value]


@pytest.mark.parametrize(
    "option,text,message",
    [
        ("depths", "2,,4", "malformed list '2,,4' for --depths"),
        ("depths", "2,x", "bad depth 'x': expected an integer"),
        ("lrs", "0.1,0.10", "--lrs lists the value 0.1 twice ('0.1' and '0.10' are equal)"),
        ("depths", "2,2", "--depths lists the value 2 twice;"),
        ("clips", "none,None", "--clips lists the value None twice"),
        ("clips", "off", "bad clip 'off': expected a number or none"),
        ("activations", "relux", "unknown activation 'relux'; valid: sigmoid, tanh, relu"),
    ],
)
def test_parse_list_errors_name_the_value(option, text, message):
    s = {s.option: s for s in settings()}[option]
    with pytest.raises(ValueError) as e:
        s.parse_list(text)
    assert message in str(e.value)


def test_spec_defaults_are_make_runs_job():
    s = SweepSpec.make()
    assert s["depths"] == (2, 8, 16, 32) and s["activations"] == ("sigmoid", "tanh", "relu")
    assert s["inits"] == ("xavier_normal", "he_normal") and s["lrs"] == (0.02,)
    assert (s["steps"], s["eval_every"], s["seeds"], s["dataset"]) == (500, 50, 8, "digits")
    assert len(s.configs()) == 4 * 3 * 2 and s.num_runs == 4 * 3 * 2 * 8


def test_close_values_are_distinct_points_with_distinct_names():
    s = SweepSpec.make(
        lrs=(0.1, 0.1000001), depths=(2,), activations=("tanh",), inits=("he_normal",)
    )
    a, b = s.configs()
    assert (a.lr, b.lr) == (0.1, 0.1000001) and a.name != b.name


@pytest.mark.parametrize(
    "given,words",
    [
        ({"depths": (2, -4)}, ["--depths: depth", "-4"]),
        ({"lrs": (math.nan, 0.1)}, ["--lrs: lr", "nan"]),
        ({"momenta": (0.9, 1.0)}, ["--momenta: momentum", "1.0"]),
        ({"seed": 2**63}, ["seed", str(2**63)]),
        ({"steps": 2**31}, ["--steps 2147483648 is too large: at most 2147483647"]),
        ({"first_seed": 2**31 - 1, "seeds": 2}, ["--first-seed 2147483647 with --seeds 2", "past"]),
        ({"eval_every": 3, "steps": 8}, ["eval_every=3 must divide steps=8"]),
        ({"depths": ()}, ["--depths must be a non-empty list of values"]),
        ({"depths": (2, 2)}, ["--depths lists the value 2 twice"]),
    ],
)
def test_spec_validation_names_the_option_and_value(given, words):
    with pytest.raises(ValueError) as e:
        SweepSpec.make(**given)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_json_round_trip_is_exact():
    s = SweepSpec.make(lrs=(0.1, 0.1000001), clips=(None, 1.0), init_gains=(1.0, 2.0))
    assert SweepSpec.from_json(s.to_json()) == s
    assert [c.name for c in SweepSpec.from_json(s.to_json()).configs()] == [
        c.name for c in s.configs()
    ]


def test_merge_adds_values_and_seeds_and_refuses_the_rest():
    old = SweepSpec.make(depths=(2, 8), seeds=4)
    new, added = old.merge({"depths": (8, 16), "seeds": 6, "steps": 500})
    assert new["depths"] == (2, 8, 16) and new.seed_indices == range(0, 6)
    assert added == {"depths": [16], "seeds": [0, 5]}
    same, nothing = old.merge({})
    assert same == old and nothing == {}
    later, added = old.merge({"first_seed": 4, "seeds": 2})  # seeds 4..5 join 0..3
    assert later.seed_indices == range(0, 6) and added == {"seeds": [0, 5]}
    with pytest.raises(
        ValueError, match=r"seeds 6\.\.7 leave a gap after the sweep's seeds 0\.\.3"
    ):
        old.merge({"first_seed": 6, "seeds": 2})
    with pytest.raises(ValueError, match=r"--steps 500 before, 100 now; --seed 0 before, 3 now"):
        old.merge({"steps": 100, "seed": 3})


def test_doctests_of_the_sweep_modules():
    for name in ("jaxstab.sweep.spec", "jaxstab.sweep.report"):
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0


# --- bootstrap intervals ----------------------------------------------------------------


def test_bootstrap_mean_interval_matches_scipy():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=20)
    n_res = 20000
    lo, hi = report.bootstrap_ci(x, np.mean, n_resamples=n_res, seed=0)
    ref = scipy.stats.bootstrap(
        (x,), np.mean, n_resamples=n_res, method="percentile", random_state=0
    ).confidence_interval
    # Monte Carlo error of a 2.5% quantile of B resamples of a ~normal statistic with
    # sd s: sqrt(p(1-p)/B) / phi(1.96) * s; two independent estimates differ by sqrt(2)x.
    s = np.std(x, ddof=0) / np.sqrt(x.size)
    se = math.sqrt(0.025 * 0.975 / n_res) / scipy.stats.norm.pdf(1.96) * s
    assert abs(lo - ref.low) < 4 * math.sqrt(2) * se
    assert abs(hi - ref.high) < 4 * math.sqrt(2) * se


def test_bootstrap_median_interval_against_its_exact_distribution():
    # For odd n the bootstrap median is the order statistic x_(j) with
    # P(median <= x_(j)) = P(Binomial(n, j/n) >= (n+1)/2), exactly.
    n = 15
    x = np.sort(np.random.default_rng(2).normal(size=n))
    cdf = scipy.stats.binom.sf((n + 1) // 2 - 1, n, np.arange(1, n + 1) / n)
    j_lo = int(np.searchsorted(cdf, 0.025))  # first order statistic with cdf >= 2.5%
    j_hi = int(np.searchsorted(cdf, 0.975))
    lo, hi = report.bootstrap_ci(x, n_resamples=20000)
    assert x[max(j_lo - 1, 0)] <= lo <= x[j_lo]
    assert x[j_hi - 1] <= hi <= x[min(j_hi, n - 1)]


def test_bootstrap_is_deterministic_and_ignores_nonfinite():
    x = [1.0, 5.0, 2.0, np.nan, 4.0, np.inf, 3.0]
    assert report.bootstrap_ci(x) == report.bootstrap_ci([1.0, 5.0, 2.0, 4.0, 3.0])
    assert report.bootstrap_ci(x) == report.bootstrap_ci(x)
    assert all(math.isnan(v) for v in report.bootstrap_ci([1.0, np.nan]))
    assert report.summarize([np.nan, np.nan])[0] != report.summarize([np.nan, np.nan])[0]  # NaN


# --- table rows from a part --------------------------------------------------------------


def _part(seeds=3, first=2, steps=6, every=3, depth=2):
    config = {**experiment.Config(depth=depth, width=8, steps=steps, eval_every=every,
              seeds=seeds, first_seed=first, clip=None).to_dict()}  # fmt: skip
    config["name"] = experiment.Config(**{k: config[k] for k in config}).name
    rng = np.random.default_rng(0)
    evals = steps // every + 1
    arrays = {
        "train_loss": rng.random((seeds, steps), dtype=np.float32),
        "grad_norm": rng.random((seeds, steps), dtype=np.float32),
        "clipped": rng.random((seeds, steps)) < 0.5,
        "eval_steps": np.arange(0, steps + 1, every),
        "eval_train_loss": rng.random((seeds, evals), dtype=np.float32),
        "test_loss": rng.random((seeds, evals), dtype=np.float32),
        "test_accuracy": rng.random((seeds, evals), dtype=np.float32),
        "diverged": np.array([False, True, False][:seeds]),
        "diverged_step": np.array([-1, 4, -1][:seeds], np.int32),
    }
    for when in ("init", "final"):
        for k in ("dead_fraction", "saturated_fraction", "second_moment"):
            arrays[f"stats/{when}/{k}"] = rng.random((seeds, depth), dtype=np.float32)
    return config, arrays


def test_result_rows_hold_the_parts_numbers_exactly():
    config, arrays = _part()
    rows = list(report.result_rows(config, arrays, [3, 4]))
    cols = report.result_columns()
    assert len(rows) == 2 and all(len(r) == len(cols) for r in rows)
    row = dict(zip(cols, rows[0]))  # seed index 3 = the part's row 1
    assert row["seed_index"] == "3" and row["name"] == config["name"] and row["clip"] == ""
    assert np.float32(row["final_train_loss"]) == arrays["eval_train_loss"][1, -1]
    assert np.float32(row["grad_norm_init"]) == arrays["grad_norm"][1, 0]
    assert float(row["clip_rate"]) == np.mean(arrays["clipped"][1])
    assert (row["diverged"], row["diverged_step"]) == ("True", "4")
    assert float(row["dead_fraction_init"]) == np.mean(arrays["stats/init/dead_fraction"][1])


def test_curve_rows_are_tidy():
    config, arrays = _part(steps=6, every=3)
    cols = [*report.run_columns(), "step", *report.CURVE_METRICS]
    rows = [dict(zip(cols, r)) for r in report.curve_rows(config, arrays, [2])]
    assert [r["step"] for r in rows] == [str(t) for t in range(7)]
    assert [np.float32(r["train_loss"]) for r in rows[:6]] == list(arrays["train_loss"][0])
    assert rows[6]["train_loss"] == "" and rows[1]["test_loss"] == ""
    evals = [np.float32(rows[t]["test_loss"]) for t in (0, 3, 6)]
    assert evals == list(arrays["test_loss"][0])


def test_stats_rows_one_per_run_time_and_layer():
    config, arrays = _part(depth=2)
    names = report.stats_names(arrays)
    assert names == ["dead_fraction", "saturated_fraction", "second_moment"]
    rows = list(report.stats_rows(config, arrays, [2, 3, 4], names))
    assert len(rows) == 3 * 2 * 2
    last = dict(zip([*report.run_columns(), "when", "layer", *names], rows[-1]))
    assert (last["seed_index"], last["when"], last["layer"]) == ("4", "final", "2")
    assert np.float32(last["second_moment"]) == arrays["stats/final/second_moment"][2, 1]


def test_results_read_back_typed(tmp_path):
    config, arrays = _part()
    store.write_csv(
        tmp_path / "results.csv", report.result_columns(), report.result_rows(config, arrays, [2])
    )
    (row,) = report.read_results(tmp_path)
    assert row["clip"] is None and row["lr"] == config["lr"] and row["depth"] == 2
    # float32 values are written as their shortest text: they read back exactly as float32.
    assert row["diverged"] is False
    assert np.float32(row["final_train_loss"]) == arrays["eval_train_loss"][0, -1]


def test_summary_table_numbers():
    rows = []
    for lr, losses in ((0.1, [1.0, 2.0, 3.0, 4.0]), (0.1000001, [np.nan, np.nan, 0.5, 0.7])):
        for loss in losses:
            rows.append({"name": f"p{lr}", "depth": 2, "lr": lr, "final_train_loss": loss,
                         "test_accuracy": 0.5, "diverged": math.isnan(loss), **{
                             s.field: s.default[0] for s in settings()
                             if s.is_axis and s.field not in ("depth", "lr")}})  # fmt: skip
    table = report.summary_table(rows).splitlines()
    assert table[0].split()[:2] == ["lr", "train"]  # only the varying axis
    lo, hi = report.bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    assert table[2].split() == ["0.1", "2.5000", f"[{lo:.4f},", f"{hi:.4f}]", "0.500", "[0.500,",
                                "0.500]", "0/4"]  # fmt: skip
    assert table[3].split()[0] == "0.1000001" and table[3].split()[-1] == "2/4"


# --- plans and resources -------------------------------------------------------------------


def test_ranges():
    assert runner._ranges([5, 0, 1, 2, 7, 8]) == [(0, 3), (5, 1), (7, 2)]
    assert runner._ranges([]) == []


def test_plan_computes_only_missing_seeds_and_drops_corrupt_parts(tmp_path):
    s = SweepSpec.make(depths=(2,), activations=("tanh",), inits=("he_normal",), seeds=6,
                       steps=8, eval_every=4)  # fmt: skip
    (c,) = s.configs()
    good = {**dataclasses.replace(c, first_seed=0, seeds=2).to_dict(), "name": c.name}
    store.write_part(tmp_path, good, {"x": np.zeros(2)})
    bad = {**dataclasses.replace(c, first_seed=3, seeds=1).to_dict(), "name": c.name}
    path = store.write_part(tmp_path, bad, {"x": np.zeros(1)})
    path.write_bytes(path.read_bytes()[:40])
    p = runner.plan(s, tmp_path)
    assert [(t.first_seed, t.seeds) for t in p.todo] == [(2, 4)]
    assert p.done_runs == 2 and p.todo_runs == 4 and not path.exists()
    assert len(p.corrupt) == 1 and p.corrupt[0].startswith(f"{path} is corrupt (")
    assert p.corrupt[0].endswith("removed, its runs are recomputed")


def test_run_bytes_by_hand():
    data = gaussian_mixture(seed=0, n_train=100, n_test=50, d_in=4, num_classes=3)
    c = experiment.Config(depth=2, width=8, optimizer="adam", batch_size=16, steps=10,
                          eval_every=5, dataset=data.name)  # fmt: skip
    work, outputs = runner._run_bytes(c, data)
    params = (4 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3)
    state = params * (4 + 2 * 2)
    largest = max(16 * (4 + 4 * 16 + 9), 100 * (4 + 24 + 6), 100 * (4 + 6 * 16))
    assert work == 4 * (state + largest)
    assert outputs == 10 * 9 + 3 * 12 + 2 * 9 * 2 * 4


def test_resources_refuse_what_cannot_fit(tmp_path, monkeypatch):
    import jax

    data = gaussian_mixture(seed=0, n_train=64, n_test=32, d_in=4, num_classes=3)
    devices = jax.local_devices()
    small = SweepSpec.make(depths=(2,), widths=(8,), activations=("tanh",), steps=8,
                           eval_every=4, dataset=data.name)  # fmt: skip
    est = runner.check_resources(small, data, tmp_path, devices=devices, platform="cpu")
    assert 0 < est["memory"] < 1e8 and 0 < est["disk"] < 1e7
    monkeypatch.setattr(store, "available_memory", lambda: 10**9)
    wide = small.replace(widths=(100_000,))
    with pytest.raises(ValueError) as e:
        runner.check_resources(wide, data, tmp_path, devices=devices, platform="cpu")
    assert "of memory for its largest program (depth 2, width 100000, sgd" in str(e.value)
    assert "more than the 1.0 GB available (MemAvailable in /proc/meminfo)" in str(e.value)
    monkeypatch.setattr(store, "free_disk", lambda path: 10**6)
    with pytest.raises(ValueError, match=r"more than the 1 MB free on the disk of"):
        runner.check_resources(small.replace(seeds=1000), data, tmp_path, devices=devices,
                               platform="cpu")  # fmt: skip


def test_dataset_digest_is_of_the_content():
    a = gaussian_mixture(seed=0, n_train=64, n_test=32, d_in=4, num_classes=3)
    b = a._replace(name="renamed")
    c = a._replace(x_train=a.x_train.copy())
    c.x_train[0, 0] += 1.0
    assert runner.dataset_digest(a) == runner.dataset_digest(b) != runner.dataset_digest(c)


# --- figures: what is drawn ------------------------------------------------------------------


def _rows_for_plots():
    rows = []
    for act, losses in (("tanh", [0.5, 0.7, 0.6, 0.9]), ("relu", [np.nan] * 4)):
        for depth in (2, 4):
            for i, loss in enumerate(losses):
                rows.append({s.field: s.default[0] for s in settings() if s.is_axis}
                            | {"activation": act, "depth": depth, "seed_index": i,
                               "name": f"{act}{depth}", "final_train_loss": loss * depth,
                               "diverged": math.isnan(loss), "test_accuracy": 0.5})  # fmt: skip
    return rows


def test_loss_figure_plots_medians_with_bootstrap_bands_and_explains_empty_panels():
    pytest.importorskip("matplotlib")
    from jaxstab.sweep import plots

    plt = plots._pyplot()
    rows = _rows_for_plots()
    fig, axes = plt.subplots(1, 2, squeeze=False)
    plots.loss_vs_depth(rows, axes[0])
    relu, tanh = axes[0]  # activations in sorted order
    assert [t.get_text() for t in relu.texts] == ["every seed diverged:\nno finite loss to plot"]
    (line,) = tanh.get_lines()
    losses = np.array([0.5, 0.7, 0.6, 0.9])
    assert list(line.get_xdata()) == [2, 4]
    np.testing.assert_allclose(line.get_ydata(), [np.median(losses) * 2, np.median(losses) * 4])
    (band,) = tanh.collections
    vertices = band.get_paths()[0].vertices
    for depth in (2, 4):  # the band runs from the interval's low end to its high end
        lo, hi = report.bootstrap_ci(losses * depth)
        ys = vertices[np.isclose(vertices[:, 0], depth), 1]
        assert math.isclose(ys.min(), lo) and math.isclose(ys.max(), hi)
    assert tanh.get_yscale() == "log" and relu.get_yscale() == "linear"
    plt.close(fig)


def test_draw_all_never_raises(tmp_path):
    pytest.importorskip("matplotlib")
    from jaxstab.sweep import plots

    rows = _rows_for_plots()
    got = plots.draw_all(rows, None, tmp_path / "figures")
    assert [p.name for p, problem in got if problem is None] == list(plots.FIGURES)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    got = plots.draw_all(rows, [], blocker / "figures")  # cannot be written: reported
    assert [p.name for p, _ in got] == list(plots.FIGURES)
    assert all(problem.startswith("NotADirectoryError") for _, problem in got)


def test_sigma_w2_in_closed_form():
    from jaxstab.sweep import plots

    assert plots.sigma_w2("he_normal", 1.0) == 2.0
    assert plots.sigma_w2("xavier_uniform", 2.0) == 4.0
    assert plots.sigma_w2("torch_linear", 1.0) == pytest.approx(1 / 3)
    assert plots.sigma_w2("orthogonal", 1.5) == 2.25
