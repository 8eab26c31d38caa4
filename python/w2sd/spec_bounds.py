"""The parity contract's bounds, defined once (../shared/W2SD-SPEC.md, "Parity contract").

Export refuses an artifact over FP32_LATENT_RTOL; the tests and the benchmark's report hold
the runtime to these. They are bounds to meet, never to widen."""

from __future__ import annotations

# fp32 on CPU: runtime vs reference final latents, reference (lambda = 0) vs diffusers' DDIM,
# and one exported ONNX model vs its PyTorch module: max abs diff <= this * max abs(reference).
FP32_LATENT_RTOL = 1e-4
# fp32 on CPU, images: at least this fraction of uint8 values equal, none off by more than 1.
FP32_IMAGE_EQUAL_FRACTION = 0.999
FP32_IMAGE_MAX_OFF = 1
# fp16 on a GPU: final latents within this * max abs(reference latents).
FP16_GPU_LATENT_RTOL = 2e-2
# Reduced precision (fp16 on a GPU, bf16 on a CPU): image PSNR at least this, in dB.
REDUCED_PRECISION_MIN_PSNR_DB = 30.0
