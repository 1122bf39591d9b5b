#!/usr/bin/env python3
"""A random-weight llama of about a billion parameters (F16, 2.2 GB), for the GPU check
(scripts/gpu.sh): real models cannot travel to the GPU machine, and speed does not depend on
what the weights say. Same small vocab and chat template as tiny-llama.gguf.

Usage: make_random_llama.py OUT_FILE [--layers 18] [--seed N]
  (n_embd 2048, 32 heads, 8 KV heads, n_ff 8192: 61M parameters a layer; 18 layers: 1.09B)
"""
import argparse, os, sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_llava import make_text  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_file")
    ap.add_argument("--layers", type=int, default=18)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    make_text(a.out_file, np.random.default_rng(a.seed), n_embd=2048, n_head=32, n_head_kv=8,
              n_layer=a.layers, n_ff=8192, n_ctx=4096, name="random-llama-1b")
    print(a.out_file, os.path.getsize(a.out_file))


if __name__ == "__main__":
    main()
