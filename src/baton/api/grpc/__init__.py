"""Open Inference Protocol over gRPC (``inference.GRPCInferenceService``)."""

from baton.api.grpc.service import InferenceServicer, start_grpc_server

__all__ = ["InferenceServicer", "start_grpc_server"]
