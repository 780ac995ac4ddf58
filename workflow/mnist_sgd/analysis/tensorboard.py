"""The runs as TensorBoard sees them, written from their records (no retraining): `tensorboard --logdir
results/tensorboard`.

Each run is a TensorBoard run at `<first sweep>/<run name>`, one event file of a fixed name holding its
loss and test accuracy at every iteration of metrics.csv (`train/loss`, `test/accuracy`, at step i the
CSV's row i: the weight after i - 1 steps), its noise scales where they were measured
(`noise/b_simple`, `noise/b_noise`, at step t the weight after t steps, as run.json says), and its HParams session: batch
size, lr, seed, data set, training-set size, update rule, sampling and sweeps, against final and best
test accuracy and the steps to each target accuracy of the summary (`hparams/...`). The logdir's own
event file holds the HParams experiment: the table of every hyperparameter's values and every metric.

Every byte follows from the records: wall times are the run's own seconds per iteration from 0, and a
file is written only where its bytes change, so adding a run writes that run's file (and the experiment's)
alone, and rerunning writes nothing.
"""

import hashlib
import io
import json
import math
from pathlib import Path

from ..study.records import RunInfo, read_metrics

EXTRA = "pip install -e '.[tensorboard]'"
EVENT_FILE = "events.out.tfevents.0.mnist_sgd"  # TensorBoard reads files named events.out.tfevents.*
# {event file: digest of its sources}; the rule's declared output, which Snakemake removes before the
# job runs, and a copy the next write reads (KEPT), so that it leaves unchanged runs alone.
MANIFEST, KEPT = "manifest.json", ".manifest.json"
FORMAT = 1  # of the event files this writes: a new one rewrites them all
# The hyperparameters of the HParams table: (name, summary column, type).
HPARAMS = [
    ("batch_size", "batch_size", int),
    ("lr", "lr", float),
    ("seed", "seed", int),
    ("dataset", "dataset", str),
    ("train_size", "train_size", int),
    ("impl", "impl", str),
    ("sampling", "sampling", str),
    ("iterations", "iterations", int),
    ("sweeps", "sweeps", str),
]
METRICS = ["final_test_accuracy", "best_test_accuracy"]  # and the summary's steps_to_<target> columns


class TensorBoardMissing(ImportError):
    """TensorBoard, an optional extra, is not installed."""


def _tensorboard():
    """The TensorBoard modules this needs, or TensorBoardMissing naming the extra."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import summary_v2 as hparams
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError as error:
        raise TensorBoardMissing(
            f"the tensorboard target needs TensorBoard, an optional extra ({error}); install it: {EXTRA}"
        ) from None
    return event_pb2, summary_pb2, hparams, RecordWriter


def write_logdir(summary, runs_dir, logdir, log=print):
    """Write the TensorBoard logdir `logdir` for the runs of `summary` (the summary table, a DataFrame)
    whose records are under `runs_dir`, and its manifest: {event file: digest of what it was made
    from}. A file whose sources are those of the manifest, and which is still there, is left alone;
    another is written only where its bytes change; the files of runs no longer in the table go.
    Return {event file: "written", "same" or "removed"}."""
    modules = _tensorboard()
    logdir = Path(logdir)
    kept = logdir / KEPT
    before = json.loads(kept.read_text()) if kept.exists() else {}
    metrics = METRICS + [c for c in summary.columns if c.startswith("steps_to_")]
    rows = summary.to_dict("records")
    sources = {EVENT_FILE: _digest([FORMAT, metrics, [_hparam_values(row) for row in rows]])}
    makers = {EVENT_FILE: lambda: experiment_events(summary, metrics, modules)}
    for row in rows:
        folder = Path(runs_dir) / row["run"]
        info = RunInfo.read(folder / "run.json")  # checks the record and the metrics it lists
        name = f"{row['sweeps'].split(';')[0]}/{row['run']}/{EVENT_FILE}"
        sources[name] = _digest(
            [FORMAT, metrics, {k: row[k] for k in metrics}, _hparam_values(row), info.record_sha256]
        )
        makers[name] = lambda row=row, info=info, folder=folder: run_events(
            row, info, read_metrics(folder / "metrics.csv"), metrics, modules
        )
    outcome = {}
    for name, make in makers.items():
        path = logdir / name
        if before.get(name) == sources[name] and path.exists():
            outcome[name] = "same"
            continue
        data = make()
        same = path.exists() and path.read_bytes() == data
        if not same:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_bytes(data)
            temporary.replace(path)
        outcome[name] = "same" if same else "written"
    for name in before:
        if name not in makers:
            (logdir / name).unlink(missing_ok=True)
            outcome[name] = "removed"
            for folder in (logdir / name).parents:  # and the folders it leaves empty
                if folder == logdir or any(folder.iterdir()):
                    break
                folder.rmdir()
    text = json.dumps(sources, indent=1, sort_keys=True) + "\n"
    for path in (logdir / MANIFEST, kept):
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    counts = {what: sum(v == what for v in outcome.values()) for what in ("written", "same", "removed")}
    log(
        f"{len(rows)} runs: event files {counts['written']} written, {counts['same']} unchanged, {counts['removed']} removed"
    )
    return outcome


def _digest(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _events(records, modules):
    """The bytes of an event file holding `records` (Event protos), after the file-version event."""
    event_pb2, _, _, RecordWriter = modules
    buffer = io.BytesIO()
    writer = RecordWriter(buffer)
    for event in [event_pb2.Event(wall_time=0.0, file_version="brain.Event:2"), *records]:
        writer.write(event.SerializeToString())
    return buffer.getvalue()


def _scalars(modules, step, wall_time, values):
    """An Event of scalar `values` {tag: number} at `step`: TensorBoard's scalars plugin reads them."""
    event_pb2, summary_pb2, *_ = modules
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in values.items()])
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary)


def _hparam_values(row):
    return {name: kind(row[column]) for name, column, kind in HPARAMS}


def experiment_events(summary, metrics, modules):
    """The logdir's event file: the HParams experiment, every hyperparameter's values and every metric."""
    event_pb2, _, hparams, _ = modules
    values = {name: sorted({kind(v) for v in summary[column]}) for name, column, kind in HPARAMS}
    config = hparams.hparams_config_pb(
        hparams=[hparams.HParam(name, hparams.Discrete(values[name])) for name, _, _ in HPARAMS],
        metrics=[hparams.Metric(f"hparams/{m}", display_name=m) for m in metrics],
        time_created_secs=0.0,
    )
    return _events([event_pb2.Event(wall_time=0.0, summary=config)], modules)


def run_events(row, info, curves, metrics, modules):
    """A run's event file: its curves, its noise scales, its HParams session and its metrics."""
    event_pb2, _, hparams, _ = modules
    session = hparams.hparams_pb(_hparam_values(row), trial_id=row["run"], start_time_secs=0.0)
    records = [event_pb2.Event(wall_time=0.0, step=0, summary=session)]
    pace = info.seconds_per_iteration
    for iteration, loss, accuracy in zip(curves["iteration"], curves["train_loss"], curves["test_accuracy"]):
        values = {"train/loss": loss} if math.isnan(accuracy) else {"train/loss": loss, "test/accuracy": accuracy}
        records.append(_scalars(modules, int(iteration), (int(iteration) - 1) * pace, values))
    noise = info.noise_scale or {"iteration": [], "b_simple": [], "b_noise": []}
    for steps, b_simple, b_noise in zip(noise["iteration"], noise["b_simple"], noise["b_noise"]):
        values = {tag: v for tag, v in (("noise/b_simple", b_simple), ("noise/b_noise", b_noise)) if v is not None}
        records.append(_scalars(modules, steps, steps * pace, values))
    last = int(curves["iteration"].iloc[-1]) if len(curves) else 0
    finals = {f"hparams/{m}": float(row[m]) for m in metrics if not _missing(row[m])}
    records.append(_scalars(modules, last, last * pace, finals))
    return _events(records, modules)


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))
