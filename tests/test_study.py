"""Expanding the configured sweeps into runs."""

import copy
import re

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from snakemake.utils import validate

from conftest import REPO
from mnist_sgd.study.cost import estimated_seconds
from mnist_sgd.study.datasets import SweepError
from mnist_sgd.study.plan import plan, sweep_runs
from mnist_sgd.study.runs import (
    MAX_BATCH_SIZE,
    MAX_ITERATIONS,
    MAX_SEED,
    RUN_PATTERN,
    RUN_WILDCARDS,
    configurations,
    parse_run,
    run_config,
    run_name,
)
from mnist_sgd.study.targets import learning_rate_labels, learning_rate_lines, run_labels

SCHEMA = REPO / "config" / "config.schema.yaml"
# A run name the workflow's wildcards match (so a rule can produce it).
RUN_NAME = re.compile(RUN_PATTERN.format(**{k: f"(?:{v})" for k, v in RUN_WILDCARDS.items()}))


def default_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_the_default_study_is_the_seeds():
    config = default_config()
    assert sweep_runs(config, "batch_size") == [
        f"scratch/trainall_batch{b}_lr0.001_it6000_seed0" for b in (1, 10, 100, 1000)
    ]
    assert sweep_runs(config, "train_size") == [
        f"scratch/train{n}_batch{n}_lr0.001_it6000_seed0" for n in (100, 500, 1000, 10000)
    ]
    assert sweep_runs(config, "torch_optim") == ["torch/trainall_batch100_lr0.001_it6000_seed0"]
    assert sweep_runs(config, "scratch_epochs") == ["scratch/trainall_batch100_lr0.0002_it6000_seed0_epochs"]


def test_every_combination_of_a_sweeps_lists_is_a_run():
    config = {
        "sweeps": {
            "grid": {
                "impl": "scratch",
                "train_sizes": [50, "all"],
                "batch_sizes": [1, 5],
                "iterations": 10,
                "lr": 1e-5,
                "seeds": [0, 7],
            }
        }
    }
    runs = sweep_runs(config, "grid")
    assert len(runs) == 8 and len(set(runs)) == 8
    assert runs[0] == "scratch/train50_batch1_lr1e-05_it10_seed0"
    assert runs[-1] == "scratch/trainall_batch5_lr1e-05_it10_seed7"


def test_a_run_name_round_trips_to_its_training_parameters():
    config = run_config("torch/train500_batch25_lr0.0015_it300_seed4_every3", device="cpu")
    assert (config.impl, config.train_size, config.batch_size, config.iterations) == ("torch", 500, 25, 300)
    assert (config.lr, config.seed, config.eval_every, config.device) == (0.0015, 4, 3, "cpu")
    assert run_name(config) == "torch/train500_batch25_lr0.0015_it300_seed4_every3"
    assert run_config("scratch/trainall_batch1_lr0.001_it6000_seed0").train_size is None
    assert run_config("scratch/trainall_batch1_lr0.001_it6000_seed0").eval_every == 1
    assert parse_run("scratch/trainall_batch1_lr0.001_it6000_seed0")["lr"] == "0.001"


def test_scratch_on_shuffled_epochs_is_another_run_and_each_rules_own_sampling_keeps_todays_names():
    sweep = {"impl": "scratch", "train_sizes": ["all"], "batch_sizes": [100], "iterations": 10, "lr": 0.1}
    for sampling, suffix in [(None, ""), ("with_replacement", ""), ("epochs", "_epochs")]:
        config = {"sweeps": {"s": {**sweep, **({"sampling": sampling} if sampling else {})}}, "eval_every": 3}
        [run] = sweep_runs(config, "s")
        assert run == f"scratch/trainall_batch100_lr0.1_it10_seed0{suffix}_every3"
        assert run_config(run).batch_sampling == (sampling or "with_replacement")
        assert run_name(run_config(run)) == run
    torch_sweep = {**sweep, "impl": "torch", "sampling": "epochs"}
    assert sweep_runs({"sweeps": {"t": torch_sweep}}, "t") == ["torch/trainall_batch100_lr0.1_it10_seed0"]


def test_evaluating_less_often_is_another_run_and_every_iteration_keeps_todays_names():
    config = default_config()
    assert sweep_runs({**config, "eval_every": 1}, "torch_optim") == ["torch/trainall_batch100_lr0.001_it6000_seed0"]
    assert sweep_runs({**config, "eval_every": 10}, "torch_optim") == [
        "torch/trainall_batch100_lr0.001_it6000_seed0_every10"
    ]


def test_batch_equal_to_train_size_needs_a_size():
    config = {
        "sweeps": {
            "bad": {
                "impl": "scratch",
                "train_sizes": ["all"],
                "batch_sizes": ["train_size"],
                "iterations": 10,
                "lr": 0.1,
            }
        }
    }
    with pytest.raises(SweepError, match="sweeps.bad.batch_sizes"):
        sweep_runs(config, "bad")


def test_labels_name_what_varies():
    config = default_config()
    assert run_labels(sweep_runs(config, "batch_size")) == ["batch 1", "batch 10", "batch 100", "batch 1000"]
    assert run_labels(sweep_runs(config, "train_size")) == ["train 100", "train 500", "train 1000", "train 10000"]
    assert run_labels(sweep_runs(config, "torch_optim")) == ["torch"]


def plausible(schema):
    """`schema` narrowed to configurations that mostly plan: one or two sweeps on MNIST of subsets of at
    most 300 images, no comparisons."""
    schema = copy.deepcopy(schema)
    schema["properties"]["sweeps"]["maxProperties"] = 2
    schema["$defs"]["sweep"]["properties"]["train_sizes"]["items"] = {"type": "integer", "minimum": 1, "maximum": 300}
    schema["properties"]["figures"]["properties"]["comparisons"]["maxProperties"] = 0
    # MNIST only, pinned in the flat layout: other data sets would need their checksums or their folders.
    schema["$defs"]["sweep"]["properties"]["datasets"]["items"] = {"const": "mnist"}
    schema["properties"]["data_sha256"] = {"$ref": "#/$defs/idx_sha256"}
    schema["properties"]["custom_datasets"]["maxProperties"] = 0
    return schema


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@given(
    config=st.one_of(
        from_schema(yaml.safe_load(SCHEMA.read_text())), from_schema(plausible(yaml.safe_load(SCHEMA.read_text())))
    ),
    num_train=st.sampled_from([60000, 300, None]),
)
def test_whatever_the_schema_admits_is_refused_at_planning_or_runs(config, num_train):
    """Configurations generated from the schema: planning refuses each with a message, or plans runs
    that the training program accepts under the names the workflow's rules produce."""
    validate(config, str(SCHEMA))  # fills in the defaults, as the workflow does
    try:
        sweeps, groups = plan(config, num_train)
    except SweepError as error:
        assert str(error).startswith("config error: "), error
        event("refused at planning")
        return
    event("planned")
    assert set(sweeps) <= set(groups)
    for runs in sweeps.values():
        assert runs and len(runs) == len(set(runs))
        for run in runs:
            assert RUN_NAME.fullmatch(run), run
            config_of_run = run_config(run, device=config["device"])
            config_of_run.validate(num_train)  # what the training job does first
            assert run_name(config_of_run) == run


@pytest.mark.parametrize(
    "sweep, message",
    [
        ({"batch_sizes": [10**12]}, "sweeps.s.batch_sizes has 1000000000000: must be an integer from 1 to 100000"),
        ({"iterations": 10**12}, "sweeps.s.iterations=1000000000000: must be an integer from 1 to 10000000"),
        ({"seeds": [2**64]}, "sweeps.s.seeds has 18446744073709551616: must be an integer from 0 to"),
        ({"train_sizes": ["all", 60000]}, "sweeps.s.train_sizes has 60000: the whole training set; write all"),
        (
            {"impl": "torch", "train_sizes": [100], "batch_sizes": [1000]},
            "sweeps.s.batch_sizes has 1000: impl torch draws each epoch's batches without replacement from the 100",
        ),
        ({"batch_sizes": [1.0]}, "sweeps.s.batch_sizes has 1.0: must be an integer"),
        (
            {"impl": "torch", "sampling": "with_replacement"},
            "sweeps.s.sampling='with_replacement': impl torch draws shuffled epochs",
        ),
        (
            {"sampling": "epochs", "train_sizes": [100], "batch_sizes": [101]},
            "sweeps.s.batch_sizes has 101: impl scratch draws each epoch's batches without replacement from the 100",
        ),
    ],
)
def test_what_the_program_would_refuse_is_refused_at_planning(sweep, message):
    config = {
        "sweeps": {
            "s": {"impl": "scratch", "train_sizes": ["all"], "batch_sizes": [10], "iterations": 10, "lr": 0.1, **sweep}
        },
        "figures": {"comparisons": {}},
    }
    with pytest.raises(SweepError, match=re.escape(message)):
        plan(config, 60000)


def test_the_same_run_twice_in_a_sweep_is_one_run():
    config = {
        "sweeps": {
            "s": {
                "impl": "scratch",
                "train_sizes": [100],
                "batch_sizes": [100, "train_size"],
                "iterations": 10,
                "lr": 0.1,
            }
        }
    }
    assert sweep_runs(config, "s") == ["scratch/train100_batch100_lr0.1_it10_seed0"]


def test_the_schemas_bounds_are_the_training_programs():
    schema = yaml.safe_load(SCHEMA.read_text())
    sweep = schema["$defs"]["sweep"]["properties"]
    assert sweep["batch_sizes"]["items"]["oneOf"][0]["maximum"] == MAX_BATCH_SIZE
    assert sweep["iterations"]["maximum"] == schema["properties"]["eval_every"]["maximum"] == MAX_ITERATIONS
    assert sweep["seeds"]["items"]["maximum"] == MAX_SEED


# The default study's runs' seconds as training jobs (a pack each), from bench/bench_workflow.py --cores 2
# (2-core AMD EPYC, 2026-12-04).
MEASURED_SECONDS = {
    "scratch/train10000_batch10000_lr0.001_it6000_seed0": 49.70,
    "scratch/train1000_batch1000_lr0.001_it6000_seed0": 5.98,
    "scratch/train100_batch100_lr0.001_it6000_seed0": 3.60,
    "scratch/train500_batch500_lr0.001_it6000_seed0": 4.71,
    "scratch/trainall_batch1000_lr0.001_it6000_seed0": 9.74,
    "scratch/trainall_batch100_lr0.001_it6000_seed0": 5.04,
    "scratch/trainall_batch10_lr0.001_it6000_seed0": 5.89,
    "scratch/trainall_batch1_lr0.001_it6000_seed0": 5.82,
    "torch/trainall_batch100_lr0.001_it6000_seed0": 6.84,
}


def test_the_cost_model_starts_the_longest_run_first_and_is_within_2x_of_each_measured_job():
    runs = [run for runs in plan(default_config(), 60000)[0].values() for run in runs]
    assert set(MEASURED_SECONDS) <= set(runs)
    estimates = {run: estimated_seconds(run) for run in runs}
    assert max(estimates, key=estimates.get) == max(MEASURED_SECONDS, key=MEASURED_SECONDS.get)
    for run, seconds in MEASURED_SECONDS.items():
        assert seconds / 2 < estimates[run] < seconds * 2, (run, estimates[run], seconds)


def test_a_learning_rate_list_makes_one_run_per_rate_named_as_a_single_rate_would():
    config = {
        "sweeps": {"grid": {"impl": "scratch", "train_sizes": ["all"], "batch_sizes": [10, 100], "iterations": 5}}
    }
    config["sweeps"]["grid"]["lr"] = [0.0003, 0.001]
    runs = sweep_runs(config, "grid")
    assert runs == [f"scratch/trainall_batch{b}_lr{lr}_it5_seed0" for b in (10, 100) for lr in ("0.0003", "0.001")]
    config["sweeps"]["grid"]["lr"] = 0.001
    assert sweep_runs(config, "grid") == [runs[1], runs[3]]
    config["sweeps"]["grid"]["lr"] = [0.001, float("inf")]
    with pytest.raises(SweepError, match=r"sweeps.grid.lr has inf: must be a finite number > 0"):
        sweep_runs(config, "grid")


def test_a_configuration_is_a_run_but_its_seed_and_learning_rate_lines_group_configurations():
    runs = [f"scratch/trainall_batch{b}_lr{lr}_it5_seed{s}" for b in (10, 100) for lr in (0.01, 0.1) for s in (0, 1)]
    groups = configurations(runs)
    assert list(groups) == [f"scratch/trainall_batch{b}_lr{lr}_it5" for b in (10, 100) for lr in (0.01, 0.1)]
    assert all(len(members) == 2 for members in groups.values())
    assert parse_run("scratch/trainall_batch10_lr0.01_it5")["seed"] == ""
    assert run_labels(list(groups)) == [
        "batch 10, lr 0.01",
        "batch 10, lr 0.1",
        "batch 100, lr 0.01",
        "batch 100, lr 0.1",
    ]
    lines = learning_rate_lines(runs)
    assert [sorted(line) for line in lines] == [[0.01, 0.1], [0.01, 0.1]]
    assert lines[1][0.1] == runs[-2:] and learning_rate_labels(runs) == ["batch 10", "batch 100"]


@pytest.mark.parametrize("example", sorted((REPO / "config" / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_config_is_valid_and_plans_runs(example, tmp_path):
    """As --replace-workflow-config uses it: the schema fills in the defaults. (A custom data set's folder
    is this machine's temporary one.)"""
    config = yaml.safe_load(example.read_text())
    validate(config, str(SCHEMA))
    for custom in config["custom_datasets"].values():
        custom["path"] = str(tmp_path)
    sweeps, _ = plan(config)
    assert sum(map(len, sweeps.values())) > 1
