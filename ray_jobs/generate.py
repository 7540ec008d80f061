"""Ray job entrypoint for `sqltrain generate` (arguments as for the CLI verb).

    RAY_AUTH_MODE=token ray job submit --address http://HEAD:8265 --runtime-env ray_jobs/runtime_env.yaml \
        -- python ray_jobs/generate.py --help
"""

import sys

import _bootstrap  # noqa: F401  (puts the repository root on sys.path)

from sqltrain.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
