"""A fair BLAS for the PyTorch baselines (bench/pytorch_infer.py,
bench/pytorch_train.py), set up before numpy or torch is loaded.

Debian's python3-torch does its fp32 products through libblas.so.3, which is
OpenBLAS when libopenblas0-openmp or -pthread is installed (the reference
BLAS otherwise, ~14x slower). OpenBLAS reads its settings from the
environment when it loads, so `setup()` must run first:

- OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE inherited from the caller are unset
  (a core type set for another CPU picks the wrong kernels). If OpenBLAS then
  does not recognise the CPU and falls back to its generic SSE3 kernels
  (Prescott; OpenBLAS 0.3.21 on a KVM Xeon of model 207 does), the core type
  is set from the CPU's ISA instead: SKYLAKEX with AVX-512, HASWELL with AVX2
  (a 2344x256x64 product: 54 GFLOP/s as Prescott, 203 as SkylakeX, on that VM,
  one reading each on a loaded machine).
  `--openblas-coretype NAME` forces one, `--openblas-coretype none` keeps it unset.
- OpenBLAS's threads are pinned: with the OpenMP build they run in the same
  OpenMP pool as PyTorch's own, so as many as torch's (--threads); the
  pthread build keeps a pool of its own that competes with PyTorch's OpenMP
  threads, so 1 (its products then run on one core: prefer
  libopenblas0-openmp). `--blas-threads N` overrides.

`report()` then prints, on stderr, what PyTorch actually uses (the BLAS file,
OpenBLAS's core and threads, torch's threads, threadpoolctl's view when it is
installed), and `CpuMeter` measures the process's CPU use (user + sys over wall
time) around a timed run.
"""
import ctypes
import os
import resource
import subprocess
import sys
import time

BLAS_SO = "libblas.so.3"
_state = {}


def add_args(ap):
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--blas-threads", type=int, default=0,
                    help="OPENBLAS_NUM_THREADS (default: --threads with OpenBLAS's OpenMP build, 1 with pthread)")
    ap.add_argument("--openblas-coretype", default="auto",
                    help="auto (default: unset; from the ISA if OpenBLAS does not know the CPU), none, or a name")
    ap.add_argument("--keep-blas-env", action="store_true",
                    help="leave OPENBLAS_* and OMP_NUM_THREADS as inherited (the unfair baseline, for comparison)")


def _blas_file():
    for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        p = os.path.join(d, BLAS_SO)
        if os.path.exists(p):
            return os.path.realpath(p)
    return None


def _variant(path):
    """The Debian package behind libblas.so.3."""
    if not path:
        return "none", "no libblas.so.3 found"
    for v in ("openmp", "pthread", "serial"):
        if "openblas-" + v in path:
            return v, "libopenblas0-" + v
    if "openblas" in path:
        return "openblas", "OpenBLAS"
    return "reference", "libblas3 (reference BLAS: ~14x slower; apt-get install libopenblas0-openmp)"


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


_PROBE = ("import ctypes,sys\n"
          "b=ctypes.CDLL(sys.argv[1]); f=b.openblas_get_corename; f.restype=ctypes.c_char_p\n"
          "print(f().decode())\n")
# OpenBLAS's names for its generic x86-64 fallback kernels (no AVX)
_GENERIC = {"prescott", "core2", "katmai", "coppermine", "northwood", "banias", "atom", "penryn", "dunnington",
            "generic", "unknown"}


def _detected_core(path, env):
    """The core OpenBLAS picks under `env`, asked in a child process (once
    loaded, OpenBLAS cannot be re-initialised in this one)."""
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE, path], env=env, capture_output=True, text=True,
                             timeout=60)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def setup(a):
    """Sets this process's environment from the parsed args `a` (add_args);
    call before numpy or torch is imported. Idempotent."""
    if _state:
        return
    notes = []
    path = _blas_file()
    variant, package = _variant(path)
    _state.update(path=path, variant=variant, package=package, notes=notes)
    if a.keep_blas_env:
        notes.append("BLAS environment kept as inherited (--keep-blas-env): " + ", ".join(
            "%s=%s" % (k, os.environ[k]) for k in sorted(os.environ)
            if k.startswith("OPENBLAS_") or k == "OMP_NUM_THREADS") or "none set")
        return
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if k in os.environ:
            notes.append("unset %s (was %s)" % (k, os.environ.pop(k)))
    if a.blas_threads > 0:
        bt, why = a.blas_threads, "--blas-threads"
    elif variant == "pthread":
        bt, why = 1, "pthread build: its own pool would compete with torch's OpenMP threads"
    else:
        bt, why = a.threads, "OpenMP build: the same pool as torch's threads"
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[k] = str(bt if k.startswith("OPENBLAS") else a.threads)
    notes.append("OPENBLAS_NUM_THREADS=%d (%s), OMP_NUM_THREADS=%d" % (bt, why, a.threads))
    ct = a.openblas_coretype
    if ct.lower() not in ("auto", "none"):
        os.environ["OPENBLAS_CORETYPE"] = ct
        notes.append("OPENBLAS_CORETYPE=%s (--openblas-coretype)" % ct)
    elif ct.lower() == "auto" and variant in ("openmp", "pthread", "serial", "openblas"):
        core = _detected_core(path, dict(os.environ))
        flags = _cpu_flags()
        pick = "SKYLAKEX" if "avx512f" in flags else "HASWELL" if {"avx2", "fma"} <= flags else None
        if core and core.lower() in _GENERIC and pick:
            os.environ["OPENBLAS_CORETYPE"] = pick
            notes.append("OPENBLAS_CORETYPE=%s: OpenBLAS took this CPU for %s (its generic SSE3 kernels), "
                         "set from the CPU's ISA (%s)" % (pick, core, "avx512f" if pick == "SKYLAKEX" else "avx2"))


def _openblas_in_process():
    """[(path, corename, threads, threading)] of every OpenBLAS loaded here
    (Debian's torch links libblas.so.3 and libopenblas.so.0: its fp32 products
    go through the first)."""
    found = []
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({w[-1] for w in (line.split() for line in f) if "blas" in w[-1] and ".so" in w[-1]})
    except OSError:
        return found
    for p in libs:
        try:
            lib = ctypes.CDLL(p, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
            name = lib.openblas_get_corename
        except (OSError, AttributeError):
            continue
        name.restype = ctypes.c_char_p
        par = {0: "sequential", 1: "pthread", 2: "openmp"}.get(lib.openblas_get_parallel(), "?")
        found.append((p, name().decode(), lib.openblas_get_num_threads(), par))
    return found


def report(torch, script):
    """Prints (stderr) which BLAS and how many threads PyTorch uses."""
    out = lambda s: print("# %s: %s" % (script, s), file=sys.stderr)
    out("PyTorch %s, torch.get_num_threads()=%d, get_num_interop_threads()=%d" %
        (torch.__version__, torch.get_num_threads(), torch.get_num_interop_threads()))
    cfg = torch.__config__.show()
    keep = []
    for part in cfg.replace("\n", ",").split(","):
        part = part.strip(" -")
        if part.startswith("Build settings:"):
            part = part[len("Build settings:"):].strip()
        if part.startswith(("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "USE_OPENMP", "CPU capability", "Intel(R) MKL",
                            "OpenMP", "LAPACK is")):
            keep.append(part)
    out("torch.__config__.show(): " + "; ".join(keep))
    out("libblas.so.3 -> %s (%s)" % (_state.get("path"), _state.get("package")))
    obs = _openblas_in_process()
    for ob in obs:
        out("OpenBLAS in this process: %s, core %s, %d threads, %s threading" % ob)
    if not obs:
        out("no OpenBLAS loaded in this process")
    for n in _state.get("notes", []):
        out("environment: " + n)
    try:
        import threadpoolctl
        pools = threadpoolctl.threadpool_info()
        out("threadpoolctl: " + "; ".join(
            "%s %s%s %d threads%s" % (p.get("prefix"), p.get("internal_api"),
                                     " " + p["version"] if p.get("version") else "", p.get("num_threads", -1),
                                     " (%s, %s)" % (p.get("architecture"), p.get("threading_layer"))
                                     if p.get("architecture") else "") for p in pools))
    except ImportError:
        out("threadpoolctl: not installed (apt-get install python3-threadpoolctl)")


class CpuMeter:
    """CPU use of this process (all its threads: user + sys) over wall time,
    around a block: `with CpuMeter() as c: ...` then c.cores."""

    def __enter__(self):
        r = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0, self.t0 = r.ru_utime + r.ru_stime, time.perf_counter()
        return self

    def __exit__(self, *exc):
        r = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - self.t0
        self.cores = (r.ru_utime + r.ru_stime - self.cpu0) / wall if wall > 0 else 0.0
        return False
