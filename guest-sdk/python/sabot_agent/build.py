"""python -m sabot_agent.build AGENT.py [-o AGENT.wasm]

Makes a Sabot agent component of the ``timed-agent`` world from a Python module, with
componentize-py: the module, its directory, this SDK and the ``flatbuffers`` library go in; the
component imports only what the host offers (the agent interfaces and WASI).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import flatbuffers

HERE = Path(__file__).resolve().parent


def wit_dir() -> Path:
    candidates = [os.environ.get("SABOT_WIT"), HERE / "wit", HERE.parent.parent.parent / "wit"]
    for c in candidates:
        if c and (Path(c) / "worlds.wit").exists():
            return Path(c)
    sys.exit(f"sabot_agent.build: cannot find the Sabot WIT (looked in {[str(c) for c in candidates if c]}); set SABOT_WIT")


def componentize_py() -> str:
    beside = Path(sys.executable).parent / "componentize-py"
    found = str(beside) if beside.exists() else shutil.which("componentize-py")
    if not found:
        sys.exit("sabot_agent.build: componentize-py is not installed (pip install componentize-py)")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sabot_agent.build", description=__doc__.splitlines()[2])
    parser.add_argument("agent", type=Path, help="the agent's module (a .py file)")
    parser.add_argument("-o", "--output", type=Path, help="the component to write (default: AGENT.wasm)")
    args = parser.parse_args(argv)
    agent = args.agent.resolve()
    if not agent.is_file() or agent.suffix != ".py":
        parser.error(f"{args.agent}: expected an existing .py file")
    output = (args.output or agent.with_suffix(".wasm")).resolve()
    name = agent.stem
    if name in ("app", "sabot_agent", "wit_world"):
        parser.error(f"{agent.name}: rename the module; `{name}` is taken by the build")

    with tempfile.TemporaryDirectory(prefix="sabot-agent-") as work:
        (Path(work) / "sabot_agent_app.py").write_text(
            f"import {name}\n"
            "from sabot_agent.runtime import bind\n"
            f"Handler, TimeHandler = bind({name})\n"
        )
        paths = [work, str(agent.parent), str(HERE.parent), str(Path(flatbuffers.__file__).parent.parent)]
        command = [componentize_py(), "-d", str(wit_dir()), "-w", "timed-agent", "componentize"]
        for p in paths:
            command += ["-p", p]
        command += ["sabot_agent_app", "-o", str(output)]
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        done = subprocess.run(command, env=env, cwd=work)
        if done.returncode != 0:
            return done.returncode
    size = output.stat().st_size / 1048576
    print(f"sabot_agent.build: wrote {output} ({size:.1f} MiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
