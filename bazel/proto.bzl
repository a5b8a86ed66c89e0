"""One small macro for protos: Debian's protoc and grpc_cpp_plugin via a genrule."""

def prl_cc_proto_library(name, srcs, deps = [], grpc = False, visibility = None):
    """C++ messages (and gRPC stubs when grpc = True) for .proto files.

    Args:
      name: the cc_library to create.
      srcs: .proto files in this package; imports are relative to the workspace root.
      deps: other prl_cc_proto_library targets whose protos srcs import.
      grpc: also generate the gRPC service classes.
      visibility: of the cc_library.
    """
    bases = [s[:-len(".proto")] for s in srcs]
    pkg = native.package_name()
    prefix = pkg + "/" if pkg else ""
    outs = []
    for b in bases:
        outs += [b + ".pb.h", b + ".pb.cc"]
        if grpc:
            outs += [b + ".grpc.pb.h", b + ".grpc.pb.cc"]

    dep_protos = [d + "_protos" for d in deps]
    native.filegroup(name = name + "_protos", srcs = srcs + dep_protos)

    cmd = "protoc -I. --cpp_out=$(GENDIR)"
    if grpc:
        cmd += " --grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin)"
    cmd += " " + " ".join([prefix + s for s in srcs])

    native.genrule(
        name = name + "_gen",
        srcs = srcs + dep_protos,
        outs = outs,
        cmd = cmd,
        message = "protoc " + " ".join(srcs),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["//bazel:protobuf"] + (["//bazel:grpc"] if grpc else []),
        visibility = visibility,
    )
