"""`python -m expandsearch_verl.cpu overrides [USER_ARGS...]` / `env`: what DEVICE=cpu adds to a recipe.

`overrides` prints the backend's verl overrides, one a line, after checking the user's arguments
(exit 2 with the setting and the fix if one needs a GPU); `env` prints `KEY=VALUE` lines.
"""

from __future__ import annotations

import sys

from expandsearch_verl.cpu.overrides import ENV, OVERRIDES, GPUOnlySetting, check_arguments


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("overrides", "env"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if argv[0] == "env":
        print("\n".join(f"{key}={value}" for key, value in ENV.items()))
        return 0
    try:
        check_arguments(argv[1:])
    except GPUOnlySetting as error:
        print(f"DEVICE=cpu: {error}", file=sys.stderr)
        return 2
    print("\n".join(OVERRIDES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
