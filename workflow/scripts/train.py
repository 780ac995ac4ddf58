"""A pack rule (rules/train.smk): its runs, one after the other, through the shared training program, on
data loaded once; each run logs to its own log and is kept in the side store once written."""

import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from mnist_sgd.execution.job import start_job  # noqa: E402

start_job(snakemake)  # the pack's log; the warm worker runs the rest where it can

import torch  # noqa: E402

from mnist_sgd.data.cache import load_cache  # noqa: E402
from mnist_sgd.data.idx import DataError  # noqa: E402
from mnist_sgd.data.kernel import load_table  # noqa: E402
from mnist_sgd.execution.devices import pick_device  # noqa: E402
from mnist_sgd.study.datasets import dataset_sha256  # noqa: E402
from mnist_sgd.study.layout import train_logs  # noqa: E402
from mnist_sgd.study.packs import forget_finished, keep_finished  # noqa: E402
from mnist_sgd.study.records import TrainingInputs  # noqa: E402
from mnist_sgd.study.runs import run_config  # noqa: E402
from mnist_sgd.training.train import run  # noqa: E402

params, output = snakemake.params, snakemake.output
preamble = []  # what the pack says before its runs (device, data): each run's log starts with it


def pack_log(message):
    print(message, file=sys.stderr)
    preamble.append(message)


# The device and CUDA graphs, read from the config rather than passed as rule parameters, say only
# how a run trains: changing them must not retrain (or delete) finished runs.
device = torch.device(pick_device(snakemake.config["device"], pack_log, snakemake.config["jobs_per_gpu"]))
torch.set_num_threads(1)  # always: the metrics must not depend on --cores (see rules/train.smk)
sources = dataset_sha256(snakemake.config, run_config(params.runs[0]).dataset)
loading = time.perf_counter()
data = load_cache(snakemake.input.data, device, sources=sources, rebuild_from=params.idx_files, log=pack_log)
pack_log(
    f"{snakemake.input.data}: loaded and verified in {time.perf_counter() - loading:.2f} s, once for the pack's runs"
)
kernel = None
if snakemake.input.kernel and device.type == "cpu":  # a list of one file, or empty
    try:
        kernel = load_table(snakemake.input.kernel[0], data)
    except DataError as error:  # every number is the same without it, only slower
        pack_log(f"warning: {error}; training without it")
failed = []
for i, name in enumerate(params.runs):
    print(f"run {i + 1}/{len(params.runs)}: {name}", file=sys.stderr)
    log_path = Path(train_logs([name])[0])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as run_log:
        print(*preamble, sep="\n", file=run_log)
        try:
            run(
                snakemake.input.data,
                output.metrics[i],
                output.info[i],
                run_config(name, device=snakemake.config["device"]),
                device,
                weights_path=output.weights[i],
                threads=1,
                cuda_graphs=snakemake.config["cuda_graphs"],
                noise_points=params.inputs["noise_points"],
                curvature_path=params.curvature[i],
                data_sources=sources,
                inputs=TrainingInputs(**params.inputs),
                data=data,
                kernel=kernel,
                log=lambda message: print(message, file=run_log),  # noqa: B023 (used in this iteration only)
            )
        except Exception:  # the pack's other runs still train; the job fails at its end
            traceback.print_exc(file=run_log)
            traceback.print_exc()
            print(f"failed: {name} (log: {log_path})", file=sys.stderr)
            failed.append(name)
            continue
    keep_finished(name, [output.metrics[i], output.info[i], output.weights[i]])
if failed:
    sys.exit(f"{len(failed)} of {len(params.runs)} runs failed: {', '.join(failed)}; the others are kept")
forget_finished(params.runs)
