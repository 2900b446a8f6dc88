#!/usr/bin/python3
"""Issue 22's training baseline: one training step of the seed TLB model in
PyTorch (Debian's python3-torch, 1.13.1), timed on this machine, fp32 and bf16
autocast, the step tlb-c's `tlb_bench --only step` times.

The model is bench/pytorch_infer.py's port (keras wiring), in training mode
with dropout 0.2 on the attention probabilities and on the FFN output, as
the seed config trains. First it checks the port against
../shared/golden/seed_keras.safetensors with dropout off: the loss and every
parameter gradient (golden README tolerances: err <= 1e-4 max|ref| + 1e-5 Gmax
per tensor), so the model timed is the model `tlb` trains.

The step, as train/train_step.c runs it: batch 2048 of 48x48x3 images in
micro-batches of 293 (the trainer's rule for this model: 6 of 293 and one of
290), forward, mean cross-entropy over the batch, backward accumulated over
the micro-batches, one AdamW update (lr 1e-4, weight decay 1e-4, eps 1e-7;
torch.optim.AdamW adds eps after the bias correction where Keras adds it
before: the same work). bf16: the forward and backward under
torch.autocast("cpu", dtype=torch.bfloat16) (products in bf16 through
oneDNN, master weights, gradients and AdamW in fp32).

Prints one CSV row per precision on stdout:
configuration,batch,micro_batch,threads,step_seconds,images_per_second,cpu_cores,peak_rss_mib
(median over --steps timed steps after one warm-up step; cpu_cores: user + sys
time of the process over wall time while timed; peak_rss_mib: the process's
high-water mark so far). On stderr: the golden check and which BLAS, core and
threads PyTorch used (bench/pytorch_blas.py, which also pins OpenBLAS's threads
and unsets inherited OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE before torch loads).

    /usr/bin/python3 bench/pytorch_train.py [--steps N] [--batch B] [--micro-batch M] [--precisions fp32,bf16]
        [--golden FILE] [--check-only] [--threads N] [--blas-threads N] [--openblas-coretype auto|none|NAME]

bench/train_vs_pytorch.sh alternates it with `tlb_bench --only step`.
"""
import argparse
import resource
import statistics
import sys
import time

import pytorch_blas


def parse_args(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--golden", default="../shared/golden/seed_keras.safetensors")
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=293, help="default: tlb's trainer rule for batch 2048")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per precision, after one warm-up step")
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16")
    ap.add_argument("--check-only", action="store_true", help="the golden check alone, no timing")
    pytorch_blas.add_args(ap)
    return ap.parse_args(argv)


ARGS = parse_args()
pytorch_blas.setup(ARGS)  # before numpy and torch load OpenBLAS

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pytorch_infer import TLB, read_safetensors  # noqa: E402


def golden_check(t):
    """Loss and every parameter gradient of the golden batch, dropout off,
    against the golden file; exits on a mismatch. Returns the worst
    normalised error."""
    model = TLB(t, drop=0.0).train()
    for p in model.parameters():
        p.requires_grad_(True)
    x = torch.from_numpy(t["x"].copy())
    labels = torch.from_numpy(t["labels"].astype(np.int64))
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    ref_loss = float(t["loss"])
    loss_err = abs(float(loss) - ref_loss) / abs(ref_loss)
    gmax = max(float(np.abs(t["grad." + k]).max()) for k in model.keys)
    worst, worst_name, frac, frac_name, bad = 0.0, "", 0.0, "", []
    for k, pk in model.keys.items():
        ref = t["grad." + k]
        got = model.p[pk].grad.numpy()
        err = float(np.abs(got - ref).max())
        scale = float(np.abs(ref).max())
        tol = 1e-4 * scale + 1e-5 * gmax
        if err > tol:
            bad.append(k)
        if err / tol > frac:
            frac, frac_name = err / tol, k
        # the relative error, over the gradients that are not exactly zero in
        # exact arithmetic (golden README: k.bias, ln_k.beta are round-off)
        if scale > 1e-6 * gmax and err / scale > worst:
            worst, worst_name = err / scale, k
    print("# pytorch_train.py: golden %s, dropout off: loss %.7f vs %.7f (rel err %.2e); %d gradients: worst "
          "max err / max|ref| %.2e (grad.%s), worst err / tolerance %.3f (grad.%s); %s" %
          (ARGS.golden, float(loss), ref_loss, loss_err, len(model.keys), worst, worst_name, frac, frac_name,
           "all within the golden tolerance" if not bad and loss_err <= 1e-4 else "MISMATCH"), file=sys.stderr)
    if bad or loss_err > 1e-4:
        sys.exit("pytorch_train.py: the PyTorch model disagrees with the golden loss or gradients: %s" %
                 ", ".join(bad[:5]))


def main(a):
    torch.set_num_threads(a.threads)
    pytorch_blas.report(torch, "pytorch_train.py")
    t = read_safetensors(a.golden)
    golden_check(t)
    if a.check_only:
        return
    model = TLB(t, drop=a.dropout).train()  # golden's parameters: the values do not change the work
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-7, weight_decay=1e-4)
    S = int(t["config.image_size"])
    g = torch.Generator().manual_seed(1)
    x = torch.rand(a.batch, S, S, 3, generator=g)
    y = torch.arange(a.batch) % int(t["config.num_classes"])
    xs, ys = torch.split(x, a.micro_batch), torch.split(y, a.micro_batch)
    print("configuration,batch,micro_batch,threads,step_seconds,images_per_second,cpu_cores,peak_rss_mib")
    for label, bf16 in (("pytorch fp32", False), ("pytorch bf16 autocast", True)):
        if ("bf16" if bf16 else "fp32") not in a.precisions.split(","):
            continue

        def step():
            opt.zero_grad(set_to_none=True)
            for xb, yb in zip(xs, ys):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = model(xb)
                # sum over the micro-batch / batch: the batch mean, as train_step scales it
                loss = F.cross_entropy(logits.float(), yb, reduction="sum") / a.batch
                loss.backward()
            opt.step()
            return float(loss)

        t0 = time.perf_counter()
        loss = step()  # warm-up: allocations, oneDNN primitives
        warm = time.perf_counter() - t0
        if not np.isfinite(loss):
            sys.exit("pytorch_train.py: %s: non-finite loss" % label)
        times = []
        with pytorch_blas.CpuMeter() as cpu:
            for _ in range(a.steps):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
        s = statistics.median(times)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print("%s,%d,%d,%d,%.4f,%.2f,%.2f,%.0f" % (label, a.batch, a.micro_batch, a.threads, s, a.batch / s,
                                                  cpu.cores, rss), flush=True)
        print("# pytorch_train.py: %s: warm-up step %.2f s, timed steps %s s" %
              (label, warm, " ".join("%.2f" % v for v in times)), file=sys.stderr)


if __name__ == "__main__":
    main(ARGS)
