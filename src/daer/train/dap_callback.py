"""DAP during training: every K steps, calibrate the HAF policy on a held-out batch and log it."""

from __future__ import annotations

from typing import Any

from daer.train.calibrate import ValidationBatch, calibrate_model, log_calibration, summary_line, validation_batch
from daer.train.dap import SearchMemory

DAP_LOG = "dap_log.jsonl"


class DAPCallback:
    """Trainer callback: calibrates every ``every`` steps with ``simulations`` MCTS simulations.

    Every rank runs the same deterministic search on the same batch with the same weights, so the
    policy stays identical across ranks without communication. With ``reuse`` in (0, 1], each calibration
    carries the previous one's tree over, its statistics scaled by ``reuse`` (:class:`SearchMemory`).
    """

    def __init__(
        self,
        data_dir: str,
        every: int = 500,
        simulations: int = 64,
        alpha: float = 0.5,
        batch_size: int = 256,
        seed: int = 0,
        reuse: float = 0.0,
    ) -> None:
        if not 0.0 <= reuse <= 1.0:
            raise ValueError(f"reuse must lie in [0, 1] (0: a fresh tree every calibration), got {reuse}")
        self.data_dir = data_dir
        self.every = every
        self.simulations = simulations
        self.alpha = alpha
        self.batch_size = batch_size
        self.seed = seed
        self.calibrations = 0
        self.seconds = 0.0
        self._batch: ValidationBatch | None = None
        self.memory = SearchMemory(decay=reuse) if reuse > 0 else None

    def on_step_end(self, step: int, trainer: Any) -> None:
        """Calibrate when ``step`` is a multiple of ``every``."""
        if step % self.every:
            return
        if self._batch is None:
            self._batch = validation_batch(self.data_dir, self.batch_size, seed=self.seed)
        calibration = calibrate_model(
            trainer.model,
            self._batch,
            simulations=self.simulations,
            alpha=self.alpha,
            seed=self.seed + self.calibrations,
            memory=self.memory,
        )
        self.calibrations += 1
        self.seconds += calibration.seconds
        if trainer.dist.is_main:
            log_calibration(trainer.run_dir / DAP_LOG, calibration, step=step)
            trainer.log_event("dap", **{k: v for k, v in calibration.to_json().items() if k != "policy_before"})
            print(f"\nstep {step}: {summary_line(calibration)}", flush=True)

    def state_dict(self) -> dict[str, Any]:
        """Counters kept in the checkpoint (the policy itself lives in the model's buffers)."""
        state = {"calibrations": self.calibrations, "seconds": self.seconds}
        if self.memory is not None:
            state["memory"] = self.memory.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calibrations = int(state.get("calibrations", 0))
        self.seconds = float(state.get("seconds", 0.0))
        if self.memory is not None and state.get("memory"):
            self.memory.load_state_dict(state["memory"])
