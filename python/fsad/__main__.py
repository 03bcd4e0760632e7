"""python -m fsad ARGS: runs the fsad command-line tool (fit, score, eval, demo, info, synth, bench).

The tool is looked for in $FSAD_CLI, then beside this package (bin/fsad, where `pip install .`
puts it), then on PATH."""
import os
import shutil
import sys


def find_cli():
    env = os.environ.get("FSAD_CLI")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "fsad")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    return shutil.which("fsad")


def main():
    cli = find_cli()
    if not cli:
        sys.stderr.write("python -m fsad: the fsad tool was not found (set FSAD_CLI, install the package with "
                         "`pip install .`, or put fsad on PATH)\n")
        return 127
    os.execv(cli, [cli] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
