#!/usr/bin/env python3
"""fsad vs the PyTorch CPU peer, side by side in one run.

For each case, runs fsad's Google Benchmark (build/bench/fsad_bench) and the peer
(../shared/peers/torch_cpu_bench.py in its fastest configuration: --malloc-tuned --adam-foreach
--openblas-auto) alternately, `--reps` times, with the same shapes and thread count, and prints
a table of images/s (for the BYOL step: base images/s = batch / step time), the ratio fsad/peer and both processes' peak resident memory per run
(the peer's includes the Python interpreter and PyTorch's libraries, roughly 300 MiB). Both sides run with OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset (the peer's --openblas-auto does the same for itself).

    python3 bench/compare_torch.py [--threads 2] [--reps 2] [--cases infer224x1,train64x64,...]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER = os.path.join(ROOT, "..", "shared", "peers", "torch_cpu_bench.py")
BENCH = os.environ.get("FSAD_BENCH_BIN", os.path.join(ROOT, "build", "bench", "fsad_bench"))

# name -> (fsad benchmark regex, peer mode, res, batch, extra peer flags)
CASES = {
    "infer224x1": ("^infer/resnet18/224/1/", "infer", 224, 1, []),
    # fsad with its weights prepared once (nn::Module::prepare_inference, what fsad::Detector runs
    # with) against the same eager peer: the peer script has no prepacked-weights mode
    "infer224x1p": ("^infer_prepared/resnet18/224/1/", "infer", 224, 1, []),
    "infer224x32": ("^infer/resnet18/224/32/", "infer", 224, 32, []),
    "infer224x32p": ("^infer_prepared/resnet18/224/32/", "infer", 224, 32, ["--channels-last"]),
    "infer224x32cl": ("^infer/resnet18/224/32/", "infer", 224, 32, ["--channels-last"]),
    "train224x16": ("^train_step/224/16/", "train", 224, 16, []),
    "train64x64": ("^train_step/64/64/", "train", 64, 64, []),
    "byol64x64": ("^byol_step/64/64/", "byol", 64, 64, []),
    "byol128x64": ("^byol_step/128/64/", "byol", 128, 64, []),
}


BLAS = "unknown"  # fsad's OpenBLAS kernels, from its benchmark JSON's context


def env_for_bench():
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    return env


def run(cmd, env):
    """Runs cmd; returns (stdout, peak resident set size of that process tree's largest process in MiB)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise RuntimeError(f"{cmd[0]} failed with {p.returncode}")
    return out, usage.ru_maxrss / 1024.0


def run_fsad(regex, threads, min_time):
    env = env_for_bench()
    env["FSAD_BENCH_THREADS"] = str(threads)
    out, rss = run([BENCH, f"--benchmark_filter={regex}", "--benchmark_format=json",
                    f"--benchmark_min_time={min_time}"], env)
    doc = json.loads(out)
    global BLAS
    BLAS = doc.get("context", {}).get("blas", BLAS)
    b = doc["benchmarks"][0]
    return {"imgs_per_s": b.get("img/s", b.get("base_img/s")), "rss_MiB": rss}


def run_peer(mode, res, batch, threads, extra, min_time):
    cmd = ["/usr/bin/python3", PEER, "--mode", mode, "--res", str(res), "--batch", str(batch), "--threads",
           str(threads), "--malloc-tuned", "--adam-foreach", "--openblas-auto", "--min-time", str(min_time)] + extra
    # the peer re-executes itself (exec keeps the pid), so wait4 sees the measuring process
    out, rss = run(cmd, env_for_bench())
    for line in out.splitlines():
        d = json.loads(line)
        if d.get("kind") == mode:
            return {"imgs_per_s": d.get("imgs_per_s", d.get("base_imgs_per_s")), "rss_MiB": rss}
    raise RuntimeError("peer printed no result: " + out)


def gauss_cases(threads, min_time):
    """Density fit (Ledoit-Wolf + Cholesky, 512-d, 50 and 500 samples) and scoring of 10,000
    features: fsad's benchmarks against the peer's --mode gauss operations."""
    env = env_for_bench()
    env["FSAD_BENCH_THREADS"] = str(threads)
    out, _ = run([BENCH, "--benchmark_filter=^density", "--benchmark_format=json",
                  f"--benchmark_min_time={min_time}"], env)
    ours = {b["name"].replace("/real_time", ""): b["real_time"] for b in json.loads(out)["benchmarks"]}
    cmd = ["/usr/bin/python3", PEER, "--mode", "gauss", "--threads", str(threads), "--malloc-tuned", "--openblas-auto",
           "--samples", "50", "500"]
    out, _ = run(cmd, env_for_bench())
    peer = {}
    for line in out.splitlines():
        d = json.loads(line)
        if d.get("kind") == "gauss":
            peer[(d["op"], d["n_fit"])] = d["median_ms"]
    rows = []
    for n in (50, 500):
        p = peer[("fit_ledoitwolf_cov", n)] + peer[("cholesky", n)]
        f = ours[f"density_fit/{n}/512"]
        rows.append((f"fit {n}x512 (LW + Cholesky)", f, p, "fit_ledoitwolf_cov + cholesky"))
    for n in (50, 500):
        f = ours[f"density_score/10000/512/{n}"]
        for op in ("score_10k_cholesky_trsm_f64", "score_10k_precision_f64", "score_10k_precision_f32"):
            rows.append((f"score 10k, fit on {n}", f, peer[(op, 50)], op))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--min-time", type=float, default=3.0)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--gauss", action="store_true", help="also compare the density fit and scoring")
    a = p.parse_args()
    if not os.path.exists(PEER):
        sys.exit(f"peer not found: {PEER} (needs ../shared)")
    if not os.path.exists(BENCH):
        sys.exit(f"fsad benchmark not built: {BENCH}")
    rows = []
    for name in filter(None, a.cases.split(",")):  # --cases "" with --gauss: the density only
        regex, mode, res, batch, extra = CASES[name]
        for rep in range(a.reps):
            f = run_fsad(regex, a.threads, a.min_time)
            t = run_peer(mode, res, batch, a.threads, extra, a.min_time)
            rows.append((name, rep + 1, f["imgs_per_s"], t["imgs_per_s"], f["imgs_per_s"] / t["imgs_per_s"],
                         f["rss_MiB"], t["rss_MiB"]))
            print(f"{name} run {rep + 1}: fsad {f['imgs_per_s']:.2f} img/s, peer {t['imgs_per_s']:.2f} img/s, "
                  f"ratio {rows[-1][4]:.2f}", file=sys.stderr, flush=True)
    if a.gauss:
        for rep in range(a.reps):
            grows = gauss_cases(a.threads, a.min_time / 4)
            print(f"\n| density case (run {rep + 1}) | fsad ms | PyTorch/NumPy ms | peer op | speed-up |")
            print("| --- | --- | --- | --- | --- |")
            for name, f, t, op in grows:
                print(f"| {name} | {f:.2f} | {t:.2f} | {op} | {t / f:.2f} |")
    print(f"\n| case | run | fsad img/s | PyTorch img/s | fsad / PyTorch | fsad peak RSS MiB | PyTorch peak RSS MiB |"
          f"  (threads={a.threads})")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.0f} | {r[6]:.0f} |")
    print(f"\nfsad's BLAS: {BLAS}")


if __name__ == "__main__":
    main()
