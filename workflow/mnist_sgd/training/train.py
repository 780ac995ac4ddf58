"""The one training program every run of the study goes through.

    python -m mnist_sgd.training.train --data results/data/mnist.pt --impl scratch --batch-size 100 \\
        --metrics metrics.csv --info run.json

writes a metrics CSV (iteration, train_loss, test_accuracy) and a JSON of the resolved parameters,
outcome, provenance and timings. Same parameters and seed give the same metrics file, byte for byte,
on the same machine, however and wherever the job is started.
"""

import argparse
import sys
import time

import torch

from ..data.cache import as_images, load_cache
from ..data.idx import NUM_CLASSES, NUM_FEATURES, DataError
from ..execution.devices import pick_device
from ..study.cost import reads_kernel_table, weighs_rows
from ..study.records import Resolved, read_curvature, write_metrics, write_weights
from ..study.runs import DEVICES, ConfigError, TrainConfig, run_name, training_set_name
from . import steps
from .accuracy import DUAL_BATCH, EVAL_BLOCK, AccuracyRecorder, Steps, TestKernel
from .noise import NOISE_POINTS, Curvature, NoiseRecorder, example_curvature
from .result import RunResult, run_info
from .sgd import SAMPLERS, UPDATERS, ScratchSGD, seeded_generator, select_rows, training_rows, used_pixels


def train(data, config, log=print, cuda_graphs=True, noise_points=0, curvature=None, kernel=None):
    """Train one run on `data` (an MNIST already on the run's device) and return its curves.

    Iterations run in chunks of `EVAL_BLOCK` evaluations (100 iterations by default; at most a tenth of
    the run): a chunk's weight snapshots are scored together, and its losses checked for divergence.
    On CUDA, each chunk is one CUDA graph launch (`steps.CudaGraphSteps`) unless `cuda_graphs` is False.

    With `noise_points`, the gradient noise scales are measured at the start and at that many
    log-spaced iterations (`mnist_sgd.training.noise`); chunks also end there, which changes no number.
    `curvature`, the training set's example curvature, is computed here when not given. `kernel`, the
    data set's KernelTable (mnist_sgd.data.kernel), where there is one: the dual form's products are
    read from it, which makes the dual form pay up to larger batches (study.cost.reads_kernel_table).
    """
    config.validate(num_train=data.train_pixels.shape[0])
    device = data.train_pixels.device
    generator = seeded_generator(config.seed)
    rows = training_rows(data, config.train_size, generator)
    images, targets = select_rows(data, rows)
    train_size = images.shape[0]

    if config.impl == "scratch":
        # The same for every run on all of the training set: made once for a pack's runs.
        used = data.derived("used_pixels", lambda: used_pixels(images)) if rows is None else used_pixels(images)
        updater = ScratchSGD(images, targets, config.lr, used)
    else:
        updater = UPDATERS[config.impl](images, targets, config.lr)
    batches = SAMPLERS[config.batch_sampling](train_size, config.batch_size, config.iterations, generator)
    log_every = max(1, config.iterations // 10)
    chunk = min(log_every, EVAL_BLOCK * config.eval_every)
    # Chunks of small from-scratch batches on the CPU are scored in the dual form (training.accuracy),
    # its products read from the data set's kernel table where there is one.
    graphed = cuda_graphs and device.type == steps.CudaGraphSteps.device_type
    table = kernel if device.type == "cpu" and reads_kernel_table(config, train_size) else None
    dual = (
        not graphed
        and device.type == "cpu"
        and isinstance(updater, ScratchSGD)
        and images.dtype == torch.uint8 == data.test_pixels.dtype
        and config.eval_every == 1
        and (table is not None or config.batch_size <= DUAL_BATCH)
        and not weighs_rows(config.batch_size, train_size)
    )

    def covered():  # the test images at the pixels the weight covers, as pixels and as floats
        pixels = data.test_pixels.index_select(1, updater.features)
        return pixels, as_images(pixels)

    test_pixels, test_images = data.derived(("test", config.impl), covered) if rows is None else covered()
    test_kernel = None
    if dual:
        test_kernel = TestKernel(test_pixels) if table is None else TestKernel(None, table.products, rows, table.exact)
    recorder = AccuracyRecorder(
        test_images,
        data.test_labels,
        config.iterations,
        capacity=-(-chunk // config.eval_every) + 1,
        kernel=test_kernel,
    )
    graphs = steps.CudaGraphSteps(updater, recorder.buffer, log) if graphed else None
    losses = torch.empty(config.iterations, device=device)
    diverged_at = None
    noise = None
    if noise_points:
        if curvature is None:
            log("computing the training set's example curvature for the noise scales (no saved one)")
            curvature = example_curvature(images, targets)
        noise = NoiseRecorder(curvature.to(device), config.iterations, noise_points)

    start = time.perf_counter()
    done = 0
    if noise is not None:  # at the start, W = 0
        noise.measure(0, _full_weight(updater))
    cuts = noise.iterations if noise is not None else ()
    for indices, sizes in steps.chunks(batches, chunk, cuts):
        first, done = done, done + len(sizes)
        # The model at an evaluated iteration is the one its loss is taken at (before the update).
        record = [i % config.eval_every == 0 or i == config.iterations - 1 for i in range(first, done)]
        indices = indices.to(device)  # one host-to-device copy per chunk
        if graphs is not None:
            graphs.run(indices, sizes, record, losses[first:done])
        else:
            updater.residuals = [] if dual else None
            steps.run_steps(updater, torch.split(indices, sizes), record, recorder.buffer, losses[first:done])
        evaluated = [i for i, recorded in zip(range(first, done), record) if recorded]
        recorder.score(evaluated, _steps(updater, indices, sizes) if dual and len(set(sizes)) == 1 else None)
        diverged_at = _first_non_finite(losses[first:done])  # a sync point, once per chunk
        if diverged_at is not None:
            diverged_at += first + 1
            log(
                f"diverged: the loss is {losses[diverged_at - 1].item()} at iteration {diverged_at}; "
                f"stopping (lr={config.lr} is too large for batch size {config.batch_size})"
            )
            break
        if noise is not None and done in noise.iterations:
            noise.measure(done, _full_weight(updater))
        if done // log_every > first // log_every:
            log(_progress(done, config.iterations, losses, recorder, time.perf_counter() - start))
    noise_scale = noise.record() if noise is not None else None  # every measurement, in one pass
    correct = recorder.correct()  # copies every score to the host once
    train_loss = losses.cpu().numpy()
    wall_seconds = time.perf_counter() - start
    weight = _full_weight(updater)
    done = diverged_at or config.iterations
    return RunResult(
        train_loss[:done],
        correct[:done],
        data.test_labels.shape[0],
        wall_seconds,
        train_size,
        diverged_at,
        cuda_graphs=graphs is not None and graphs.error is None,
        cuda_graphs_error=graphs and graphs.error,
        weight=weight.cpu().numpy(),
        confusion=confusion_matrix(data.test_images @ weight, data.test_labels),
        noise_scale=noise_scale,
        noise_seconds=noise.seconds if noise else 0.0,
    )


def _steps(updater, indices, sizes):
    """The Steps of the chunk just run (its batches `indices`, of `sizes`) for the dual form's scoring."""
    residuals, updater.residuals = torch.stack(updater.residuals), None
    return Steps(updater.images.index_select(0, indices), indices, residuals, updater.lr / sizes[0])


def _full_weight(updater):
    """The updater's weight as a (784, 10) matrix: zero for the pixels it leaves out."""
    weight = torch.zeros(NUM_FEATURES, NUM_CLASSES, device=updater.weight.device)
    return weight.index_copy_(0, updater.features, updater.weight)


def confusion_matrix(logits, labels):
    """(10, 10) NumPy counts: how many images of class i (row) the logits' argmax puts in class j."""
    pairs = labels * NUM_CLASSES + logits.argmax(dim=1)
    return torch.bincount(pairs, minlength=NUM_CLASSES**2).view(NUM_CLASSES, NUM_CLASSES).cpu().numpy()


def _first_non_finite(losses):
    """0-based index of the first NaN or infinite value in `losses`, or None (one host sync)."""
    bad = (~torch.isfinite(losses)).nonzero()
    return int(bad[0, 0]) if len(bad) else None


def _progress(iteration, iterations, losses, recorder, elapsed):
    """One progress line: iteration, loss, latest test accuracy, speed and time left."""
    rate = iteration / elapsed
    evaluated, accuracy = recorder.latest()
    return (
        f"iteration {iteration}/{iterations}  loss {losses[iteration - 1].item():.5f}  "
        f"test accuracy {accuracy:.4f} (iteration {evaluated + 1})  "
        f"{rate:.0f} it/s  eta {(iterations - iteration) / rate:.1f} s"
    )


def run(
    data_path,
    metrics_path,
    info_path,
    config,
    device="cpu",
    threads=None,
    log=print,
    cuda_graphs=True,
    data_sources=None,
    rebuild_from=None,
    weights_path=None,
    noise_points=0,
    curvature_path=None,
    inputs=None,
    data=None,
    kernel=None,
):
    """Load the cached data onto `device` (the caller picks it: mnist_sgd.execution.devices.pick_device),
    train one run, and write its metrics CSV and info JSON (and, given `weights_path`, its final weight
    as .npy).

    `data_sources`, when given, are the SHA-256s of the IDX files the cache must have been built from;
    `rebuild_from`, the IDX files to rebuild a damaged cache from (see `load_cache`). With
    `noise_points`, the run measures its gradient noise scales (see `train`), reading its training
    set's example curvature from `curvature_path` where the optimum job saved it for these data.
    `inputs`, the TrainingInputs the workflow trains the run from, are recorded in its run.json.
    `data`, where given, is the cache `data_path` holds already loaded onto `device` (a pack's runs
    share one load); `kernel`, its KernelTable (see `train`).
    """
    start = time.perf_counter()
    config.validate()
    device = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    if data is None:
        data = load_cache(data_path, device, sources=data_sources, rebuild_from=rebuild_from, log=log)
    log(f"training {config} on {device} with {torch.get_num_threads()} threads")
    curvature = None
    if noise_points and curvature_path:
        rows = config.train_size or data.train_pixels.shape[0]
        arrays = read_curvature(curvature_path, training_set_name(run_name(config)), data.sha256, rows)
        curvature = None if arrays is None else Curvature(**{k: torch.from_numpy(a) for k, a in arrays.items()})
    setup_seconds = time.perf_counter() - start
    result = train(data, config, log, cuda_graphs, noise_points, curvature, kernel)
    write_metrics(metrics_path, result)
    if weights_path:
        write_weights(weights_path, result.weight)
    resolved = Resolved(
        train_size=result.train_size,
        device=str(device),
        threads=torch.get_num_threads(),
        cuda_graphs=result.cuda_graphs,
        cuda_graphs_error=result.cuda_graphs_error,
        device_index=device.index,
    )
    info = run_info(config, result, resolved, setup_seconds, data.sha256, inputs)
    info.write(info_path)
    log(
        f"done ({info.status}): final test accuracy {info.final_test_accuracy:.4f}, final loss "
        f"{info.final_train_loss}, {result.wall_seconds:.2f} s, peak RSS {info.peak_rss_mb:.0f} MB"
    )
    return info


def parse_args(argv=None):
    """The command line; every knob has a default and a help text."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m mnist_sgd.training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="data cache written by the workflow (results/data/mnist.pt)")
    parser.add_argument("--metrics", required=True, help="output metrics CSV")
    parser.add_argument("--info", required=True, help="output JSON of parameters and timings")
    parser.add_argument("--weights", help="output .npy of the final (784, 10) weight (default: not kept)")
    parser.add_argument("--impl", choices=sorted(UPDATERS), default=defaults.impl, help="update rule")
    parser.add_argument(
        "--train-size",
        type=lambda s: None if s == "all" else int(s),
        default=None,
        help="seeded random subset of the training set, or 'all' (default)",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="learning rate")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seeds the subset and the batches")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every, help="test accuracy every N iterations")
    parser.add_argument("--device", choices=DEVICES, default=defaults.device)
    parser.add_argument(
        "--dataset", default=defaults.dataset, help="the name of the data set --data holds, for the records"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument(
        "--noise-points",
        type=int,
        default=NOISE_POINTS,
        help=f"measure the gradient noise scales at the start and at N log-spaced iterations (default {NOISE_POINTS}; 0: not)",
    )
    parser.add_argument(
        "--no-cuda-graphs",
        dest="cuda_graphs",
        action="store_false",
        help="on CUDA, launch each step's kernels one by one: same numbers, slower",
    )
    return parser.parse_args(argv)


def main(argv=None):
    """Command-line entry point."""
    args = parse_args(argv)
    config = TrainConfig(
        impl=args.impl,
        train_size=args.train_size,
        batch_size=args.batch_size,
        iterations=args.iterations,
        lr=args.lr,
        seed=args.seed,
        eval_every=args.eval_every,
        device=args.device,
        dataset=args.dataset,
    )
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    try:
        run(
            args.data,
            args.metrics,
            args.info,
            config,
            pick_device(config.device, log),
            threads=args.threads,
            log=log,
            cuda_graphs=args.cuda_graphs,
            weights_path=args.weights,
            noise_points=args.noise_points,
        )
    except (ConfigError, DataError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
