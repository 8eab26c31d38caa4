"""``W2SDRuntime(engine_dir).sample(prompt)``: the Python face of the C++ core.

A thin runtime: load an engine dir, turn a ``SampleRequest`` into the core's
arguments, run it, convert the result. Validation lives in ``request``, text
conditioning in ``conditioning``, image conversion in ``images``, backend
availability in ``backends``. The loop, the UNets, the text encoders and the VAE
decoder run in the compiled core with the GIL released. This module imports
neither torch, diffusers nor transformers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend_options import LoadChoices, load_options
from .backends import available_backends, require_backend
from .conditioning import TextConditioner
from .errors import EngineDirError, InvalidArgumentError, W2SDError, with_context
from .images import to_pil, to_uint8_images
from .manifest import Manifest, load_manifest
from .native import core, ddim_schedule, scheduler_config, typed
from .request import ResolvedRequest, SampleRequest

__all__ = ["SampleResult", "W2SDRuntime", "available_backends"]

# ONNX Runtime GraphOptimizationLevel values.
_ORT_LEVEL_ALL = 99


@dataclass(frozen=True)
class SampleResult:
    """One call's output (as ``output_type`` asked) and its own stats: seed,
    num_inference_steps, reflection, unet_calls, and seconds per stage (text_encode_s,
    loop_s, unet_s, vae_decode_s, e2e_s)."""

    output: Any
    stats: dict[str, Any]


@dataclass
class _Prepared:
    """A resolved request, its conditioning for the core, and when it started."""

    plan: ResolvedRequest
    roles: list[Any]  # the core's RoleConditioning: strong, weak, denoiser
    t_start: float
    text_encode_s: float

    def core_request(self) -> Any:
        """The core's LoopRequest for this request."""
        p = self.plan
        strong, weak, denoiser = self.roles
        return typed(
            core().LoopRequest,
            latents=p.latents,
            num_inference_steps=p.num_inference_steps,
            reflection=p.reflection,
            inversion=p.inversion,
            strong=strong,
            weak=weak,
            denoiser=denoiser,
            progress=p.request.callback,
        )


def _stats(stats: Any) -> dict[str, Any]:
    """The core's LoopStats as the stats dict of a result."""
    return {
        "unet_calls": stats.unet_calls,
        "loop_s": stats.loop_s,
        "unet_s": stats.unet_s,
        "lane": stats.lane,
    }


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive int, got {value!r}", param=name)
    return value


class W2SDRuntime:
    """A loaded engine dir. ``sample`` is thread-safe; sessions are shared across calls.

    ``memory_arena=False`` turns off ONNX Runtime's CPU memory arena (host backends): each
    activation is then allocated and freed as it is needed, so the peak is what the largest
    call needs rather than the arena's power-of-two growth; for big images on a tight
    machine (SDXL at 1024 px in 24 GiB).

    ``unet_shape_sessions`` (OpenVINO): how many input shapes each UNet is compiled for, as
    static shapes (each holds its own copy of the weights and loads slower; on some CPUs
    they run a little faster), beyond which one dynamic-shape session serves the rest;
    None: the build's choice (0: one dynamic-shape model per UNet, its weights held once),
    2: the default request's guided and unguided batch compiled while loading.

    ``cuda_graphs`` (cuda): whether UNet calls replay CUDA graphs (ONNX Runtime's
    ``enable_cuda_graph``: one graph per lane and UNet input shape, up to four, captured on
    first use; inputs copied into the graph's fixed buffers); None: the build's choice (on
    for builds that record it). Where ONNX Runtime refuses a graph for a UNet, its calls are
    launched kernel by kernel and ``unet_sessions()`` says why."""

    def __init__(
        self,
        engine_dir: str | os.PathLike[str],
        backend: str = "cpu",
        *,
        threads: int | None = None,
        verify_checksums: bool = True,
        lanes: int = 1,
        device_id: int = 0,
        memory_arena: bool = True,
        unet_shape_sessions: int | None = None,
        cuda_graphs: bool | None = None,
    ) -> None:
        require_backend(backend)
        if threads is not None and (not isinstance(threads, int) or threads < 0):
            raise InvalidArgumentError(f"threads must be a non-negative int, got {threads!r}")
        self.lanes = _positive_int("lanes", lanes)
        self.manifest: Manifest = load_manifest(engine_dir)
        self.backend = backend
        spec = self.manifest.spec
        built = spec.backends.get(backend)
        if built is None:
            raise EngineDirError(
                f"{self.manifest.root}: backend {backend!r} has not been built; run "
                f"`w2sd build {self.manifest.root} --backend {backend}`"
            )
        files = built.files
        encoders = spec.text.encoders if spec.text is not None else []
        has_vae = spec.models.vae_decoder is not None
        names = [f"unet{i}" for i in range(len(spec.unets))]
        names += [f"text_encoder{i}" for i in range(len(encoders))]
        names += ["vae_decoder"] if has_vae else []
        missing = [n for n in names if n not in files]
        if missing:
            raise EngineDirError(f"{self.manifest.root}: {backend} build lacks {missing}; rebuild")
        tokenizers = sorted({e.tokenizer for e in encoders})
        self.manifest.verify(sorted(built.artifacts) + tokenizers, full=verify_checksums)
        facts = built.model_extra or {}
        if cuda_graphs is not None and not isinstance(cuda_graphs, bool):
            raise InvalidArgumentError(
                f"cuda_graphs must be True, False or None, got {cuda_graphs!r}",
                param="cuda_graphs",
            )
        options = load_options(
            backend, self.manifest, built, LoadChoices(unet_shape_sessions, cuda_graphs)
        )

        def path(name: str) -> str:
            return str(self.manifest.path(files[name]))

        models = typed(
            core().ModelFiles,
            library_path=options.library_path,
            unet_paths=[path(f"unet{i}") for i in range(len(spec.unets))],
            unet_inputs=list(spec.models.unet.inputs),
            text_encoder_paths=[path(f"text_encoder{i}") for i in range(len(encoders))],
            text_encoder_outputs=[list(e.outputs) for e in encoders],
            vae_decoder_path=path("vae_decoder") if has_vae else "",
            intra_op_threads=threads or 0,
            graph_optimization_level=int(facts.get("graph_optimization_level", _ORT_LEVEL_ALL)),
            memory_arena=bool(memory_arena),
        )
        config = typed(
            core().EngineConfig,
            provider=backend,
            models=models,
            scheduler=scheduler_config(spec.scheduler),
            provider_options=list(options.provider_options.items()),
            device_id=device_id,
            lanes=self.lanes,
            model_provider_options={
                k: list(v.items()) for k, v in options.model_provider_options.items()
            },
            unet_shape_sessions=options.unet_shape_sessions,
            warm_unet_shapes=options.warm_unet_shapes,
        )
        self._engine = core().Engine(config)
        max_batch = facts.get("max_batch")
        self._max_batch = int(max_batch) if max_batch is not None else None
        self._text = TextConditioner(self.manifest, self._engine)  # no-op when unconditional
        self.last_stats: dict[str, Any] = {}
        self.last_many_stats: list[dict[str, Any] | None] = []

    # -- facts ----------------------------------------------------------------------

    @property
    def defaults(self) -> dict[str, Any]:
        spec = self.manifest.spec
        return {
            **spec.defaults.model_dump(),
            **{f"{r}_guidance": spec.role(r).guidance for r in ("strong", "weak", "denoiser")},
            "height": None if spec.image is None else spec.image.default_height,
            "width": None if spec.image is None else spec.image.default_width,
        }

    def timesteps(self, num_inference_steps: int) -> list[int]:
        """The DDIM timesteps tau_0 > ... > tau_{T-1} this engine uses for T steps."""
        return list(ddim_schedule(self.manifest.spec.scheduler, num_inference_steps).timesteps)

    @property
    def num_unet_sessions(self) -> int:
        """UNet sessions held in memory: one per distinct UNet artifact."""
        return int(self._engine.num_unets)

    def unet_sessions(self, unet: int = 0) -> list[str]:
        """What UNet artifact `unet` has sessions for: the input shapes of each static-shape
        model, as "sample[2,4,32,32],timestep[1],...", then "dynamic" for one that takes any."""
        return list(self._engine.unet_sessions(unet))

    @property
    def num_text_encoder_sessions(self) -> int:
        """Text encoder sessions held in memory: one per distinct encoder."""
        return int(self._engine.num_text_encoders)

    def encode(
        self, texts: list[str], role: str = "strong"
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Texts -> (hidden states, pooled embeddings or None) with `role`'s text encoder(s)."""
        index = self.manifest.spec.role(role).text
        if index is None:
            raise InvalidArgumentError("this engine is unconditional: it has no text encoders")
        return self._text.encode(index, texts)

    # -- sampling -------------------------------------------------------------------

    def sample(self, prompt: Any = None, negative_prompt: Any = None, **options: Any) -> Any:
        """Generate one image per prompt with W2SD.

        ``prompt`` is a str, a list of str (one image each) or a ``SampleRequest``;
        ``options`` are ``SampleRequest``'s other fields (num_inference_steps,
        reflection_steps, strong/weak/denoiser_guidance, inversion, seed, latents,
        height, width, output_type, per-role prompts, callback). Returns a PIL image
        (a list for a list of prompts) for ``output_type="pil"``, uint8 (B, H, W, 3)
        for ``"np"`` and the final float32 latents (B, C, H/8, W/8) for ``"latent"``.
        ``callback(done, total)`` runs after every step; returning False cancels
        (``w2sd.CancelledError``).
        """
        return self.run(SampleRequest.from_options(prompt, negative_prompt, **options)).output

    def warm_up(self) -> dict[str, Any]:
        """Run one short request (the engine's default size and guidance, 2 steps, 1
        reflection step) through every model, discard it and return its stats. A backend
        prepares on a model's first run what later runs reuse (OpenVINO repacks a
        dynamic-shape model's weights, and each shape's first run sets it up; a CUDA graph
        is captured per shape), so after this the default request runs as fast the first
        time as later; ``w2sd serve`` calls it before it takes requests. An unconditional
        denoiser engine (sized by the latents each caller passes) has no request of its
        own to run: {} then."""
        spec = self.manifest.spec
        if spec.image is None or spec.text is None:
            return {}
        request = SampleRequest.from_options(
            "warm-up", None, num_inference_steps=2, reflection_steps=1, seed=0, output_type="np"
        )
        return self.run(request).stats

    def run(self, request: SampleRequest) -> SampleResult:
        """``sample`` for one ``SampleRequest``, returning the output with this call's own
        stats (``last_stats`` is shared by concurrent calls; this is not)."""
        prepared = self._prepare(request)
        out, loop_stats = self._engine.run_loop(prepared.core_request())
        return self._finish(prepared, out, _stats(loop_stats))

    def sample_many(
        self,
        requests: Sequence[SampleRequest | dict[str, Any]],
        *,
        lanes: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Run several requests with up to ``lanes`` in flight at once.

        Each request is a ``SampleRequest`` or a dict of ``sample``'s keyword arguments
        (``prompt`` included). Results come back in request order. Requests start in
        order and a free lane always takes the next one; a request that fails or is
        cancelled does not affect the others: with ``return_exceptions=True`` its slot
        holds the exception (the one ``sample`` would raise), otherwise the first
        failure is raised after every request has finished.
        """
        lanes = _positive_int("lanes", self.lanes if lanes is None else lanes)
        prepared: list[_Prepared | Exception] = []
        for i, req in enumerate(requests):
            try:
                if not isinstance(req, (SampleRequest, dict)):
                    raise InvalidArgumentError(
                        f"requests[{i}] must be a SampleRequest or a dict of sample() arguments"
                    )
                request = (
                    req if isinstance(req, SampleRequest) else SampleRequest.from_options(**req)
                )
                prepared.append(self._prepare(request))
            except W2SDError as e:
                error = with_context(e, f"requests[{i}]")
                if not return_exceptions:
                    raise error from None
                prepared.append(error)
        runnable = [p for p in prepared if isinstance(p, _Prepared)]
        results = iter(self._engine.run_many([p.core_request() for p in runnable], lanes))
        outputs: list[Any] = []
        many_stats: list[dict[str, Any] | None] = []
        first_error: BaseException | None = None
        for p in prepared:
            if not isinstance(p, _Prepared):
                outputs.append(p)
                many_stats.append(None)
                continue
            r = next(results)
            order = {"lane": r.lane, "start_seq": r.start_seq, "end_seq": r.end_seq}
            if r.error is None:
                result = self._finish(p, r.latents, {**_stats(r.stats), **order})
                outputs.append(result.output)
                many_stats.append(result.stats)
            else:
                first_error = first_error or r.error
                outputs.append(r.error)
                many_stats.append(order)
        # Per request: lane, start_seq/end_seq (global order of starts and ends), times.
        self.last_many_stats = many_stats
        if first_error is not None and not return_exceptions:
            raise first_error
        return outputs

    def check(self, request: SampleRequest) -> ResolvedRequest:
        """Everything ``run`` would check before sampling, without sampling (a server calls
        it before a request takes a lane)."""
        spec = self.manifest.spec
        plan = request.resolve(spec, lambda steps: ddim_schedule(spec.scheduler, steps))
        if self._max_batch is not None and plan.batch > self._max_batch:
            raise InvalidArgumentError(
                f"prompt: {plan.batch} images in one request, but this engine's {self.backend} "
                f"build takes at most {self._max_batch} (its profiles end there; rebuild with "
                "`w2sd build ... --max-batch N` for more)",
                param="prompt" if request.prompt is not None else "latents",
            )
        return plan

    def _prepare(self, request: SampleRequest) -> _Prepared:
        """Resolve the request against this engine, then encode every role's text."""
        t_start = time.perf_counter()
        plan = self.check(request)
        t0 = time.perf_counter()
        roles = self._text.roles(plan)
        return _Prepared(plan, roles, t_start, time.perf_counter() - t0)

    def _finish(self, p: _Prepared, out: np.ndarray, loop_stats: dict[str, Any]) -> SampleResult:
        """Decode (unless latents were asked for), convert, and record the stats."""
        plan = p.plan
        stats: dict[str, Any] = {
            "seed": plan.seed,
            "num_inference_steps": plan.num_inference_steps,
            "reflection": plan.reflection,
            "height": plan.height,
            "width": plan.width,
            "text_encode_s": p.text_encode_s,
            **loop_stats,
        }
        output_type = plan.request.output_type
        result: Any = out
        stats["vae_decode_s"] = 0.0
        if output_type != "latent":
            t0 = time.perf_counter()
            scaling = np.float32(self.manifest.spec.vae_scaling_factor)
            images = to_uint8_images(self._engine.decode_latents(out / scaling))
            stats["vae_decode_s"] = time.perf_counter() - t0
            result = images
            if output_type == "pil":
                pil = to_pil(images)
                result = pil[0] if isinstance(plan.request.prompt, str) else pil
        stats["e2e_s"] = time.perf_counter() - p.t_start
        self.last_stats = stats
        return SampleResult(result, stats)
