"""Move the lecture's PyTorch LSTMModeler to JAX and print both predictions.

python examples/quickstart.py
"""

import jax
import numpy as np
import torch

import lstm_jax
import lstm_torch


def main() -> None:
    torch.manual_seed(0)
    torch_model = lstm_torch.LSTMModeler(input_size=1, hidden_layer_size=10, output_size=1)
    jax_model = lstm_jax.LSTMModeler(input_size=1, hidden_layer_size=10, output_size=1)
    variables = lstm_jax.params_from_torch(torch_model.state_dict())

    x = np.array([[32.0], [37.0], [25.0]], dtype=np.float32)  # one sequence of 3 steps
    with torch.no_grad():
        y_torch = torch_model(torch.from_numpy(x)).numpy()
    y_jax, _ = jax.jit(jax_model.apply)(variables, x)
    print(f"torch prediction: {y_torch}")
    print(f"jax   prediction: {np.asarray(y_jax)}")
    print(f"largest difference: {np.abs(y_torch - np.asarray(y_jax)).max():.3g}")


if __name__ == "__main__":
    main()
