"""Builds the prl package, generating its gRPC stubs from PRL's protos.

The stubs (prl/_proto/*_pb2.py, *_pb2_grpc.py) are generated while the package builds, with
the grpcio-tools of the build environment, from ../proto/*.proto (a source checkout) or
proto/*.proto (an sdist, which carries a copy). The generated code needs a protobuf runtime of
the same major version and at least the generator's minor version, and a grpcio at least as new
as grpcio-tools: the package's requirements say exactly that, so pip installs a runtime the
stubs work with. To build against the protobuf of an existing environment, constrain the build
environment too (PIP_CONSTRAINT=file-with-'protobuf<5' pip install ./python, as
scripts/setup.sh does) or build in it (pip install --no-build-isolation ./python).
"""

import glob
import importlib.metadata
import os
import re
import shutil
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))

# health.proto is left out: grpc.health.v1 may already be registered by grpcio-health-checking,
# and protobuf refuses a second definition of the same names (prl.Client.health() speaks the
# two-field protocol directly).
SKIPPED_PROTOS = {"health.proto"}


def proto_root():
    """The directory holding proto/*.proto: the repository root or the sdist root."""
    for root in (os.path.dirname(HERE), HERE):
        if glob.glob(os.path.join(root, "proto", "*.proto")):
            return root
    raise RuntimeError(
        "cannot find PRL's proto/*.proto next to python/ (a source checkout) or inside it (an "
        "sdist); build the package from a checkout of the repository: pip install ./python")


def proto_files(root):
    paths = glob.glob(os.path.join(root, "proto", "*.proto"))
    return sorted(os.path.relpath(p, root) for p in paths
                  if os.path.basename(p) not in SKIPPED_PROTOS)


def generate_stubs(out_dir):
    """Writes the *_pb2.py and *_pb2_grpc.py modules of every proto into out_dir, their imports
    of each other made relative (protoc writes `from proto import x_pb2`) and their module
    names those of prl._proto."""
    import grpc_tools
    from grpc_tools import protoc

    root = proto_root()
    files = proto_files(root)
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc", f"-I{root}", f"-I{well_known}", f"--python_out={tmp}",
                f"--grpc_python_out={tmp}"] + files
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {files} (see its messages above)")
        os.makedirs(out_dir, exist_ok=True)
        for path in sorted(glob.glob(os.path.join(tmp, "proto", "*.py"))):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            text = re.sub(r"^from proto import (\w+_pb2)", r"from . import \1", text, flags=re.M)
            # the module name the message classes are built under (their __module__, which
            # pickle looks them up by)
            text = re.sub(r"'proto\.(\w+_pb2)'", r"'prl._proto.\1'", text)
            with open(os.path.join(out_dir, os.path.basename(path)), "w", encoding="utf-8") as f:
                f.write(text)
    with open(os.path.join(out_dir, "_versions.py"), "w", encoding="utf-8") as f:
        f.write('"""Versions the stubs were generated with (written by setup.py)."""\n'
                f"PROTOBUF = {importlib.metadata.version('protobuf')!r}\n"
                f"GRPCIO_TOOLS = {importlib.metadata.version('grpcio-tools')!r}\n")


class BuildPyWithStubs(build_py):
    """build_py that also generates the stubs into the built package (or, for an editable
    install, into the source tree, where .gitignore keeps them out of git)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            generate_stubs(os.path.join(HERE, "prl", "_proto"))
        else:
            generate_stubs(os.path.join(self.build_lib, "prl", "_proto"))


class SdistWithProtos(sdist):
    """sdist that carries a copy of ../proto/*.proto, so the sdist builds on its own."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        root = proto_root()
        os.makedirs(os.path.join(base_dir, "proto"), exist_ok=True)
        for rel in proto_files(root):
            shutil.copy(os.path.join(root, rel), os.path.join(base_dir, rel))


def runtime_requirements():
    """grpcio and protobuf as the stubs need them, then the rest of the client's packages."""
    protobuf = [int(x) for x in importlib.metadata.version("protobuf").split(".")[:2]]
    tools = ".".join(importlib.metadata.version("grpcio-tools").split(".")[:2])
    return [
        f"grpcio>={tools}",
        f"protobuf>={protobuf[0]}.{protobuf[1]},<{protobuf[0] + 1}",
        "numpy",
        "pandas",
        "matplotlib",
        "tqdm",
        "h5py",
    ]


# build output in .build/ (git-ignored), not in build/ beside Bazel's BUILD file
BUILD_BASE = os.path.join(HERE, ".build")
os.makedirs(BUILD_BASE, exist_ok=True)

setup(
    install_requires=runtime_requirements(),
    options={"build": {"build_base": BUILD_BASE}, "egg_info": {"egg_base": BUILD_BASE}},
    cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProtos},
)
