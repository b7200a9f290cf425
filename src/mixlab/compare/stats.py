"""Seed statistics of a compare table (scipy.stats does the distributions).

    mean ± sd           sample standard deviation (ddof 1) over the seeds
    95 % CI             mean ± t_{0.975, n−1} · sd / √n   (Student's t; needs n ≥ 2)
    against a baseline  difference of means, and Welch's t-test p-value (two-sided, unequal variances:
                        scipy.stats.ttest_ind(a, b, equal_var=False))
"""
import math

STATS_MISSING = "the seed statistics need scipy: pip install 'mixlab[compare]'"


def _scipy_stats():
    try:
        from scipy import stats
    except ImportError:
        raise ImportError(STATS_MISSING) from None
    return stats


def describe(values):
    """{n, mean, sd, ci95: [lo, hi]} of a list of numbers; sd and CI None for a single value."""
    n = len(values)
    if not n:
        return {"n": 0, "mean": None, "sd": None, "ci95": None}
    mean = sum(values) / n
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "ci95": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _scipy_stats().t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci95": [mean - half, mean + half]}


def welch(a, b):
    """{difference: mean(a) − mean(b), p: Welch's two-sided p-value or None} for two lists of seed values.
    p is None with fewer than two values on a side, or when both sides have no spread (the test is undefined)."""
    diff = sum(a) / len(a) - sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return {"difference": diff, "p": None}
    import warnings
    with warnings.catch_warnings():   # equal seed values: scipy warns of cancellation, and p is then nan → None
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(_scipy_stats().ttest_ind(a, b, equal_var=False).pvalue)
    return {"difference": diff, "p": None if math.isnan(p) else p}
