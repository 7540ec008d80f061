"""Make the submitted working dir importable: `python ray_jobs/X.py` puts ray_jobs/ on sys.path,
not the repository root that `ray job submit --working-dir .` uploads."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
