"""dermaseg.infer: torch-free planning from photos with an exported ONNX model."""
