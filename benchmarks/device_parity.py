"""Both backends on the same device: ``torch.nn.LSTM`` (cuDNN on an NVIDIA GPU) against
``lstm_jax.LSTM`` with every ``impl``, forward and gradients, precision pinned.

    python benchmarks/device_parity.py --out out/device_parity.json   # exit 1 on a mismatch

The parity suite (``parity_tests/``) keeps torch on the CPU as the reference while JAX
runs on its default device; this puts torch on the GPU too (when torch sees one), the
way a GPU user runs both. Tolerances: ``lstm_jax.common.tolerances`` (float32).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

CASES = [  # nn.LSTM options, and per-row lengths (packed) or None
    ({"num_layers": 2}, None),
    ({"num_layers": 2, "bidirectional": True}, (9, 4, 7)),
    ({"num_layers": 3, "proj_size": 3}, (9, 2, 5)),
]
T, B, I, H = 9, 3, 5, 8


def one(impl: str, options: dict, lengths: tuple | None, device: str) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    import lstm_jax
    from lstm_jax.common.tolerances import FORWARD, GRADIENT, scaled_error

    torch.manual_seed(0)
    module = torch.nn.LSTM(I, H, **options).to(device)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((T, B, I)).astype(np.float32)
    if lengths is not None:
        x_np[np.arange(T)[:, None] >= np.array(lengths)[None, :]] = 0.0
    features = (2 if options.get("bidirectional") else 1) * (options.get("proj_size") or H)
    cot = rng.standard_normal((T, B, features)).astype(np.float32)
    xt = torch.tensor(x_np, device=device, requires_grad=True)
    if lengths is None:
        out_t, _ = module(xt)
    else:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
        out_t, _ = pad_packed_sequence(module(packed)[0], total_length=T)
    (out_t * torch.tensor(cot, device=device)).sum().backward()
    torch_grads = {k: v.grad.detach().cpu().numpy() for k, v in module.named_parameters()}
    torch_grads["x"] = xt.grad.detach().cpu().numpy()

    model = lstm_jax.LSTM(H, **options, impl=impl)
    variables = lstm_jax.params_from_torch(
        {k: v.detach().cpu() for k, v in module.state_dict().items()}
    )
    seq = None if lengths is None else jnp.asarray(lengths)

    def loss(params: Any, x: Any) -> Any:
        out, _ = model.apply({"params": params}, x, seq_lengths=seq)
        return jnp.sum(out * cot), out

    (_, out_j), (g_params, g_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        variables["params"], jnp.asarray(x_np)
    )
    jax_grads = {**{k: np.asarray(v) for k, v in g_params.items()}, "x": np.asarray(g_x)}
    f32 = np.dtype(np.float32)
    forward_error = scaled_error(np.asarray(out_j), out_t.detach().cpu().numpy())
    grad_error = max(scaled_error(jax_grads[k], torch_grads[k]) for k in torch_grads)
    ok = forward_error <= FORWARD[f32] and grad_error <= GRADIENT[f32]
    return {
        "impl": impl, "options": options, "lengths": lengths, "forward_error": forward_error,
        "gradient_error": grad_error, "ok": bool(ok), "jax_device": str(jax.devices()[0]),
        "torch_device": device,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--impls", nargs="+", help="lstm_jax impls to check (default: all but auto)")
    args = p.parse_args(argv)
    import torch

    from lstm_jax.core.options import IMPLS
    from lstm_jax.interop.precision import pinned_precision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    with pinned_precision():
        for impl in args.impls or [i for i in IMPLS if i != "auto"]:
            for options, lengths in CASES:
                if impl == "cudnn" and options.get("proj_size"):
                    rows.append({"impl": impl, "options": options, "skipped": "no projections"})
                    continue
                try:
                    rows.append(one(impl, options, lengths, device))
                except Exception as error:  # recorded, the rest still runs
                    rows.append(
                        {"impl": impl, "options": options, "ok": False, "error": repr(error)}
                    )
                print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    failed = [r for r in rows if r.get("ok") is False]
    print(f"device parity: {len(rows) - len(failed)} of {len(rows)} ok or skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
