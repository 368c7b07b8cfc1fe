"""People counting: camera sources, ONNX person detection, tracking, line/zone counting, motion gating.

Exceptions: ModelError (missing or wrong model file), SourceUnavailable (camera or stream down).
Heavy modules (cv2, onnxruntime) are imported only by the modules that need them.
"""
