"""tcmalloc for CPU runs: the entry points re-execute themselves once with it preloaded.

With glibc's malloc, a CPU training step of the quickstart's shape spends about half its
time in page faults: the LM head's ~0.8 GB of logits and their gradients go back to the OS
every step and are faulted in again on the next. tcmalloc keeps them, and the same step is
~1.5x faster (`python benchmarks/allocator.py`). LD_PRELOAD is read only when a process
starts, so `python -m storygen.train` (also evaluate, generate) execs itself once, before
torch is imported, with tcmalloc added to LD_PRELOAD; children (DDP ranks, sweep workers)
inherit it.

`STORYGEN_ALLOCATOR`: `auto` (default) preloads tcmalloc where it is installed and no GPU is
present; `tcmalloc` also on GPU machines; `system` never (glibc's malloc).
"""

from __future__ import annotations

import glob
import os
import platform
import subprocess
import sys

ENV_VAR = "STORYGEN_ALLOCATOR"
CHOICES = ("auto", "tcmalloc", "system")
# Set in the re-executed process: the library preloaded (loop guard and a record of it).
PRELOADED_VAR = "STORYGEN_PRELOADED_ALLOCATOR"
# Debian's libtcmalloc-minimal4 first (malloc only, no profiler), then full gperftools.
TCMALLOC_NAMES = (
    "libtcmalloc_minimal.so.4",
    "libtcmalloc.so.4",
    "libtcmalloc_minimal.so",
    "libtcmalloc.so",
)
# ldconfig -p tags each library with its ABI; only this machine's may be preloaded.
LDCONFIG_ABI = {"x86_64": "x86-64", "aarch64": "AArch64", "ppc64le": "64bit", "s390x": "64bit"}
INSTALL_HINT = "apt-get install libtcmalloc-minimal4 (Debian/Ubuntu) or gperftools"


def allocator_choice() -> str:
    choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        # exit status 2 and one line, as storygen.errors does for every user error
        print(
            f"error: {ENV_VAR}={choice!r} is not an allocator choice; "
            f"use one of {', '.join(CHOICES)}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return choice


def find_tcmalloc() -> str | None:
    """The tcmalloc shared library the dynamic loader would find, for this machine's ABI."""
    found = ldconfig_libraries()
    for name in TCMALLOC_NAMES:
        if name in found:
            return found[name]
    machine = platform.machine()
    folders = [
        f"/usr/lib/{machine}-linux-gnu",
        f"/lib/{machine}-linux-gnu",
        "/usr/lib64",
        "/usr/local/lib",
        "/usr/lib",
        *(f"{os.environ[var]}/lib" for var in ("CONDA_PREFIX", "VIRTUAL_ENV") if var in os.environ),
    ]
    for name in TCMALLOC_NAMES:
        for folder in folders:
            if os.path.isfile(path := os.path.join(folder, name)):
                return path
    return None


def ldconfig_libraries() -> dict[str, str]:
    """`ldconfig -p` as {soname: path}, this machine's ABI only (multiarch dirs included)."""
    ldconfig = next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.isfile(p)), "ldconfig"
    )
    try:
        listing = subprocess.run(
            [ldconfig, "-p"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    abi = LDCONFIG_ABI.get(platform.machine())
    libraries: dict[str, str] = {}
    for line in listing.splitlines():
        name, _, rest = line.strip().partition(" (")
        tags, _, path = rest.partition(") => ")
        if path and (abi is None or abi in tags.split(",")) and os.path.isfile(path):
            libraries.setdefault(name, path)
    return libraries


def gpu_present() -> bool:
    """An NVIDIA or AMD GPU, judged from device files (importing torch here would cost the
    seconds the re-exec saves)."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd"))


def preloaded_allocator() -> str | None:
    """A malloc replacement already in LD_PRELOAD (ours, or the user's own choice)."""
    for entry in os.environ.get("LD_PRELOAD", "").replace(" ", ":").split(":"):
        if any(name in os.path.basename(entry) for name in ("tcmalloc", "jemalloc", "mimalloc")):
            return entry
    return None


def preload_fast_allocator() -> None:
    """Re-execute this process once with tcmalloc in LD_PRELOAD, where that helps.

    Call it first thing in an entry point's `__main__`, before torch is imported. It returns
    without doing anything when the user chose `system`, an allocator is already preloaded
    (so it never loops), a GPU is present under `auto` (unmeasured there: the big tensors live
    on the GPU), or tcmalloc is not installed (a one-line hint under `tcmalloc`).
    """
    env = fast_allocator_env()
    if env is not None:
        restart_with(env)


def fast_allocator_env() -> dict[str, str] | None:
    """This process's environment with tcmalloc preloaded, or None where it should run as it
    is (see `preload_fast_allocator`)."""
    choice = allocator_choice()
    if choice == "system" or sys.platform != "linux":
        return None
    if os.environ.get(PRELOADED_VAR) or preloaded_allocator():
        return None
    if choice == "auto" and gpu_present():
        return None
    library = find_tcmalloc()
    if library is None:
        if choice == "tcmalloc":
            print(
                f"warning: {ENV_VAR}=tcmalloc but no tcmalloc found; {INSTALL_HINT}",
                file=sys.stderr,
            )
        return None
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    env[PRELOADED_VAR] = library
    # tcmalloc reports each allocation over 1 GiB on stderr; a 7B model's weights are many.
    env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
    return env


def restart_with(env: dict[str, str]) -> None:
    """Replace this process by itself, started again with `env`."""
    sys.stdout.flush()
    sys.stderr.flush()
    # sys.orig_argv keeps `-m storygen.train` and interpreter flags exactly as typed
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as exc:  # run on with the system allocator rather than not at all
        print(
            f"warning: could not restart with {env['LD_PRELOAD']} preloaded: {exc}", file=sys.stderr
        )
