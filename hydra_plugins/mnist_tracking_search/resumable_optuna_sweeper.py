"""hydra-optuna-sweeper that continues a stopped search; the logic is mnist_tracking.sweeps.search's."""

from __future__ import annotations

import logging
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)


class ResumableOptunaSweeper(OptunaSweeper):
    """hydra-optuna-sweeper whose study starts from the trials already recorded under the sweep's parent run."""

    def sweep(self, arguments: list[str]) -> Any:
        try:  # relies on hydra-optuna-sweeper's internals: without them, a new study, as the plain sweeper runs it
            from mnist_tracking.sweeps.search import continue_study, log_study

            continue_study(self.sweeper, arguments)
        except (ImportError, AttributeError):
            log.warning(
                "Cannot continue the stopped search with this hydra-optuna-sweeper; starting a new study", exc_info=True
            )
            return super().sweep(arguments)
        result = super().sweep(arguments)
        log_study(self.sweeper)
        return result
