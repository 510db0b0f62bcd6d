"""Render ``envoy/compose.yaml`` (the docker-compose Envoy's configuration) from
``envoy/envoy.yaml.tmpl`` and ``envoy/rest.lua``.

``python scripts/envoy_config.py --check`` fails if the committed file is stale (the
test suite checks the same).
"""

from __future__ import annotations

import argparse
import sys

from baton_server.envoy import COMPOSE_CONFIG, compose_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args()
    wanted = compose_config()
    if args.check:
        if not COMPOSE_CONFIG.is_file() or COMPOSE_CONFIG.read_text() != wanted:
            print(
                f"{COMPOSE_CONFIG} is stale: run `python scripts/envoy_config.py`",
                file=sys.stderr,
            )
            return 1
        return 0
    COMPOSE_CONFIG.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
