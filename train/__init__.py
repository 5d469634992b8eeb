"""dermaseg.train: configs, models, training, evaluation, ONNX export (the [train] extra)."""
