"""The launchers' configs compose with the project's: Ray (local and an existing cluster), submitit (local, Slurm)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_tracking.runtime.job import threads_per_job
from tests.helpers import CONF_DIR


def hydra_config(overrides: list[str]) -> DictConfig:
    """The `hydra` node of the composed config, as a launcher sees it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True).hydra


def test_sweep_dir_is_absolute_under_the_launch_dir(tmp_path, monkeypatch):
    # Ray workers on a cluster start elsewhere: a relative sweep dir would put their outputs there.
    monkeypatch.chdir(tmp_path)
    sweep_dir = Path(hydra_config([]).sweep.dir)
    assert sweep_dir.parent.parent == tmp_path / "multirun"


def test_ray_cluster_joins_instead_of_starting_ray():
    launcher = hydra_config(["hydra/launcher=ray_cluster"]).launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    # Ray refuses an object store size when joining a cluster; the launcher would set one unless it is there.
    assert OmegaConf.to_container(launcher.ray.init) == {"address": "auto", "object_store_memory": None}
    launcher = hydra_config(["hydra/launcher=ray_cluster", "hydra.launcher.ray.init.address=10.0.0.1:6379"]).launcher
    assert launcher.ray.init.address == "10.0.0.1:6379"


def test_local_ray_is_the_plugins_own():
    launcher = hydra_config(["hydra/launcher=ray"]).launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher.ray.init.address is None  # the launcher starts a local Ray


@pytest.mark.parametrize("name", ["submitit_slurm", "submitit_local"])
def test_submitit_launchers_compose_and_build(name, tmp_path):
    hc = hydra_config(
        [
            f"hydra/launcher={name}",
            f"hydra.sweep.dir={tmp_path}",
            "hydra.launcher.cpus_per_task=2",
            "hydra.launcher.mem_gb=4",
            *(["hydra.launcher.partition=cpu"] if "slurm" in name else []),
        ]
    )
    launcher = instantiate(hc.launcher)
    kind = "Slurm" if "slurm" in name else "Local"
    assert type(launcher).__name__ == f"{kind}Launcher"
    assert launcher.params["cpus_per_task"] == 2 and launcher.params["mem_gb"] == 4
    assert launcher.params["submitit_folder"] == f"{tmp_path}/.submitit/%j"
    if kind == "Slurm":
        assert launcher.params["partition"] == "cpu" and launcher.params["timeout_min"] == 60


def test_threads_per_job_follow_the_launcher():
    cores = os.cpu_count() or 1
    assert threads_per_job(hydra_config([]).launcher) is None  # serial: TensorFlow takes every core
    joblib = hydra_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]).launcher
    assert threads_per_job(joblib) == max(1, cores // 2)
    assert threads_per_job(hydra_config(["hydra/launcher=ray"]).launcher) == 1  # Ray's 1 CPU per task
    ray4 = hydra_config(["hydra/launcher=ray", "+hydra.launcher.ray.remote.num_cpus=4"]).launcher
    assert threads_per_job(ray4) == 4
    half = hydra_config(["hydra/launcher=ray", "+hydra.launcher.ray.remote.num_cpus=0.5"]).launcher
    assert threads_per_job(half) == 1  # not 0, which TensorFlow reads as "every core"
    local = hydra_config(["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=2"]).launcher
    assert threads_per_job(local) == 2  # its jobs all run at once, unpinned
    # Slurm pins a job to its CPUs and TensorFlow sizes itself to them.
    assert (
        threads_per_job(hydra_config(["hydra/launcher=submitit_slurm", "hydra.launcher.cpus_per_task=2"]).launcher)
        is None
    )
