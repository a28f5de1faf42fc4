"""Make the SDK importable from the source tree and keep plotting headless."""

import os
import sys

import matplotlib

matplotlib.use("Agg")

SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if SDK_DIR not in sys.path:
    sys.path.insert(0, SDK_DIR)
