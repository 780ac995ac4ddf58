"""How the training loop runs its steps: in chunks of iterations, eagerly or, on CUDA, as CUDA graphs.

`train()` (mnist_sgd.training.train) draws batches, cuts them into chunks (`chunks`) and runs each chunk's
updates with `run_steps`, or with `CudaGraphSteps` on a GPU, which replays the same kernels from a
graph. Both give the same numbers.
"""

import torch


def chunks(batches, length, cuts=()):
    """Regroup a sampler's (indices, sizes) blocks into chunks of `length` batches, counted from the
    first, that also end after each iteration count in `cuts` (so a chunk may be shorter)."""
    cuts = sorted(set(cuts))
    parts, sizes, start = [], [], 0  # start: iterations before the chunk being filled

    def chunk_length():
        following = next((cut for cut in cuts if cut > start), None)
        end = (start // length + 1) * length
        return (end if following is None else min(end, following)) - start

    wanted = chunk_length()
    for indices, block_sizes in batches:
        offset = position = 0  # in block_sizes, in indices
        while offset < len(block_sizes):
            take = block_sizes[offset : offset + wanted - len(sizes)]
            count = sum(take)  # indices of these batches
            parts.append(indices[position : position + count])
            sizes += take
            offset, position = offset + len(take), position + count
            if len(sizes) == wanted:
                yield torch.cat(parts) if len(parts) > 1 else parts[0], sizes
                start += len(sizes)
                parts, sizes = [], []
                wanted = chunk_length()
    if sizes:
        yield torch.cat(parts) if len(parts) > 1 else parts[0], sizes


def run_steps(updater, batches, record, snapshots, losses):
    """One update per batch of `batches`; `losses[j]` gets batch j's loss. Where `record[j]`, the weight
    that loss is taken at is first copied into the next row of `snapshots`."""
    slot = 0
    for j, batch in enumerate(batches):
        if record[j]:
            snapshots[slot].copy_(updater.weight)
            slot += 1
        losses[j] = updater.step(batch)


class CudaGraphSteps:
    """`run_steps` for a chunk of iterations as one CUDA graph launch.

    Each step launches a handful of tiny kernels (gathers, skinny products, the update, the loss, a
    snapshot copy; autograd and the optimizer for `TorchSGD`): on a GPU, launching them from Python
    takes longer than running them. So each chunk shape (batch sizes and which iterations are
    evaluated) is captured once into a CUDA graph and replayed with the chunk's batch indices copied
    into the graph's input. The first chunk of a shape runs eagerly on a side stream, as CUDA graph
    capture requires for warm-up (cuBLAS workspaces, autograd, the optimizer): it is real training, not
    a throw-away pass. The replayed kernels are the eager ones, on the same data: same numbers.

    If a capture fails, the run goes on with eager launches from that chunk (`error` says why).
    """

    device_type = "cuda"  # train() uses this class for runs on this kind of device

    def __init__(self, updater, snapshots, log=print):
        self.updater, self.snapshots, self.log = updater, snapshots, log
        self.error = None  # why capture failed, if it did
        self.stream = None  # the side stream, created on first use
        self.graphs = {}  # chunk shape -> (replay, its input indices, its output losses); None: warmed up

    def run(self, indices, sizes, record, losses):
        """Run the chunk's steps (as `run_steps`) and write its losses into `losses`."""
        if self.error is not None:  # capture failed once: eager launches from then on
            run_steps(self.updater, torch.split(indices, sizes), record, self.snapshots, losses)
            return
        key = (tuple(sizes), tuple(record))
        if key not in self.graphs:
            self.graphs[key] = None
            self._warm_up(lambda: run_steps(self.updater, torch.split(indices, sizes), record, self.snapshots, losses))
            return
        if self.graphs[key] is None:
            static_indices, static_losses = torch.empty_like(indices), torch.empty_like(losses)
            try:
                replay = self._capture(
                    lambda: run_steps(
                        self.updater, torch.split(static_indices, sizes), record, self.snapshots, static_losses
                    )
                )
            except RuntimeError as error:
                # A capture records kernels without running them: this chunk has not trained yet.
                self.error = f"{type(error).__name__}: {error}".splitlines()[0]
                self.log(f"CUDA graph capture failed ({self.error}); going on with eager launches")
                self.run(indices, sizes, record, losses)
                return
            self.graphs[key] = replay, static_indices, static_losses
        replay, static_indices, static_losses = self.graphs[key]
        static_indices.copy_(indices)
        replay()
        losses.copy_(static_losses)

    def _warm_up(self, steps):
        """Run `steps()` eagerly on the side stream, ordered after and before the current stream's work."""
        self.stream = self.stream or torch.cuda.Stream()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            steps()
        torch.cuda.current_stream().wait_stream(self.stream)

    def _capture(self, steps):
        """Record the kernels `steps()` launches into a CUDA graph, without running them; return its replay."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            steps()
        return graph.replay
