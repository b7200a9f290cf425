"""`mixlab.bench`: parameters, FLOPs (FlopCounterMode + FFT/LSTM/CPU-attention formulas), step time and
throughput, peak memory, token-scaling sweeps, timm peers, and their tables, files and plots."""
from .flops import FlopReport, count_flops, fft_flops, model_flops
from .memory import peak_memory
from .run import BenchConfig, bench_model, bench_module, run_bench
from .sweep import FAMILIES, fit_exponent, run_sweep
from .timing import time_step

__all__ = ["BenchConfig", "FlopReport", "FAMILIES", "bench_model", "bench_module", "count_flops", "fft_flops",
           "fit_exponent", "model_flops", "peak_memory", "run_bench", "run_sweep", "time_step"]
