"""The SNAC decoder: codec frames -> 24 kHz audio, in torch, ONNX Runtime or TensorRT,
and the export that makes the ONNX/TensorRT files.

`base` holds the SnacDecoder interface, `frames` and `noise` what every runtime shares,
`torch`, `onnx` and `tensorrt` one runtime each, `factory` the choice among them,
`artifacts` the names and places of the exports that `export` writes, and `precision` what
fp16 or bf16 decoding costs against fp32 (the SNR the benchmark reports)."""
