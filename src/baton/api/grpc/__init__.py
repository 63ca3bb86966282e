"""Open Inference Protocol over gRPC (``inference.GRPCInferenceService``)."""

from baton.api.grpc.service import GrpcServer, InferenceServicer, start_grpc_server

__all__ = ["GrpcServer", "InferenceServicer", "start_grpc_server"]
