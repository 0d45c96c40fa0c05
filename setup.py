"""Build of cplrun: the Python package `cpl` and its recipe runner.

The runner (``src_c/``) is a small C program linked against the system's
CPL; it is built into ``cpl/_bin/``.  CPL is looked for where Debian,
ESO's kits and MacPorts put it, or under ``$CPLDIR``."""
import glob
import os
import sys

from setuptools import Distribution, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER_SOURCES = sorted(glob.glob(os.path.join('src_c', '*.c')))
CPL_LIBRARIES = ['cplui', 'cpldfs', 'cplcore']


def find_cpl():
    """(include folder, library folder or None) of an installed CPL."""
    prefixes = [os.environ['CPLDIR']] if os.environ.get('CPLDIR') else []
    prefixes += ['/usr', '/usr/local', '/opt/local',
                 os.path.expanduser('~/pipelines')]
    for prefix in prefixes:
        for include in (os.path.join(prefix, 'include'),
                        os.path.join(prefix, 'include', 'cpl')):
            if os.path.exists(os.path.join(include, 'cpl.h')):
                libdirs = [d for d in glob.glob(os.path.join(prefix, 'lib*'))
                           + glob.glob(os.path.join(prefix, 'lib', '*-linux-gnu'))
                           if glob.glob(os.path.join(d, 'libcplcore.*'))]
                return include, (libdirs[0] if libdirs else None)
    sys.exit('cplrun needs CPL: no cpl.h found under %s. Install it '
             '(Debian: apt-get install libcpl-dev) or set CPLDIR to its '
             'prefix.' % ', '.join(prefixes))


class BuildRunner(build_ext):
    """Builds the runner executable next to the package's modules."""

    def run(self):
        super().run()
        include, libdir = find_cpl()
        in_place = self.inplace or getattr(self, 'editable_mode', False)
        target = os.path.join(HERE if in_place else self.build_lib,
                              'cpl', '_bin')
        os.makedirs(target, exist_ok=True)
        # build_ext makes no compiler when there is no extension module.
        from distutils.ccompiler import new_compiler
        from distutils.sysconfig import customize_compiler
        compiler = new_compiler(verbose=self.verbose, force=self.force)
        customize_compiler(compiler)
        objects = compiler.compile(
            RUNNER_SOURCES, output_dir=self.build_temp, include_dirs=[include],
            extra_postargs=['-O2', '-g', '-Wall', '-Wextra', '-std=gnu11'])
        system_dirs = ('/usr/lib', '/usr/lib64', '/lib')
        rpath = [libdir] if libdir and not libdir.startswith(system_dirs) \
            else []
        compiler.link_executable(
            objects, 'cplrun-runner', output_dir=target,
            libraries=CPL_LIBRARIES + ['dl', 'm'],
            library_dirs=[libdir] if libdir else [],
            runtime_library_dirs=rpath)


class BinaryDistribution(Distribution):
    # The runner makes the wheel platform-specific.
    def has_ext_modules(self):
        return True


with open(os.path.join(HERE, 'cpl', 'version.py')) as f:
    VERSION = f.read().split("'")[1]

setup(
    name='cplrun',
    version=VERSION,
    description='ESO CPL pipeline recipes as Python objects, run in '
                'isolated processes and in parallel',
    long_description=open(os.path.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='GPL-3.0-or-later',
    python_requires='>=3.11',
    packages=find_packages(include=['cpl', 'cpl.*']),
    install_requires=['numpy', 'astropy', 'psutil', 'rich'],
    extras_require={
        'dask': ['dask[distributed]', 'dask-jobqueue'],
        'test': ['pytest', 'hypothesis', 'psutil', 'dask[distributed]',
                 'dask-jobqueue'],
    },
    entry_points={'console_scripts': ['cplrun = cpl.cli:main']},
    cmdclass={'build_ext': BuildRunner},
    distclass=BinaryDistribution,
    zip_safe=False,
)
