"""Baton's gRPC server: storage, services, executor and process supervision."""
