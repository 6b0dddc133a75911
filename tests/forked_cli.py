"""`python -m storygen.<command> ...` without paying the imports every time.

A command-line test runs the command in a process of its own, but about 4 of a command's
5 seconds go to importing torch, Lightning, transformers, datasets and W&B. Each test process
keeps one server process that has imported them (and storygen's entry modules); it forks a
child per command, and the child does what `python -m` does from there: the command's cwd
and environment, `.env` read again from that cwd, argv, stdout and stderr to their own files,
the module run as `__main__`, the interpreter's own exit (exit status, `atexit`, tracebacks).

A library may read the environment at import, so a command whose environment differs from the
server's gets a new server started with it. Commands whose start-up is what a test checks
(tests/test_allocator.py, the lazy-import tests) run a fresh `python -m` of their own.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# set per test by pytest, and by Lightning's seed_everything in a test that trains in-process;
# read while a command runs, not at import
IGNORED = {"PYTEST_CURRENT_TEST", "PL_GLOBAL_SEED", "PL_SEED_WORKERS"}
ENTRY_MODULES = ("storygen.train", "storygen.evaluate", "storygen.generate", "storygen.export")


def _comparable(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key not in IGNORED}


class ForkServer:
    """One server process, serving one command at a time (a test process runs one test)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = dict(env)
        self._cwd = tempfile.TemporaryDirectory(prefix="forked-cli-")  # no .env to read
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.forked_cli", *ENTRY_MODULES],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=self._cwd.name,
            env=self.env,
        )
        self._buffer = b""
        self._read_line(timeout=600)  # "ready": the imports are done

    def serves(self, env: dict[str, str]) -> bool:
        return self.process.poll() is None and _comparable(env) == _comparable(self.env)

    def _read_line(self, timeout: float) -> dict | None:
        """The server's next message; None when `timeout` passes first."""
        stdout = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([stdout], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(stdout, 4096)
            if not chunk:
                raise RuntimeError("the fork server ended")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def run(
        self, module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", module, *args]
        with tempfile.TemporaryDirectory(prefix="forked-cli-output-") as output:
            streams = {name: str(Path(output) / name) for name in ("stdout", "stderr")}
            request = {"module": module, "args": args, "cwd": str(cwd), "env": env, **streams}
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            pid = self._read_line(timeout=60)["pid"]
            ended = self._read_line(timeout=timeout)
            if ended is None:
                os.kill(pid, signal.SIGKILL)
                self._read_line(timeout=60)
            stdout, stderr = (Path(streams[name]).read_text(errors="replace") for name in streams)
        if ended is None:
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
        return subprocess.CompletedProcess(command, ended["returncode"], stdout, stderr)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)
        self._cwd.cleanup()


_server: ForkServer | None = None


def run(
    module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """`python -m module args` from `cwd` with `env`, forked from a server started with `env`."""
    global _server
    if _server is None or not _server.serves(env):
        _close_server()
        _server = ForkServer(env)
    return _server.run(module, args, cwd, env, timeout)


@atexit.register
def _close_server() -> None:
    if _server is not None:
        _server.close()


def _run_command(request: dict) -> None:
    """In the forked child: become `python -m <module> <args>`; never returns."""
    import random
    import runpy
    import types

    import numpy

    from storygen.environment.resolvers import setup_environment

    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the interpreter's own stdin)
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()  # as `python -m` puts it
    os.environ.clear()
    os.environ.update(request["env"])
    # what a fresh process would have: its own random state, `.env` from its cwd
    random.seed()
    numpy.random.seed()
    setup_environment()
    sys.argv = ["-m", *request["args"]]
    sys.modules["__main__"] = types.ModuleType("__main__")  # not the server's namespace
    runpy._run_module_as_main(request["module"], alter_argv=True)
    raise SystemExit(0)


def _serve(entry_modules: list[str]) -> None:
    import gc
    import importlib

    for module in entry_modules:
        importlib.import_module(module)
    for module in entry_modules:  # what they import stays; each command runs its own afresh
        package, _, name = module.rpartition(".")
        del sys.modules[module]
        delattr(sys.modules[package], name)
    # Leave what the imports made out of the children's garbage collections, their exit's
    # included: collecting touches every object, which copies the server's memory into each
    # child (1.6 s of a command's 2 s)
    gc.freeze()
    protocol = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may write into the protocol

    def send(message: dict) -> None:
        os.write(protocol, json.dumps(message).encode() + b"\n")

    send({"ready": True})
    for line in sys.stdin.buffer:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.close(protocol)
            _run_command(request)
        send({"pid": pid})
        _, status = os.waitpid(pid, 0)
        send({"returncode": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    _serve(sys.argv[1:])
