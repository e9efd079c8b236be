"""hydra-optuna-sweeper that continues a stopped search; the logic is mnist_tracking.sweeps.search's."""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class ResumableOptunaSweeper(OptunaSweeper):
    """hydra-optuna-sweeper whose study starts from the trials already recorded under the sweep's parent run."""

    def sweep(self, arguments: list[str]) -> Any:
        from mnist_tracking.sweeps.dry_run import first_batch_only
        from mnist_tracking.sweeps.search import continue_study, log_study

        continue_study(self.sweeper, arguments)  # a new study, with a warning, where it cannot
        if self.sweeper.config.sweep.dry_run:  # the trials it would run first; later ones depend on their results
            with first_batch_only(self.sweeper.launcher):
                super().sweep(arguments)
            return None
        result = super().sweep(arguments)
        log_study(self.sweeper)
        return result
