#!/usr/bin/python3
"""Issue 15's baseline: the seed TLB model in PyTorch (Debian's python3-torch,
1.13.1), eval mode and inference mode, timed on this machine.

It first loads ../shared/golden/seed_keras.safetensors (the independent float64
reference) and checks that its logits match, so the model timed is the same
model `tlb` runs. Then it times the forward pass at batch 256 on 2 threads in
fp32 and in bf16 autocast, median of repeated calls, and prints one CSV row per
precision (configuration,batch,threads,batch_seconds,images_per_second, the
format of build/bench/infer.csv, then cpu_cores: the process's user + sys time
over wall time while it was timed).

Before numpy and torch load, bench/pytorch_blas.py sets a fair BLAS (OpenBLAS's
threads pinned, inherited OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, the core
type set from the ISA if OpenBLAS does not know the CPU); on stderr it says
which BLAS, core and how many threads PyTorch used.

    /usr/bin/python3 bench/pytorch_infer.py [--golden FILE] [--seconds S] [--batch B] [--precisions fp32,bf16]
        [--threads N] [--blas-threads N] [--openblas-coretype auto|none|NAME] [--keep-blas-env]

bench/infer_vs_pytorch.sh runs it and `tlb_bench --only infer` back to back.
bench/pytorch_train.py imports the model (TLB, with dropout for training) from here.
"""
import argparse
import json
import math
import statistics
import struct
import sys
import time

import pytorch_blas


def parse_args(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--golden", default="../shared/golden/seed_keras.safetensors")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16")
    pytorch_blas.add_args(ap)
    return ap.parse_args(argv)


if __name__ == "__main__":  # OpenBLAS reads its environment when numpy or torch loads it
    ARGS = parse_args()
    pytorch_blas.setup(ARGS)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        dt = {"F32": np.float32, "I32": np.int32}[t["dtype"]]
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(t["shape"])
    return out


def layer_norm(x, p, name):
    return F.layer_norm(x, (x.shape[-1],), p[name + ".gamma"], p[name + ".beta"], 1e-5)


class TLB(torch.nn.Module):
    """The Keras wiring of golden/README.md, section "Model (exact semantics)".
    `drop`: the dropout rate on the attention probabilities and on the FFN
    output before its residual add, applied in training mode only (0.2 in the
    seed config; the golden outputs are without it)."""

    def __init__(self, tensors, drop=0.0):
        super().__init__()
        self.drop = drop
        cfg = {k[len("config."):]: int(v) for k, v in tensors.items() if k.startswith("config.")}
        if cfg["wiring"] != 0:
            sys.exit("pytorch_infer.py: only the keras wiring is written here")
        self.cfg = cfg
        names = [k for k in tensors if not k.startswith(("config.", "grad.", "adamw.", "trace."))
                 and k not in ("x", "labels", "logits", "loss")]
        self.p = torch.nn.ParameterDict()
        self.keys = {}
        for i, k in enumerate(names):  # ParameterDict keys may not contain dots
            self.keys[k] = "p%d" % i
            self.p[self.keys[k]] = torch.nn.Parameter(torch.from_numpy(tensors[k].copy()), requires_grad=False)
        self.modules_ = []
        for layer in range(cfg["num_layers"]):
            self.modules_.append(layer)
            if layer % cfg["r"] == 0:
                self.modules_.append(layer)

    def w(self, name):
        return self.p[self.keys[name]]

    def attn(self, a, x_q, x_kv):
        H, K = self.cfg["num_heads"], self.cfg["key_dim"]
        W = lambda n: self.w(a + "." + n)
        q = F.linear(F.layer_norm(x_q, (x_q.shape[-1],), W("ln_q.gamma"), W("ln_q.beta"), 1e-5),
                     W("q.kernel").t(), W("q.bias"))
        k = F.linear(F.layer_norm(x_kv, (x_kv.shape[-1],), W("ln_k.gamma"), W("ln_k.beta"), 1e-5),
                     W("k.kernel").t(), W("k.bias"))
        v = F.linear(F.layer_norm(x_kv, (x_kv.shape[-1],), W("ln_v.gamma"), W("ln_v.beta"), 1e-5),
                     W("v.kernel").t(), W("v.bias"))
        B, Tq, Tk = x_q.shape[0], x_q.shape[1], x_kv.shape[1]
        q = q.view(B, Tq, H, K).transpose(1, 2)
        k = k.view(B, Tk, H, K).transpose(1, 2)
        v = v.view(B, Tk, H, K).transpose(1, 2)
        att = F.dropout(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(K), dim=-1), self.drop, self.training) @ v
        att = att.transpose(1, 2).reshape(B, Tq, H * K)
        return x_q + F.linear(att, W("o.kernel").t(), W("o.bias"))

    def ffn(self, f, x):
        W = lambda n: self.w(f + "." + n)
        h = F.layer_norm(x, (x.shape[-1],), W("ln.gamma"), W("ln.beta"), 1e-5)
        h = F.gelu(F.linear(h, W("fc1.kernel").t(), W("fc1.bias")))
        return x + F.dropout(F.linear(h, W("fc2.kernel").t(), W("fc2.bias")), self.drop, self.training)

    def forward(self, x):
        c = self.cfg
        P, D, C, r = c["patch_size"], c["embed_dim"], c["chunk_size"], c["r"]
        # channels-last input, HWIO kernel: conv2d wants NCHW / OIHW
        tok = F.conv2d(x.permute(0, 3, 1, 2), self.w("patch.conv.kernel").permute(3, 2, 0, 1),
                       self.w("patch.conv.bias"), stride=P)
        tok = tok.flatten(2).transpose(1, 2) + self.w("patch.pos_emb")
        tok = F.layer_norm(tok, (D,), self.w("patch.ln.gamma"), self.w("patch.ln.beta"), 1e-5)
        B, N = tok.shape[0], tok.shape[1]
        slow = torch.zeros(B, C, D, dtype=tok.dtype)
        for ch in range(N // C):
            fast = tok[:, ch * C:(ch + 1) * C]
            for i in range(len(self.modules_)):
                fast = self.ffn("pm.%d.ffn" % i, self.attn("pm.%d.attn_fast" % i, fast, fast))
                if i % r == 0:
                    fast = self.ffn("pm.%d.ffn" % i, self.attn("pm.%d.attn_slow" % i, fast, slow))
            if ch < N // C - 1:  # the last update does not reach the logits
                slow = self.ffn("tlb.ffn", self.attn("tlb.attn", slow, fast))
        return F.linear(fast.mean(1), self.w("head.kernel").t(), self.w("head.bias"))


def median_seconds(fn, budget):
    fn()  # warm-up
    times, start = [], time.perf_counter()
    while not times or time.perf_counter() - start < budget:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(a):
    torch.set_num_threads(a.threads)
    pytorch_blas.report(torch, "pytorch_infer.py")
    t = read_safetensors(a.golden)
    model = TLB(t).eval()
    with torch.inference_mode():
        got = model(torch.from_numpy(t["x"].copy())).numpy()
    err = float(np.abs(got - t["logits"]).max() / np.abs(t["logits"]).max())
    print("# PyTorch %s, %d threads; logits vs %s: max err / max|ref| = %.2e" %
          (torch.__version__, a.threads, a.golden, err), file=sys.stderr)
    if err > 1e-4:
        sys.exit("pytorch_infer.py: the PyTorch model disagrees with the golden logits")
    S = t["config.image_size"]
    x = torch.rand(a.batch, int(S), int(S), 3, generator=torch.Generator().manual_seed(1))
    print("configuration,batch,threads,batch_seconds,images_per_second,cpu_cores")
    for label, autocast in (("pytorch fp32", False), ("pytorch bf16 autocast", True)):
        if ("bf16" if autocast else "fp32") not in a.precisions.split(","):
            continue
        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                model(x)
        with pytorch_blas.CpuMeter() as cpu:
            s = median_seconds(run, a.seconds)
        print("%s,%d,%d,%.5f,%.2f,%.2f" % (label, a.batch, a.threads, s, a.batch / s, cpu.cores), flush=True)


if __name__ == "__main__":
    main(ARGS)
