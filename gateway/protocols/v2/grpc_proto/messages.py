"""The Open Inference Protocol's gRPC messages, compiled from the specification's proto that ships
in this package (``grpc_predict_v2.proto``) into a descriptor pool of lockgate's own.

The proto is found as a package resource, so it loads the same from a checkout, an editable
install or a wheel, from any working directory. (It used to be looked up on ``sys.path`` by
``grpc.protos_and_services``, which held the checkout only when ``PYTHONPATH`` named it: an
editable install's ``lockgate serve --grpc-port`` exited at start-up.) A pool of its own keeps
these messages from colliding with another copy of the same ``inference`` package in the
process, such as tritonclient's.

protoc (grpcio-tools) compiles it once per process, in about 5 ms, so the messages always match
the file.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

PROTO = "grpc_predict_v2.proto"
SERVICE = "inference.GRPCInferenceService"


def _compiled() -> descriptor_pb2.FileDescriptorSet:
    with resources.as_file(resources.files(__package__) / PROTO) as proto, tempfile.TemporaryDirectory() as scratch:
        described = Path(scratch) / "descriptors.pb"
        status = protoc.main(["protoc", f"-I{proto.parent}", f"--descriptor_set_out={described}", proto.name])
        if status != 0:
            raise RuntimeError(f"protoc could not compile {proto} (exit {status})")
        return descriptor_pb2.FileDescriptorSet.FromString(described.read_bytes())


def _messages() -> Any:
    files = list(_compiled().file)
    pool = descriptor_pool.DescriptorPool()
    for file in files:
        pool.Add(file)
    classes = message_factory.GetMessages(files, pool=pool)
    return SimpleNamespace(**{full_name.rsplit(".", 1)[-1]: cls for full_name, cls in classes.items()})


# protos.ModelInferRequest, protos.ModelInferResponse, ...: the message classes by name.
protos: Any = _messages()
