"""minidl-bench: the CPU benchmark installed with minidl (`minidl-bench`, `python -m minidl.bench`).

    minidl-bench --quick                     # under a minute on 2 cores
    minidl-bench --full --threads 1,2,4 --json bench.json --plot bench.png
    minidl-bench --only gemm,conv

Modules: case (what a case is, the registry), kernel_cases and model_cases (the cases, shared
with the repository's pytest-benchmark suite), torch_models (PyTorch twins of minidl's models),
timing, machine (CPU, load, FMA peak), worker (the child process per engine), runner (the
parent), report (text, JSON, plot, progress), cli.
"""
