#!/usr/bin/env python3
"""Fits the polynomial of the crate's fast exp (code/src/fast/fast_exp.rs) and prints its coefficients.

    venv/bin/python scripts/fit_exp.py      # numpy only (scripts/requirements.txt pins it)

`exp_approx` writes x = n·ln 2 + r with |r| <= ln 2 / 2 and needs exp(r) there. This script finds
p(r) = 1 + r + c2·r² + c3·r³ + c4·r⁴ + c5·r⁵ + c6·r⁶ whose largest *relative* error on that interval
is as small as it can be (a minimax fit): least squares on a dense grid, reweighted towards the
points where the error is largest until the error levels out (Lawson's algorithm). The constant and
linear coefficients are fixed at 1, which f32 stores exactly. It prints the coefficients rounded to
f32, as the Rust source has them, and the largest relative error of the rounded polynomial in exact
arithmetic (about 4e-9: far below f32's own rounding, 6e-8, so the f32 result's error is set by the
rounding of its few operations; the crate's tests measure it).
"""

import numpy as np

DEGREE = 6
GRID = 40_001
ROUNDS = 80


def fit():
    half = np.log(2.0) / 2.0
    r = np.linspace(-half, half, GRID)
    exact = np.exp(r)
    powers = np.stack([r**k for k in range(2, DEGREE + 1)], axis=1)
    weights = np.ones_like(r)
    for _ in range(ROUNDS):
        w = weights / exact  # relative error: divide each row by exp(r)
        coeffs, *_ = np.linalg.lstsq(powers * w[:, None], (exact - 1.0 - r) * w, rcond=None)
        error = (1.0 + r + powers @ coeffs - exact) / exact
        weights = weights * (np.abs(error) / np.abs(error).max()) ** 0.3 + 1e-12
    rounded = coeffs.astype(np.float32)
    error = (1.0 + r + powers @ rounded.astype(np.float64) - exact) / exact
    return rounded, np.abs(error).max()


def main():
    coeffs, worst = fit()
    for k, c in enumerate(coeffs, start=2):
        print(f"c{k} = {float(c)!r}")
    print(f"largest relative error of the f32 coefficients, exact arithmetic: {worst:.3g}")


if __name__ == "__main__":
    main()
