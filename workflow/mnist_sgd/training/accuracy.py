"""Exact test accuracy at every evaluated iteration, a chunk of iterations at a time.

The plain computation (`mnist_sgd.training.reference.seed_correct`, once per weight) is
argmax_c (x W_t)[c] == label for every test image x and weight W_t: a (10^4 x 784) x (784 x 10)
product per iteration, far more arithmetic than a small batch's step. Evaluations never feed back
into training, so the training loop copies a chunk's weights into `AccuracyRecorder.buffer` and the
recorder scores them together, in one of three ways, all giving the counts the plain computation gives:

- on a GPU, one dense product for the whole chunk;
- on the CPU, images whose prediction provably cannot change between two weights a few steps apart
  are scored once for the steps between them, and the others by the dense product (`_settled`);
- on the CPU, for a chunk of small batches with its steps' rows and residuals at hand (`Steps`), the
  dual form (`_dual`): each step changes every test logit by a product with the batch's rows, so the
  logits of every weight of the chunk follow from the first one's by cheap updates, with a bound on
  their rounding; the few images within that bound of a tie are scored by the dense product.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ..data.idx import NUM_CLASSES

# Weight snapshots evaluated per test-set product at most: one (n_test, pixels) x (pixels, 10 * EVAL_BLOCK) GEMM.
EVAL_BLOCK = 100
# The largest batch whose chunks are scored in the dual form with the products computed per chunk: its
# cost grows with the batch, the dense product's does not (measured by bench/bench_training.py; see
# docs/benchmarks.md). With the data set's kernel table, read rather than computed, the dual form pays
# up to larger batches (mnist_sgd.study.cost.TABLE_BATCH).
DUAL_BATCH = 2
# Steps per span of the dual form's sums at batch 1: a span's prefix sums cost D^2 b per image, its
# margins a fixed part (10: 0.81 s against 0.89 s at 25 for 1000 iterations at batch 1, measured).
DUAL_SPAN = 10
# Steps per segment of the settled-margin proof (`AccuracyRecorder._settled`): each knot costs a dense
# evaluation, and the images it leaves undecided grow with the span (on MNIST 20 to 50 about equal, 10
# slower by a fifth at batches of 100 and 1000: docs/benchmarks.md).
SETTLE_SPAN = 20
UNIT_ROUNDOFF = 2.0**-24  # float32's


def span_steps(batch):
    """Steps per span of the dual form's sums (`AccuracyRecorder._dual`) at batch size `batch`."""
    return max(1, DUAL_SPAN // batch)


@dataclass
class Steps:
    """What the dual form needs of a chunk's T steps of `ScratchSGD` (batches of b rows each):
    `pixels` (T * b, d), the batches' training images as uint8 pixels, in step order, and `rows`, their
    row numbers in the run's training set; `residuals` (T, 10, b), each step's R^T = W^T X_b^T - Y_b^T
    as the step computed it; `alpha`, the step's lr / b."""

    pixels: torch.Tensor
    rows: torch.Tensor
    residuals: torch.Tensor
    alpha: float


class TestKernel:
    """The dual form's kernel: the products of training images with every test image in pixel units
    (sums of the uint8 pixels' products, 255^2 times the float images'), as float32, exact where below
    2^24 (a float32 sum of non-negative integers is exact while it stays below).

    Either read from the data set's `table` (`mnist_sgd.data.kernel`: (N, n_test), row i the products of
    training image i, computed once for every run of the data set; `rows`, the run's training rows'
    numbers in it, None where it trains on all of them; `exact`, whether every entry is below 2^24),
    or computed, per chunk, from the test pixels the weight covers.
    """

    def __init__(self, test_pixels, table=None, rows=None, exact=True):
        self.test_pixels, self.table, self.rows, self.exact = test_pixels, table, rows, exact
        self._test_values = None  # the test pixels as floats, made on first use

    def products(self, steps):
        """(a function of a slice of the chunk's T b batch rows giving their (rows, n_test) products,
        whether every product is exact)."""
        if self.table is None:
            if self._test_values is None:
                self._test_values = self.test_pixels.float()
            products = steps.pixels.float() @ self._test_values.T
            return (lambda part: products[part]), bool(products.max() < 2**24)
        rows = steps.rows if self.rows is None else self.rows.index_select(0, steps.rows)
        return (lambda part: self.table.index_select(0, rows[part])), self.exact


class AccuracyRecorder:
    """Test accuracy of weight snapshots, scored a chunk of iterations at a time (see the module's text).

    Scores stay on the device until `correct()` copies them to the host, once.
    """

    def __init__(self, test_images, test_labels, iterations, capacity, kernel=None):
        """`kernel`, the TestKernel of the run, for the dual form (`score`'s steps)."""
        self.test_images, self.kernel = test_images, kernel
        self._images64 = None  # the dual form's copy, made on first use
        self.test_labels = test_labels
        self.image_norms = test_images.norm(dim=1)
        self.iterations = iterations
        self.buffer = torch.empty(capacity, test_images.shape[1], NUM_CLASSES, device=test_images.device)
        self.evaluated = []  # iteration numbers (0-based), in order, on the host
        self.scores = []  # one device tensor of correct counts per chunk

    def score(self, iterations, steps=None):
        """Score the snapshots in `buffer[:len(iterations)]`, the models at `iterations` (0-based).

        `steps`, where given, are the Steps between consecutive snapshots (every iteration of the
        chunk evaluated, the first snapshot the weight before the chunk's first step)."""
        if not iterations:
            return
        snapshots = self.buffer[: len(iterations)]
        self.evaluated.extend(iterations)
        if self.test_images.device.type != "cpu":
            # On a GPU the dense product is cheap, and selecting rows would synchronise with the host.
            self.scores.append(_count_correct(self.test_images, self.test_labels, snapshots))
            return
        if steps is not None and len(iterations) > 1 and not snapshots[0].any():
            # W = 0 (a run's first snapshot): every logit is 0, a tie the dual form leaves to the dense
            # product for every snapshot of the chunk; so that snapshot is scored on its own.
            self.scores.append(_count_correct(self.test_images, self.test_labels, snapshots[:1]))
            batch = steps.pixels.shape[0] // len(iterations)
            steps = Steps(steps.pixels[batch:], steps.rows[batch:], steps.residuals[1:], steps.alpha)
            snapshots = snapshots[1:]
        if steps is None:
            self.scores.append(self._settled(snapshots))
            return
        undecided, decided_correct = self._dual(snapshots, steps)
        rows = undecided.nonzero().squeeze(1)
        images, labels = self.test_images.index_select(0, rows), self.test_labels.index_select(0, rows)
        self.scores.append(decided_correct + _count_correct(images, labels, snapshots))

    def _settled(self, snapshots):
        """Correct predictions under every snapshot of the chunk (a (T,) tensor), scoring densely only the
        images whose argmax may change between two snapshots a segment apart.

        The snapshots are cut into segments of `SETTLE_SPAN` steps, whose ends (the knots) are scored by
        one dense product for the whole chunk. Within the segment from knot p to knot q, with
        l = (t - p) / (q - p),

            W_t = (1 - l) W_p + l W_q + E_t,

        so x's exact margin of class a over class c under W_t is (1 - l) times its margin under W_p,
        plus l times that under W_q, plus x . (E_t[:, a] - E_t[:, c]): at least the smaller of the two
        knots' margins less |x| (B_a + B_c), with B_c the largest |E_t[:, c]| of the segment. Where a is
        x's top class at both knots and both its margins over every other class c exceed
        |x| (B_a + B_c + rounding), a is the prediction any float32 evaluation gives for every snapshot
        of the segment (rounding: the worst-case float32 rounding of the knots' logits and of that
        evaluation, d * 2^-24 * |x| |W[:, c]| per logit, doubled for safety, which also covers that of
        E_t; `slack`, that of the norms). The segment's other images are scored by the dense product.
        SGD's weights drift along nearly straight lines over a few steps, so E_t is far smaller than
        W_t - W_p: on MNIST (batches of 100 and 1000) 1 to 20% of the images are left to the dense
        product per segment, where a bound from the chunk's middle snapshot alone (|x| |W_t - W_m|, the
        proof before) left 20 to 100% of them (docs/benchmarks.md).
        """
        images, labels, norms = self.test_images, self.test_labels, self.image_norms
        count, (n, d) = snapshots.shape[0], images.shape
        if count <= 2:  # every snapshot a knot
            return _count_correct(images, labels, snapshots)
        knots = [*range(0, count - 1, SETTLE_SPAN), count - 1]
        logits = (images @ snapshots[knots].permute(1, 0, 2).reshape(d, -1)).view(n, len(knots), NUM_CLASSES)
        predicted = logits.argmax(dim=2)  # (n, knots)
        rounding = 8 * d * UNIT_ROUNDOFF * snapshots.norm(dim=1).max()
        slack = 1 + 4 * d * UNIT_ROUNDOFF
        counts = []
        for s, (p, q) in enumerate(zip(knots, knots[1:])):
            fraction = torch.arange(q - p + 1, dtype=snapshots.dtype).div_(q - p).view(-1, 1, 1)
            deviation = (snapshots[p : q + 1] - torch.lerp(snapshots[p], snapshots[q], fraction)).norm(dim=1).amax(0)
            top = predicted[:, s]
            ends = logits[:, s : s + 2]  # (n, 2, 10)
            margins = (ends.gather(2, top.view(n, 1, 1).expand(n, 2, 1)) - ends).amin(dim=1)  # (n, 10)
            needed = (deviation[top].unsqueeze(1) + deviation + rounding).mul_(slack * norms.unsqueeze(1))
            settled = (top == predicted[:, s + 1]) & ((margins > needed).scatter_(1, top.unsqueeze(1), True).all(dim=1))
            unsettled = (~settled).nonzero().squeeze(1)
            scored = snapshots[p : q + 1 if q == count - 1 else q]  # a segment scores its first knot, not its last
            dense = _count_correct(images.index_select(0, unsettled), labels.index_select(0, unsettled), scored)
            counts.append(dense + (settled & (top == labels)).sum())
        return torch.cat(counts)

    def _dual(self, snapshots, steps):
        """Images that some snapshot of the chunk may score either way (a mask), and per snapshot how
        many of the others it scores right: the dual form, for a chunk of T small batches of b rows.

        Step s subtracts alpha X_s^T R_s from W (X_s its batch's rows, R_s its residuals), so the test
        logits under snapshot j are

            Z_j = X_test W_0 - alpha sum_{s<j} K_s R_s,    K_s = X_test X_s^T  (n_test x b)

        K_s from `TestKernel` (read from the data set's table, or one (n_test x d) x (d x T b) product),
        and Z_0 one (n_test x d) x (d x 10) product in float64, where scoring each snapshot takes T of
        (d x 10). The sums go in spans of D steps (`span_steps`: a span's prefix sums are one product,
        of D^2 b per image), each span from the last one's end. Whether image x is right under W_j is
        the sign of S_j(x) = Z_j[label] - max_{c != label} Z_j[c].

        K is exact: the product of the integer pixel values, whose partial sums are non-negative
        integers, so below 2^24 (exact in float32) wherever the result is (checked). Every computed
        logit is then within |x| E_j of the exact x . W_j[:, c], with, for float32 (unit roundoff u,
        gamma_n = n u / (1 - n u)), M the largest column norm of the chunk's weights and
        N_s = max_c sum_k |x_{s,k}| |R_s[c, k]| (x_{s,k} the step's rows as floats, pixel / 255):

            E_j = 2 [u M + 2 j u M + (gamma_{D b + 1} + 2 gamma_b + 5 u) alpha sum_{s<j} N_s]

        (Z_0 rounded to float32; each step's rounding of its update and of its gradient, as the training step
        computed them, and each span's sum; the increments' products over a span's D b rows, and the
        rounding of alpha R / 255^2; doubled for the second-order terms), by Cauchy-Schwarz on each
        rounded dot product (pixels are non-negative, so K <= |x| |x_s|). A float32 evaluation of a
        logit is within gamma_d |x| M of the exact one. So where |S_j(x)| > 2 |x| (E_j + gamma_d M),
        every float32 evaluation of W_j scores x as the sign of S_j(x) says; an image that fails this
        under some snapshot is scored by the dense product under every snapshot of the chunk, as
        `_settled` leaves them. A K entry of 2^24 or more (none on MNIST) is within gamma_d of the exact
        one (a float32 sum of non-negative terms), which adds gamma_d to the factor of alpha.
        """
        images, labels, norms = self.test_images, self.test_labels, self.image_norms
        count, (n, d) = snapshots.shape[0], images.shape
        batch = steps.pixels.shape[0] // count
        if self._images64 is None:  # made once
            self._images64 = images.double()
        products, exact = self.kernel.products(steps)  # K_s^T * 255^2 for a slice of the chunk's rows
        u, alpha = UNIT_ROUNDOFF, steps.alpha
        gamma = lambda k: k * u / (1 - k * u)  # noqa: E731
        largest = snapshots.norm(dim=1).max()
        # N_s for the steps before each snapshot, summed: (T,), 0 for the first.
        row_norms = (steps.pixels.float().norm(dim=1) / 255).view(count, 1, batch)
        per_step = (steps.residuals.abs() * row_norms).sum(dim=2).amax(dim=1)
        before = torch.cat([per_step.new_zeros(1), per_step[:-1].cumsum(0)])
        span_length = span_steps(batch)
        factor = gamma(span_length * batch + 1) + 2 * gamma(batch) + 5 * u
        if not exact:
            factor += gamma(d)
        j = torch.arange(count, dtype=torch.float32)
        error = 2 * (u * largest + 2 * j * u * largest + factor * alpha * before)
        threshold = 2 * (error + gamma(d) * largest)  # (T,), times |x|
        # Per span of D steps, P[(j, c), (s, k)] = -alpha / 255^2 R_s[c, k] for s < j, j = 1 .. D: the
        # changes of its logits after each of its steps (the last one the next span's first) are P K.
        increments = steps.residuals.mul(-alpha / 255**2)  # (T, 10, b)
        logits = (self._images64 @ snapshots[0].double()).float().T  # (10, n): the span's first snapshot's
        right = torch.empty(count, n, dtype=torch.bool)
        undecided = torch.zeros(n, dtype=torch.bool)
        label = labels.view(1, 1, n)
        for start in range(0, count, span_length):
            span = increments[start : start + span_length].permute(1, 0, 2)  # (10, D, b)
            length = span.shape[1]
            steps_before = torch.ones(length, length).tril_()  # [s < j], j = 1 .. D
            changes = (steps_before[:, None, :, None] * span[None]).reshape(-1, length * batch)
            kernel = products(slice(start * batch, (start + length) * batch))  # (D b, n)
            after = (changes @ kernel).view(length, NUM_CLASSES, n).add_(logits)  # after each step of the span
            z = torch.cat([logits[None], after[:-1]])  # the span's snapshots (a copy: scatter_ writes in it)
            logits = after[-1]
            labels_d = label.expand(length, 1, n)
            correct_logit = z.gather(1, labels_d).squeeze(1)
            margin = correct_logit - z.scatter_(1, labels_d, float("-inf")).amax(dim=1)  # (D, n): S_j(x)
            snapshot_range = slice(start, start + length)
            right[snapshot_range] = margin > 0
            undecided |= (margin.abs_() <= threshold[snapshot_range, None] * norms).any(dim=0)
        return undecided, (right & ~undecided).sum(dim=1)

    def latest(self):
        """(iteration, accuracy) of the last scored snapshot (a host sync)."""
        return self.evaluated[-1], self.scores[-1][-1].item() / self.test_labels.shape[0]

    def correct(self):
        """Correctly classified test images per iteration (-1 where not evaluated), as a NumPy array."""
        counts = np.full(self.iterations, -1, dtype=np.int64)
        if self.scores:
            counts[self.evaluated] = torch.cat(self.scores).cpu().numpy()
        return counts


def _count_correct(images, labels, snapshots):
    """Correct predictions of every snapshot (k, d, 10) on `images`, with one product: a (k,) tensor."""
    k = snapshots.shape[0]
    logits = (images @ snapshots.permute(1, 0, 2).reshape(-1, k * NUM_CLASSES)).view(-1, k, NUM_CLASSES)
    return (logits.argmax(dim=2) == labels[:, None]).sum(dim=0)
