"""absl entrypoints: each parses its flags and calls the library."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
