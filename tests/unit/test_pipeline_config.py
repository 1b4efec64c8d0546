"""`PipelineConfig`: every stage's section is validated up front, and the job configs are valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scotd.config import ConfigError, load_config
from scotd.distill.config import TINY_RECIPE
from scotd.pipeline.run import PipelineConfig, PipelineNotReady, check_ready, students

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_demo() -> None:
    cfg = PipelineConfig()
    assert (cfg.task, cfg.n, cfg.train_questions, cfg.n_ablation) == ("synthetic", 30, 1000, [1])
    plan = students(cfg)
    assert [s.key for s in plan] == ["scotd", "scotd_n1", "label_only"]
    assert [s.n for s in plan] == [30, 1, None]
    # Same recipe and step budget for every student; only the corpus differs.
    d = [cfg.distill_config(f"c/{s.key}", "o", s.label_only) for s in plan]
    assert {x.max_steps for x in d} == {800} and {x.lr for x in d} == {1e-3}
    assert [x.label_only for x in d] == [False, False, True]
    assert cfg.eval_config("m", "o", "x", False).votes == 30


def test_tiny_recipe_is_the_distill_preset_file() -> None:
    preset = yaml.safe_load((ROOT / "jobs/configs/distill_synthetic.yaml").read_text())
    preset.pop("corpus")
    assert preset == TINY_RECIPE


def test_user_values_win_over_the_tiny_recipe() -> None:
    cfg = PipelineConfig(distill={"max_steps": 50, "num_workers": 1})
    d = cfg.distill_config("c", "o")
    assert (d.max_steps, d.num_workers, d.lr) == (50, 1, 1e-3)
    # A hub student gets DistillConfig's own defaults: the paper's recipe.
    assert PipelineConfig(distill={"student": "facebook/opt-125m"}).distill_config("c", "o").lr == 2e-5


@pytest.mark.parametrize(
    ("yaml_text", "named"),
    [
        ("distill:\n  lrr: 0.1\n", "distill.lrr"),
        ("eval:\n  vote: 5\n", "eval.vote"),
        ("sample:\n  limits:\n    rpmm: 5\n", "sample.limits.rpmm"),
        ("distill:\n  batch_size: -1\n", "distill.batch_size"),
        ("trian_questions: 5\n", "trian_questions"),
        ("distill:\n  corpus: x\n", "distill.corpus"),
        ("n: 5\nn_ablation: [1, 5]\n", "n_ablation"),
    ],
)
def test_a_bad_key_is_named_before_anything_runs(tmp_path: Path, yaml_text: str, named: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(PipelineConfig, path)
    assert named in str(err.value)


def test_did_you_mean_inside_a_section(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("distill:\n  max_step: 5\n")
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        load_config(PipelineConfig, path)


@pytest.mark.parametrize("name", ["demo", "csqa", "openbookqa", "quarel"])
def test_job_configs_are_valid(name: str) -> None:
    cfg = load_config(PipelineConfig, ROOT / f"jobs/configs/{name}.yaml")
    if name == "demo":
        default = PipelineConfig()  # demo.yaml spells out the no-argument defaults
        assert cfg.model_dump(exclude={"distill", "eval"}) == default.model_dump(exclude={"distill", "eval"})
        assert cfg.distill_config("c", "o") == default.distill_config("c", "o")
        assert cfg.eval_config("m", "o", "x", False) == default.eval_config("m", "o", "x", False)
    else:
        assert cfg.task == name and cfg.eval_split == "validation" and cfg.n == 30
        d = cfg.distill_config("c", "o")
        assert d.student == "facebook/opt-1.3b" and d.lr == 2e-5 and d.max_steps == 20000 and d.use_gpu
        assert cfg.teacher_base_url and cfg.api_key_env == "OPENAI_API_KEY"


@pytest.mark.parametrize(
    "path", sorted((ROOT / "jobs/configs/experiments").glob("*.yaml")), ids=lambda p: p.stem
)
def test_experiment_configs_are_valid(path: Path) -> None:
    """Every shipped grid loads, writes under outputs/experiments/<name>, and its reference is a condition."""
    cfg = load_config(PipelineConfig, path)
    assert cfg.task == "synthetic" and cfg.out == f"outputs/experiments/{path.stem}"
    keys = [s.key for s in cfg.students]
    assert cfg.reference is None or cfg.reference in keys


def test_offline_real_run_fails_fast_naming_what_is_missing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SCOTD_DATA_DIR", str(data_dir))
    cfg = load_config(PipelineConfig, ROOT / "jobs/configs/quarel.yaml")
    with pytest.raises(PipelineNotReady) as err:
        check_ready(cfg)
    text = str(err.value)
    assert "quarel/train" in text or "quarel" in text.split("data:")[1]
    assert "facebook/opt-1.3b" in text
    assert "nothing was requested" in text
