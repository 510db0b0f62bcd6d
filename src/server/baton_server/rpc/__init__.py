"""The gRPC edge shared by every service: request validation and error mapping."""
