"""The Open Inference Protocol (KServe V2) over gRPC: ``GRPCInferenceService`` on its own port
(``--grpc-port``, ``LOCKGATE_GRPC_PORT``; unset: off), in the gateway's own event loop.

Another codec over the same data plane: a ``ModelInferRequest`` becomes the ``V2Request`` the REST
route builds (typed ``contents`` or ``raw_input_contents``), goes through ``v2_inference.infer``
(the lean path and batcher, or MLflow's pyfunc), and its predictions come back as
``raw_output_contents``. Lineage rides in the response's ``parameters`` and in trailing metadata
(``x-lockgate-model-version``, ``x-lockgate-weights-commit``, ``x-lockgate-dataset-commit``).
Errors are gRPC statuses: INVALID_ARGUMENT (a request that does not fit), NOT_FOUND (an unknown
model or version), UNAVAILABLE (no model loaded yet), DEADLINE_EXCEEDED, UNAUTHENTICATED.

The proto is the specification's (``gateway/protocols/v2/grpc_proto/grpc_predict_v2.proto``), compiled by
grpcio-tools when the messages module is imported, so the messages always match the file. Each
method takes its request as bytes and parses it itself: a message that is not valid protobuf
answers INVALID_ARGUMENT naming the message (grpc's own deserializer answered UNKNOWN), and a
big ``ModelInferRequest`` is parsed in the decode pool, off the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import mlflow
import numpy as np
from google.protobuf.message import DecodeError

from lockgate.gateway import tracing
from lockgate.gateway.auth import AccessGuard, bearer_token
from lockgate.gateway.control.deployer import Deployer
from lockgate.gateway.errors import AuthError, ConfigError, GatewayError, RequestTimeoutError
from lockgate.gateway.protocols.v2.datatypes import FP32_MAX
from lockgate.gateway.protocols.v2.grpc_proto.messages import SERVICE, protos
from lockgate.gateway.protocols.v2.inference import infer, shadow_copy
from lockgate.gateway.protocols.v2.metadata import model_metadata
from lockgate.gateway.protocols.v2.plain import PlainColumns
from lockgate.gateway.protocols.v2.tensors import (
    MAX_RANK,
    Tensor,
    V2Request,
    V2RequestError,
    brief,
    check_input_names,
    element_count,
    from_binary,
    from_values,
    output_json,
)
from lockgate.gateway.serving.data_plane import Answer, DataPlane
from lockgate.gateway.serving.decode_pool import DecodePool
from lockgate.gateway.serving.endpoints import Deployment
from lockgate.gateway.serving.request_body import LEAN_INLINE_BYTES
from lockgate.gateway.serving.routing import ROUTE_KEY_HEADER

# Where each datatype's values sit in InferTensorContents.
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP16": "fp32_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}  # fmt: skip
V2_GRPC = "v2-grpc"  # the `protocol` label


def _parameter(value: Any) -> Any:
    which = value.WhichOneof("parameter_choice")
    return None if which is None else getattr(value, which)


def read_infer_request(message: Any) -> V2Request:
    raw_contents = list(message.raw_input_contents)
    if raw_contents and len(raw_contents) != len(message.inputs):
        raise V2RequestError(f"{len(raw_contents)} raw_input_contents for {len(message.inputs)} inputs")
    if raw_contents and any(tensor.HasField("contents") for tensor in message.inputs):
        # The specification forbids both: which would win is a guess, so neither does.
        raise V2RequestError("a request has either raw_input_contents or inputs with contents, not both")
    parameters = {key: _parameter(value) for key, value in message.parameters.items()}
    outputs = [{"name": o.name} for o in message.outputs]
    request_id = message.id or None
    plain = None if raw_contents else _plain_columns(message.inputs)
    if plain is not None:  # the common request: its columns go to the lean path as they are
        check_input_names(list(plain.names))
        return V2Request(None, request_id, parameters, outputs, plain)
    inputs = []
    for index, tensor in enumerate(message.inputs):
        if len(tensor.shape) > MAX_RANK:  # before copying a hostile shape into a Python list
            name = brief(tensor.name)
            raise V2RequestError(f"input {name}: 'shape' must be a list of at most {MAX_RANK} dimensions")
        shape = list(tensor.shape)
        count = element_count(tensor.name, tensor.datatype, shape, f"inputs[{index}]")
        values: list[Any] | np.ndarray
        if raw_contents:
            values = from_binary(tensor.name, tensor.datatype, raw_contents[index], count)
        else:
            items = list(getattr(tensor.contents, _CONTENTS_FIELD[tensor.datatype]))
            if tensor.datatype == "BYTES":
                items = [_text(item) for item in items]
            values = from_values(tensor.name, tensor.datatype, items, count, 1)
        tensor_parameters = {key: _parameter(value) for key, value in tensor.parameters.items()}
        inputs.append(Tensor(tensor.name, tensor.datatype, tuple(shape), values, tensor_parameters))
    check_input_names([t.name for t in inputs])
    return V2Request(inputs, request_id, parameters, outputs)


def _plain_columns(tensors: Any) -> PlainColumns | None:
    """Every input a rank-1, named, parameter-free tensor of typed contents (``_plain_values``);
    None sends the request through the per-input checks and their messages."""
    # Each field is read once: a protobuf accessor costs ~0.1-0.3 us, 40 columns make it add up.
    order = []
    for tensor in tensors:
        shape, name = tensor.shape, tensor.name
        if len(shape) != 1 or not name or tensor.parameters:
            return None
        datatype = tensor.datatype
        values = _plain_values(tensor, datatype, shape[0])
        if values is None:
            return None
        order.append((name, datatype, values))
    return PlainColumns.of(order, finite=False) if order else None  # FP contents may hold inf or NaN


# Datatypes whose contents field holds exactly their values: protobuf has typed them already,
# so a rank-1 tensor of these needs only its count checked (FP32 its range: inf is not FP32 data).
_EXACT_CONTENTS = frozenset({"BOOL", "INT32", "INT64", "UINT32", "UINT64", "FP32", "FP64"})


def _plain_values(tensor: Any, datatype: str, count: int) -> list[Any] | None:
    """A rank-1 tensor's typed contents, without the per-value checks ``from_values`` makes;
    None sends it through them (and their messages)."""
    if datatype not in _EXACT_CONTENTS:
        return None
    items: list[Any] = getattr(tensor.contents, _CONTENTS_FIELD[datatype])[:]  # a list: 4x faster than list()
    if len(items) != count or (datatype == "FP32" and items and max(map(abs, items)) > FP32_MAX):
        return None
    return items


def _text(item: bytes) -> Any:
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError:
        return item


class InferenceService:
    def __init__(
        self,
        plane: DataPlane,
        deployer: Deployer,
        guard: AccessGuard,
        configured: list[str],
        *,
        decode_pool: DecodePool,
    ) -> None:
        self._plane = plane
        self._deployer = deployer
        self._decode_pool = decode_pool
        self._guard = guard
        self._configured = configured
        self._timeout = plane.timeout

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return protos.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return protos.ServerReadyResponse(ready=self._ready())

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return protos.ServerMetadataResponse(name="lockgate", version=mlflow.__version__,
                                             extensions=["binary_tensor_data"])  # fmt: skip

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            self._plane.route(request.name, request.version or None, split=False)
        except GatewayError as exc:
            if exc.status == 404 and not request.version:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            return protos.ModelReadyResponse(ready=False)
        return protos.ModelReadyResponse(ready=True)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        await self._check_token(context)  # it names the version's commits, as /endpoints/{name} does
        deployment = await self._serving(request.name, request.version, context)
        metadata = model_metadata(request.name, deployment)
        tensor = protos.ModelMetadataResponse.TensorMetadata
        return protos.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=[tensor(name=i["name"], datatype=i["datatype"], shape=i["shape"]) for i in metadata["inputs"]],
            outputs=[tensor(name=o["name"], datatype=o["datatype"], shape=o["shape"]) for o in metadata["outputs"]],
        )

    async def ModelInfer(self, raw: bytes, context: Any) -> Any:
        # The routing fields are read from a parse of the whole message, as protobuf has no
        # partial parse; a big message is parsed in the decode pool, off the loop.
        try:
            if len(raw) <= LEAN_INLINE_BYTES:  # microseconds: on the loop
                parsed, request = _parse_with_message(raw)
            else:
                async with asyncio.timeout(self._timeout):
                    parsed, request = await self._decode_pool.run(_parse_with_message, raw)
        except V2RequestError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"reading the request exceeded {self._timeout:g} s")
        name = request.model_name
        # The call's metadata is read only when something needs it: a prediction token, or an
        # endpoint with a canary (the route key). Reading it cost ~10 us a call.
        metadata: dict[str, Any] | None = None
        if self._guard.predictions_protected:
            metadata = dict(context.invocation_metadata() or ())
            await self._check_token(context, metadata)
        route_key = None
        endpoint = self._deployer.endpoints.get(name)
        if endpoint is not None and endpoint.canary is not None:
            metadata = metadata if metadata is not None else dict(context.invocation_metadata() or ())
            route_key = metadata.get(ROUTE_KEY_HEADER)
        if metadata is None and tracing.STATE.tracer is not None:  # a traceparent travels in the metadata
            metadata = dict(context.invocation_metadata() or ())
        try:
            route = self._plane.route(
                name, request.model_version or None, route_key, request_id=request.id or None, carrier=metadata
            )
        except GatewayError as exc:
            await context.abort(_code(exc), str(exc))

        async def work() -> Answer:
            if isinstance(parsed, V2RequestError):
                raise parsed  # counted against the endpoint it named, as REST's are
            prediction = await infer(route.deployment, parsed)
            shadow = shadow_copy(parsed, prediction, len(raw)) if route.mirrored else None
            return Answer(prediction, 200, prediction.rows, prediction.predict_seconds, shadow=shadow,
                          logged=prediction.logged() if route.logged else None)  # fmt: skip

        try:
            answer = await self._plane.serve(route, V2_GRPC, work)
        except RequestTimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"inference exceeded {self._timeout:g} s")
        except GatewayError as exc:
            await context.abort(_code(exc), str(exc))
        deployment = route.deployment
        outputs, contents = [], []
        tensor = protos.ModelInferResponse.InferOutputTensor
        for output_name, values in answer.result.outputs.items():
            entry, data = output_json(output_name, values, binary=True)
            outputs.append(tensor(name=entry["name"], datatype=entry["datatype"], shape=entry["shape"]))
            contents.append(data)
        response = protos.ModelInferResponse(model_name=name, model_version=deployment.version_label,
                                             id=route.request_id, outputs=outputs,
                                             raw_output_contents=contents)  # fmt: skip
        for key, value in deployment.lineage().items():
            response.parameters[key].string_param = value
        context.set_trailing_metadata(tuple((k.lower(), v) for k, v in route.headers().items()))
        return response

    def _ready(self) -> bool:
        names, waiting = self._deployer.readiness(self._configured)
        return bool(names) and not waiting

    async def _check_token(self, context: Any, metadata: dict[str, Any] | None = None) -> None:
        """Abort a call whose ``authorization`` metadata lacks a prediction token (LOCKGATE_API_TOKENS)."""
        if metadata is None:
            metadata = dict(context.invocation_metadata() or ())
        try:
            self._guard.prediction_token(bearer_token(metadata.get("authorization")))
        except AuthError as exc:
            code = grpc.StatusCode.UNAUTHENTICATED if exc.status == 401 else grpc.StatusCode.PERMISSION_DENIED
            await context.abort(code, str(exc))

    async def _serving(self, name: str, version: str, context: Any) -> Deployment:
        try:
            return self._plane.route(name, version or None, split=False).deployment
        except GatewayError as exc:
            await context.abort(_code(exc), str(exc))
            raise  # abort raises; this keeps the type checker informed


# The one error tree, in gRPC's status codes.
_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
          403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
          413: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE,
          504: grpc.StatusCode.DEADLINE_EXCEEDED}  # fmt: skip


def _code(exc: GatewayError) -> Any:
    return _CODES.get(exc.status, grpc.StatusCode.INTERNAL)


def _parse_with_message(raw: bytes) -> tuple[V2Request | V2RequestError, Any]:
    """(the read request, or why it cannot be read; the message). A message that parses but does
    not read still has a model name: its error is counted against that endpoint, as REST's is."""
    try:
        message = protos.ModelInferRequest.FromString(raw)
    except DecodeError as exc:
        raise V2RequestError(f"the request is not a valid ModelInferRequest protobuf message: {exc}") from exc
    try:
        return read_infer_request(message), message
    except V2RequestError as exc:
        return exc, message


def _method(call: Callable[[Any, Any], Awaitable[Any]], request_type: Any | None) -> Any:
    """A unary method that takes its request as bytes and parses it itself (``request_type``;
    None: the method parses), so a message that is not valid protobuf is INVALID_ARGUMENT."""

    async def handle(raw: bytes, context: Any) -> Any:
        if request_type is None:
            return await call(raw, context)
        try:
            request = request_type.FromString(raw)
        except DecodeError as exc:
            name = request_type.DESCRIPTOR.name
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a valid {name} protobuf message: {exc}")
        return await call(request, context)

    return grpc.unary_unary_rpc_method_handler(handle, response_serializer=_serialize)


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


def service_handler(service: InferenceService) -> Any:
    """The GRPCInferenceService's methods, each reading its own request bytes."""
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ServerLive": _method(service.ServerLive, protos.ServerLiveRequest),
            "ServerReady": _method(service.ServerReady, protos.ServerReadyRequest),
            "ServerMetadata": _method(service.ServerMetadata, protos.ServerMetadataRequest),
            "ModelReady": _method(service.ModelReady, protos.ModelReadyRequest),
            "ModelMetadata": _method(service.ModelMetadata, protos.ModelMetadataRequest),
            "ModelInfer": _method(service.ModelInfer, None),
        },
    )


async def start_grpc_server(service: InferenceService, host: str, port: int) -> Any:
    """A started ``grpc.aio`` server on host:port, or a ConfigError naming the port."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((service_handler(service),))
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise ConfigError(f"cannot listen for gRPC on {host}:{port} (in use?): choose another --grpc-port")
    await server.start()
    return server
