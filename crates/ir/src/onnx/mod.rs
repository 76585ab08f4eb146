//! ONNX import (.onnx protobuf files, opsets 13 to 18).
