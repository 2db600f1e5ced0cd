"""The lecture's ``LSTMModeler``: ``nn.LSTM`` followed by an ``nn.Linear`` head.

The lecture's ``forward`` is kept: ``x.view(len(x), 1, -1)`` makes a 1-D (T,) or
2-D (T, I) input one sequence of T steps with batch 1, and the result is the last
step's prediction (O,). A 3-D input is a proper (T, B, I) batch ((B, T, I) with
``batch_first``) and gives (B, O). The model stores its state in ``hidden_cell``
between calls, as the lecture does; the training loop resets it per batch.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from lstm_jax.common.arrays import describe_non_pair, is_pair
from lstm_jax.common.config import LSTMConfig, check_input, check_seq_lengths, check_state
from lstm_jax.common.lecture import lecture_view_shape
from lstm_jax.common.numbers import check_positive_int


class LSTMModeler(nn.Module):
    """``nn.LSTM(input_size, hidden_layer_size, ...)`` + ``nn.Linear(D*H_out, output_size)``.

    Args:
        input_size: I, features per time step.
        hidden_layer_size: H, the LSTM's hidden size.
        output_size: O, the head's outputs.
        num_layers: L, passed to ``nn.LSTM`` as the next five.
        bias: two biases per layer and direction, as ``nn.LSTM``.
        batch_first: inputs (B, T, I) instead of (T, B, I).
        dropout: between layers, in training mode.
        bidirectional: D = 2 directions; the head takes D*H_out features.
        proj_size: P > 0 projects h to P (H_out = P, else H).

    Attributes:
        lstm: the ``nn.LSTM`` (state_dict keys ``lstm.*``).
        linear: the ``nn.Linear`` head (keys ``linear.*``).
        hidden_cell: (h, c) of (D*L, 1, H_out) and (D*L, 1, H), zeros at first; a
            stored batch of 1 is broadcast to the input's batch (plain ``nn.LSTM``
            refuses it); None means zeros, as ``nn.LSTM(x, None)``. ``forward``
            replaces it with the final state, as the lecture's does.
    """

    def __init__(
        self,
        input_size: int,
        hidden_layer_size: int,
        output_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
    ) -> None:
        super().__init__()
        self.config = LSTMConfig(
            hidden_size=hidden_layer_size,
            input_size=input_size,
            num_layers=num_layers,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            proj_size=proj_size,
        )
        check_positive_int("output_size", output_size)
        self.hidden_layer_size = hidden_layer_size
        self.lstm = nn.LSTM(input_size, hidden_layer_size, **self.config.lstm_options())
        self.linear = nn.Linear(self.config.num_directions * self.config.output_size, output_size)
        self.hidden_cell = self.zero_hidden_cell()

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # .double(), .to(device) and the like convert the stored hidden_cell with the
        # parameters, as they would a buffer: a float64 model otherwise starts from
        # float32 zeros and nn.LSTM refuses the mix.
        module = super()._apply(fn, recurse)
        if self.hidden_cell is not None:
            self.hidden_cell = tuple(fn(t) for t in self.hidden_cell)
        return module

    def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[no-untyped-def]
        """``nn.Module.load_state_dict``, all or nothing: torch's copies every parameter
        that fits before it raises for those that do not (a model half old, half new);
        here a failed load puts the old values back and raises torch's error unchanged."""
        backup = {k: v.detach().clone() for k, v in self.state_dict().items()}
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except BaseException:
            super().load_state_dict(backup, strict=True, assign=assign)
            raise

    def zero_hidden_cell(self, batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Zeros for ``hidden_cell``.

        Args:
            batch_size: B.

        Returns:
            (h, c) of zeros, (D*L, B, H_out) and (D*L, B, H), on the model's device and
            in its dtype.
        """
        weight = cast(torch.Tensor, self.lstm.weight_ih_l0)
        h_shape, c_shape = self.config.state_shapes(batch_size)
        return (
            torch.zeros(h_shape, dtype=weight.dtype, device=weight.device),
            torch.zeros(c_shape, dtype=weight.dtype, device=weight.device),
        )

    def _stored_state(
        self, weight: torch.Tensor, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``hidden_cell`` checked to be a pair of tensors of the parameters' dtype and
        device; None means zeros of ``batch_size``, as ``nn.LSTM(x, None)``."""
        state = self.hidden_cell
        if state is None:
            return self.zero_hidden_cell(batch_size)
        if not is_pair(state):
            got = describe_non_pair(state)
            raise TypeError(f"LSTMModeler: expected hidden_cell as a pair (h, c), got {got}")
        for name, t in zip(("h", "c"), state, strict=True):
            if not isinstance(t, torch.Tensor) or t.dtype != weight.dtype:
                raise TypeError(
                    f"LSTMModeler: expected hidden_cell {name} of dtype {weight.dtype} (the "
                    f"parameters'), got {getattr(t, 'dtype', type(t).__name__)}"
                )
            if t.device != weight.device:
                raise ValueError(
                    f"LSTMModeler: expected hidden_cell {name} on device {weight.device} (the "
                    f"parameters'), got {t.device}"
                )
        return state[0], state[1]

    def forward(self, x: torch.Tensor, seq_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The lecture's ``forward``: from the stored ``hidden_cell``, which it replaces.

        Args:
            x: (T,) or (T, I), one sequence (``x.view(len(x), 1, -1)``), or a (T, B, I)
                batch ((B, T, I) with ``batch_first``).
            seq_lengths: optional (B,) lengths: the batch is packed, and the prediction
                is taken at each row's last valid step.

        Returns:
            The last step's prediction: (O,) for one sequence, (B, O) for a batch.
        """
        config = self.config
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"LSTMModeler: expected a torch.Tensor, got {type(x).__name__}")
        single_sequence = x.dim() < 3
        view = lecture_view_shape(
            tuple(x.shape), str(x.dtype), x.is_floating_point(), config.batch_first, "LSTMModeler"
        )
        if view is not None:  # the lecture's view: one sequence of len(x) steps, batch 1
            x = x.reshape(view)
        weight = cast(torch.Tensor, self.lstm.weight_ih_l0)
        if x.dtype != weight.dtype:
            raise TypeError(
                f"LSTMModeler: expected input of dtype {weight.dtype} (the parameters'), "
                f"got {x.dtype}"
            )
        if x.device != weight.device:
            raise ValueError(
                f"LSTMModeler: expected input on device {weight.device} (the parameters'), "
                f"got {x.device}"
            )
        layout = check_input(
            config, tuple(x.shape), str(x.dtype), True, self.lstm.input_size, "LSTMModeler"
        )
        batch = layout.batch_size or 1
        h, c = self._stored_state(weight, batch)
        if h.dim() == 3 and h.shape[1] == 1 and c.shape[1] == 1 and batch != 1:
            h = h.expand(h.shape[0], batch, h.shape[2]).contiguous()
            c = c.expand(c.shape[0], batch, c.shape[2]).contiguous()
        check_state(config, layout, tuple(h.shape), tuple(c.shape), "LSTMModeler")

        if seq_lengths is None:
            lstm_out, self.hidden_cell = self.lstm(x, (h, c))
            time_major = lstm_out.transpose(0, 1) if config.batch_first else lstm_out
            last = time_major[-1]
        else:
            lengths = torch.as_tensor(seq_lengths).cpu()
            check_seq_lengths(lengths.tolist(), layout, "LSTMModeler")
            lengths = lengths.reshape(-1)  # a scalar for a single sequence
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=config.batch_first, enforce_sorted=False
            )
            packed_out, self.hidden_cell = self.lstm(packed, (h, c))
            time_major, _ = nn.utils.rnn.pad_packed_sequence(
                packed_out, total_length=layout.seq_len
            )
            index = (
                (lengths - 1)
                .to(time_major.device)
                .view(1, -1, 1)
                .expand(1, -1, time_major.shape[-1])
            )
            last = time_major.gather(0, index)[0]
        out = self.linear(last)
        return out[0] if single_sequence else out
