"""The SNAC decoder: codec frames -> 24 kHz audio, in torch, ONNX Runtime or TensorRT,
and the export that makes the ONNX/TensorRT files."""
