"""Compile the cplrun test recipes into a CPL plugin library.

Usage from Python::

    from build import build
    so_path = build("/tmp/recipes")   # -> "/tmp/recipes/cplrun_test_recipes.so"

or from the command line::

    python tests/recipes/build.py OUTDIR

The library is only rebuilt when it is older than one of the sources
(the ``*.c``/``*.h`` files in this directory, or this script).

``build_faults(outdir)`` (``python build.py --faults OUTDIR``) builds the
second library, ``cplrun_fault_recipes.so``, from ``faults/*.c``: the
misbehaving recipes of the fault, security and soak tests, kept apart so
that the main library's list of recipes stays as the tests expect.
``build_inject(outdir)`` builds ``cplrun_inject.so`` from ``inject/*.c``,
preloaded to make real pipeline recipes fail on demand.
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LIBNAME = "cplrun_test_recipes.so"
FAULT_LIBNAME = "cplrun_fault_recipes.so"
FAULT_DIR = os.path.join(HERE, "faults")
INJECT_LIBNAME = "cplrun_inject.so"
INJECT_DIR = os.path.join(HERE, "inject")

CFLAGS = ["-shared", "-fPIC", "-O1", "-g", "-fopenmp", "-Wall", "-Wextra"]
LIBS = ["-lcplcore", "-lcplui", "-lcpldfs", "-lm"]


class BuildError(RuntimeError):
    """The test recipe library could not be built."""


def sources(folder=HERE):
    """The C sources of a library (all .c files in its folder)."""
    return sorted(
        os.path.join(folder, name) for name in os.listdir(folder)
        if name.endswith(".c")
    )


def _dependencies(folder=HERE):
    deps = [os.path.abspath(__file__)]
    deps += [os.path.join(folder, name) for name in os.listdir(folder)
             if name.endswith((".c", ".h"))]
    if folder != HERE:      # the headers here serve the subfolders too
        deps += [os.path.join(HERE, name) for name in os.listdir(HERE)
                 if name.endswith(".h")]
    return deps


def _candidate_prefixes():
    prefixes = []
    cpldir = os.environ.get("CPLDIR")
    if cpldir:
        prefixes.append(cpldir)
    prefixes += ["/usr", "/usr/local"]
    return prefixes


def find_cpl_include():
    """Return the directory containing cpl.h.

    Looked for in $CPLDIR/include, /usr/include and /usr/local/include
    (and a ``cpl/`` subdirectory of each).
    """
    for prefix in _candidate_prefixes():
        for incdir in (os.path.join(prefix, "include"),
                       os.path.join(prefix, "include", "cpl")):
            if os.path.isfile(os.path.join(incdir, "cpl.h")):
                return incdir
    raise BuildError(
        "cpl.h not found in $CPLDIR/include, /usr/include or /usr/local/include"
    )


def _lib_flags(incdir):
    flags = []
    prefix = os.path.dirname(incdir.rstrip("/"))
    if os.path.basename(prefix) == "include":  # .../include/cpl
        prefix = os.path.dirname(prefix)
    if prefix not in ("/usr", "/usr/local"):
        for libdir in ("lib64", "lib"):
            path = os.path.join(prefix, libdir)
            if os.path.isdir(path):
                flags += ["-L" + path, "-Wl,-rpath," + path]
    return flags


def _up_to_date(target, folder=HERE):
    try:
        mtime = os.path.getmtime(target)
    except OSError:
        return False
    return all(os.path.getmtime(dep) < mtime for dep in _dependencies(folder))


def build(outdir: str, folder: str = HERE, libname: str = LIBNAME) -> str:
    """Compile the test recipes into ``outdir/cplrun_test_recipes.so``
    (or the sources of another folder into another library).

    Returns the path of the library.  Nothing is compiled if the library
    exists and is newer than the sources.  Raises BuildError if the
    compilation fails.
    """
    outdir = os.path.abspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    target = os.path.join(outdir, libname)
    if _up_to_date(target, folder):
        return target

    incdir = find_cpl_include()
    # compile into a temporary file and rename it, so that concurrent builds
    # (e.g. parallel test workers) never see a half-written library
    fd, tmp = tempfile.mkstemp(prefix=".cplrun_test_recipes.", suffix=".so",
                               dir=outdir)
    os.close(fd)
    cmd = (["gcc"] + CFLAGS + ["-I" + incdir] + sources(folder)
           + ["-o", tmp] + _lib_flags(incdir) + LIBS)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True)
        if proc.returncode != 0:
            raise BuildError("compilation failed:\n%s\n%s"
                             % (" ".join(cmd), proc.stdout))
        if proc.stdout.strip():
            sys.stderr.write(proc.stdout)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def build_faults(outdir: str) -> str:
    """Compile faults/*.c into ``outdir/cplrun_fault_recipes.so``."""
    return build(outdir, FAULT_DIR, FAULT_LIBNAME)


def build_inject(outdir: str) -> str:
    """Compile inject/*.c into ``outdir/cplrun_inject.so``, which makes
    real recipes fail on demand when preloaded (see the source)."""
    return build(outdir, INJECT_DIR, INJECT_LIBNAME)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    faults = argv[:1] == ["--faults"]
    if faults:
        argv = argv[1:]
    if len(argv) != 1:
        sys.stderr.write("usage: python build.py [--faults] OUTDIR\n")
        return 2
    try:
        print(build_faults(argv[0]) if faults else build(argv[0]))
    except BuildError as exc:
        sys.stderr.write("%s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
