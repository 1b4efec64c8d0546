"""cluster/ (launcher YAML, KubeRay manifests, Dockerfile) is valid and agrees with jobs/ and serve/.

Nothing here talks to a cloud or a Kubernetes API: the launcher YAML is checked against the JSON
schema inside the installed ``ray`` package and Ray's own config validation, the manifests against
the fields KubeRay requires, and both against the entrypoints, configs and Serve application they
name — so renaming a job, a config key or a deployment breaks this test, not a cluster.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from scotd.config import StageConfig, config_from_args, load_config
from scotd.pipeline.run import PipelineConfig
from scotd.serve.config import ServeConfig

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
SERVE_CONFIG = REPO / "serve" / "config.yaml"
# Where cluster/Dockerfile and cluster/aws.yaml put the repo on every node / pod.
REMOTE_REPO = "/home/ray/scotd"
OBJECT_STORE = re.compile(r"^(s3|gs)://[^/]+/")
# GPUs of the instance types cluster/aws.yaml launches (the launcher detects them at run time).
GPUS_PER_INSTANCE = {"g5.12xlarge": 4, "g5.xlarge": 1}

ALL_YAML = sorted(
    [*CLUSTER.rglob("*.yaml"), *(REPO / "jobs" / "configs").glob("*.yaml"), *(REPO / "serve").glob("*.yaml")]
)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text("utf-8"))


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("path", ALL_YAML, ids=_rel)
def test_every_yaml_parses_to_a_mapping(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text("utf-8")))
    assert docs and all(isinstance(d, dict) and d for d in docs), f"{_rel(path)} is not a YAML mapping"


def test_the_expected_files_are_there() -> None:
    names = {_rel(p) for p in ALL_YAML}
    for required in (
        "cluster/aws.yaml",
        "cluster/serve.yaml",
        "cluster/kuberay/raycluster.yaml",
        "cluster/kuberay/rayjob.yaml",
        "cluster/kuberay/rayservice.yaml",
        "serve/config.yaml",
    ):
        assert required in names
    assert (CLUSTER / "README.md").is_file() and (CLUSTER / "Dockerfile").is_file()


# --- jobs/ ---------------------------------------------------------------------------------------


def _config_class(path: Path) -> type[StageConfig]:
    """Stage configs are named after their stage (distill_*.yaml); the rest are pipeline configs."""
    from scotd.corpus.config import CorpusConfig
    from scotd.distill.config import DistillConfig
    from scotd.eval.config import EvalConfig
    from scotd.sample.config import SampleConfig

    by_prefix: dict[str, type[StageConfig]] = {
        "corpus_": CorpusConfig,
        "distill_": DistillConfig,
        "eval_": EvalConfig,
        "sample_": SampleConfig,
    }
    return next((cls for p, cls in by_prefix.items() if path.name.startswith(p)), PipelineConfig)


@pytest.mark.parametrize("path", sorted((REPO / "jobs" / "configs").rglob("*.yaml")), ids=_rel)
def test_job_configs_validate(path: Path) -> None:
    load_config(_config_class(path), path)


def test_the_paper_and_demo_pipeline_configs_exist() -> None:
    for name in ("demo", "csqa", "openbookqa", "quarel"):
        assert (REPO / "jobs" / "configs" / f"{name}.yaml").is_file(), f"jobs/configs/{name}.yaml is missing"


def _pipeline_from_command(argv: list[str]) -> PipelineConfig:
    """``python jobs/pipeline.py ARGS`` as the job would resolve it (YAML, then flags), cwd = the repo."""
    from scotd.cli import build_parser

    assert argv[:2] == ["python", "jobs/pipeline.py"], argv
    assert (REPO / argv[1]).is_file()
    args = build_parser("pipeline").parse_args(["pipeline", *argv[2:]])
    assert args.config and (REPO / args.config).is_file(), f"{args.config} does not exist"
    args.config = str(REPO / args.config)
    return config_from_args(PipelineConfig, args)


# --- the launcher YAML -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    config: dict[str, Any] = _load(CLUSTER / "aws.yaml")
    return config


def test_launcher_yaml_validates_against_rays_schema(launcher: dict[str, Any]) -> None:
    import jsonschema

    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    jsonschema.validate(launcher, json.loads(schema_path.read_text()))


def test_launcher_yaml_passes_rays_own_validation(launcher: dict[str, Any]) -> None:
    """What ``ray up`` does before it calls the cloud: fill in the provider's defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(launcher))


def test_launcher_node_types(launcher: dict[str, Any]) -> None:
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "tasks and actors stay off the head"
    workers = {name: t for name, t in types.items() if name != launcher["head_node_type"]}
    gpu = {n: t for n, t in workers.items() if t.get("docker", {}).get("worker_image", "").endswith("-gpu")}
    cpu = {n: t for n, t in workers.items() if n not in gpu}
    assert len(gpu) == 1 and len(cpu) >= 1, sorted(workers)
    (gpu_type,) = gpu.values()
    assert gpu_type["min_workers"] == 0, "GPU nodes exist only while a stage asks for GPUs"
    assert GPUS_PER_INSTANCE.get(gpu_type["node_config"]["InstanceType"], 0) >= 1
    assert sum(t["max_workers"] for t in workers.values()) <= launcher["max_workers"]
    assert launcher["idle_timeout_minutes"] > 0


def _ray_image_version(image: str) -> str:
    match = re.fullmatch(r"rayproject/ray:([0-9.]+)-py3\d+-(cpu|gpu)", image)
    assert match, f"{image}: expected rayproject/ray:<version>-py3XX-cpu|gpu"
    return match.group(1)


def test_launcher_images_run_the_installed_ray(launcher: dict[str, Any]) -> None:
    images = [launcher["docker"]["image"]]
    images += [
        t["docker"]["worker_image"] for t in launcher["available_node_types"].values() if "docker" in t
    ]
    assert len(images) >= 2
    assert {_ray_image_version(i) for i in images} == {ray.__version__}


def test_launcher_mounts_and_setup_refer_to_files_that_exist(launcher: dict[str, Any]) -> None:
    mounts = launcher["file_mounts"]
    assert mounts.get(REMOTE_REPO) == ".", "the repo is mounted where setup installs it from"
    for remote, local in mounts.items():
        assert (REPO / local).exists(), (
            f"file_mounts {remote}: {local} does not exist (run ray up from the repo root)"
        )
    extras = set(_load_pyproject()["project"]["optional-dependencies"])
    commands = [*launcher["setup_commands"], *launcher["head_setup_commands"]]
    for t in launcher["available_node_types"].values():
        commands += t.get("worker_setup_commands", [])
    installs = [c for c in commands if f"-e {REMOTE_REPO}" in c or f"-e '{REMOTE_REPO}" in c]
    assert len(installs) >= 2, "the head and every worker type install the project"
    for cmd in commands:
        for remote in re.findall(rf"{REMOTE_REPO}[^\s'\"\[]*", cmd):
            local = REPO / remote.removeprefix(REMOTE_REPO).lstrip("/")
            assert local.exists(), f"setup command names {remote}, but {local} does not exist"
        for extra in re.findall(rf"{REMOTE_REPO}\[([^\]]+)\]", cmd):
            assert set(extra.split(",")) <= extras, f"{cmd}: unknown extra (pyproject has {sorted(extras)})"
    gpu_setup = next(
        t["worker_setup_commands"]
        for t in launcher["available_node_types"].values()
        if t.get("docker", {}).get("worker_image", "").endswith("-gpu")
    )
    assert any("[vllm]" in c for c in gpu_setup), "GPU workers install the CUDA vLLM extra"


def _load_pyproject() -> dict[str, Any]:
    import tomllib

    data: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())
    return data


def test_dockerfile_copies_what_exists_and_matches_ray() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M)
    assert base and _ray_image_version(base.group(1)) == ray.__version__
    assert f"WORKDIR {REMOTE_REPO}" in text
    copies = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M)
    sources = [s for line in copies for s in line.split()]
    assert {"pyproject.toml", "scotd", "serve", "jobs"} <= set(sources)
    for s in sources:
        assert (REPO / s).exists(), f"Dockerfile copies {s}, which does not exist"
    target = re.search(r"^ARG SCOTD_TARGET=\.\[(\w+)\]", text, re.M)
    assert target and target.group(1) in _load_pyproject()["project"]["optional-dependencies"]


# --- KubeRay ----------------------------------------------------------------------------------------


def _manifest(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = _load(KUBERAY / name)
    assert doc["apiVersion"] == "ray.io/v1", f"{name}: KubeRay's current API is ray.io/v1"
    assert doc["metadata"]["name"]
    return doc


def _cluster_specs() -> dict[str, dict[str, Any]]:
    return {
        "RayCluster": _manifest("raycluster.yaml")["spec"],
        "RayJob": _manifest("rayjob.yaml")["spec"]["rayClusterSpec"],
        "RayService": _manifest("rayservice.yaml")["spec"]["rayClusterConfig"],
    }


def test_manifest_kinds() -> None:
    assert _manifest("raycluster.yaml")["kind"] == "RayCluster"
    assert _manifest("rayjob.yaml")["kind"] == "RayJob"
    assert _manifest("rayservice.yaml")["kind"] == "RayService"


def _quantity(value: str | int | float) -> float:
    """A Kubernetes CPU / count quantity: "6", 6, "500m"."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _container(group: dict[str, Any]) -> dict[str, Any]:
    containers = group["template"]["spec"]["containers"]
    assert containers, "a pod template needs a container"
    first: dict[str, Any] = containers[0]  # KubeRay runs Ray in the first container
    return first


def _gpus(group: dict[str, Any]) -> float:
    return _quantity(_container(group)["resources"]["limits"].get("nvidia.com/gpu", 0))


def _check_group(where: str, group: dict[str, Any]) -> None:
    params = group["rayStartParams"]
    assert isinstance(params, dict), f"{where}: rayStartParams is required (may be {{}})"
    assert all(isinstance(v, str) for v in params.values()), f"{where}: rayStartParams values are strings"
    c = _container(group)
    assert c.get("name") and c.get("image"), f"{where}: the Ray container needs a name and an image"
    res = c["resources"]
    assert res["requests"] == res["limits"], f"{where}: Ray sizes itself by limits; requests = limits"
    assert _quantity(res["limits"]["cpu"]) > 0 and res["limits"]["memory"]
    gpu = _gpus(group) > 0
    assert c["image"].endswith("-gpu") == gpu, f"{where}: GPU pods take the -gpu image, CPU pods the -cpu one"


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob", "RayService"])
def test_cluster_specs_have_the_required_fields(kind: str) -> None:
    spec = _cluster_specs()[kind]
    assert spec["enableInTreeAutoscaling"] is True, f"{kind}: the autoscaler is on"
    assert spec["authOptions"]["mode"] == "token", f"{kind}: the job API and GCS need Ray's token"
    assert spec["rayVersion"] == ray.__version__
    head = spec["headGroupSpec"]
    _check_group(f"{kind} head", head)
    assert head["rayStartParams"].get("num-cpus") == "0", f"{kind}: tasks and actors stay off the head"
    groups = spec["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups)
    for g in groups:
        _check_group(f"{kind} {g['groupName']}", g)
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    gpu_groups = [g for g in groups if _gpus(g) > 0]
    assert gpu_groups, f"{kind}: distillation, evaluation and serving need a GPU group"
    assert all(g["minReplicas"] == 0 for g in gpu_groups), f"{kind}: no GPU pod while nothing asks for one"
    if kind != "RayService":
        assert any(_gpus(g) == 0 for g in groups), f"{kind}: teacher sampling runs on a CPU group"


def test_images_agree_across_manifests() -> None:
    images = {
        _container(g)["image"]
        for spec in _cluster_specs().values()
        for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    }
    repos = {i.rsplit(":", 1)[0] for i in images}
    versions = {i.rsplit(":", 1)[1].rsplit("-", 1)[0] for i in images}
    assert len(repos) == 1 and len(versions) == 1, f"one image, one version, cpu/gpu flavours: {images}"


def _pods(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        c
        for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for c in g["template"]["spec"]["containers"]
    ]


def test_secrets_come_from_kubernetes_secrets_only() -> None:
    for kind, spec in _cluster_specs().items():
        for c in _pods(spec):
            for var in c.get("env", []):
                if re.search(r"KEY|TOKEN|SECRET|PASSWORD", var["name"]):
                    assert "value" not in var, f"{kind}: {var['name']} is inline; use valueFrom.secretKeyRef"
                    assert var["valueFrom"]["secretKeyRef"]["name"]
    for path in KUBERAY.glob("*.yaml"):
        assert not re.search(r"\bsk-[A-Za-z0-9_\-]{8,}", path.read_text()), f"{path.name} holds a key"
    job_head = _container(_cluster_specs()["RayJob"]["headGroupSpec"])
    names = {v["name"] for v in job_head.get("env", [])}
    assert "OPENAI_API_KEY" in names, "the pipeline's driver reads the teacher key from the head's env"


def test_service_accounts_exist() -> None:
    (account,) = [d for d in yaml.safe_load_all((KUBERAY / "serviceaccount.yaml").read_text())]
    assert account["kind"] == "ServiceAccount"
    for kind, spec in _cluster_specs().items():
        for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            name = g["template"]["spec"].get("serviceAccountName")
            assert name == account["metadata"]["name"], f"{kind}: pods run as the scotd service account"


def test_rayjob_runs_the_pipeline_job_with_a_valid_config() -> None:
    job = _manifest("rayjob.yaml")["spec"]
    argv = shlex.split(job["entrypoint"])
    cfg = _pipeline_from_command(argv)
    assert "--config" in argv and argv[argv.index("--config") + 1] == "jobs/configs/csqa.yaml"
    assert OBJECT_STORE.match(cfg.out), f"out={cfg.out}: pods share no disk; write to object storage"
    runtime_env = yaml.safe_load(job["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == REMOTE_REPO, "the entrypoint's relative paths resolve in the repo"
    assert job.get("submissionMode", "K8sJobMode") == "K8sJobMode", (
        "a local working_dir needs a submitter pod"
    )
    assert job["shutdownAfterJobFinishes"] is True


def test_rayjob_resources_fit_the_pipelines_stages() -> None:
    """The students' training and evaluation ask for what the GPU group can give."""
    job = _manifest("rayjob.yaml")["spec"]
    cfg = _pipeline_from_command(shlex.split(job["entrypoint"]))
    groups = job["rayClusterSpec"]["workerGroupSpecs"]
    distill = cfg.distill_config("", "")
    per_worker = {"cpu": distill.cpus_per_worker, "gpu": 1.0 if distill.use_gpu else 0.0}
    _assert_fits(groups, per_worker, distill.num_workers, "distill workers")
    ev = cfg.eval_config("", "", "", False)
    per_engine = {"cpu": ev.num_cpus_per_engine, "gpu": ev.num_gpus_per_engine}
    _assert_fits(groups, per_engine, ev.num_engines, "eval engines")


def _assert_fits(groups: list[dict[str, Any]], need: dict[str, float], count: int, what: str) -> None:
    fitting = [
        g
        for g in groups
        if _quantity(_container(g)["resources"]["limits"]["cpu"]) >= need["cpu"] and _gpus(g) >= need["gpu"]
    ]
    assert fitting, f"{what} need {need} each; no worker group has that much"
    capacity = 0
    for g in fitting:
        per_pod = int(_quantity(_container(g)["resources"]["limits"]["cpu"]) // max(need["cpu"], 1e-9))
        if need["gpu"]:
            per_pod = min(per_pod, int(_gpus(g) // need["gpu"]))
        capacity += per_pod * g["maxReplicas"]
    assert capacity >= count, f"{count} {what} of {need} do not fit the groups (room for {capacity})"


# --- Access: Ray token auth on, the job API not on the network --------------------------------------

# The job API runs arbitrary code: it must never listen on every interface of a machine with a
# network beyond the cluster's. (Inside a pod 0.0.0.0 is only the pod IP and loopback.)
LOOPBACK = {"127.0.0.1", "localhost"}


def _ray_start_flags(commands: list[str]) -> dict[str, str]:
    (start,) = [c for c in commands if "ray start --head" in c]
    return dict(re.findall(r"--([a-z-]+)=(\S+)", start))


def test_launcher_turns_on_ray_token_auth_on_every_node(launcher: dict[str, Any]) -> None:
    docker = launcher["docker"]
    for key in ("run_options", "head_run_options", "worker_run_options"):
        for option in docker.get(key, []):
            assert "RAY_AUTH_MODE=disabled" not in option, f"docker.{key} turns token auth off"
    assert "--env RAY_AUTH_MODE=token" in docker["run_options"], "every node's container runs in token mode"
    for name, t in launcher["available_node_types"].items():
        assert "run_options" not in t.get("docker", {}), f"{name}: would replace the auth-mode option"
    # The token: fetched on every node (setup_commands run on all) to Ray's default path.
    fetch = [c for c in launcher["setup_commands"] if "~/.ray/auth_token" in c]
    assert len(fetch) == 1 and "/scotd/RAY_AUTH_TOKEN" in fetch[0] and "WithDecryption=True" in fetch[0]
    assert "umask 077" in fetch[0], "the token file is readable by its owner only"
    text = (CLUSTER / "aws.yaml").read_text()
    assert not re.search(r"RAY_AUTH_TOKEN\s*=", text), "the token is never written into the config"


def test_launcher_dashboard_listens_on_the_heads_loopback_only(launcher: dict[str, Any]) -> None:
    flags = _ray_start_flags(launcher["head_start_ray_commands"])
    assert flags.get("dashboard-host") in LOOPBACK, (
        f"dashboard-host={flags.get('dashboard-host')}: the job API runs code; `ray dashboard` tunnels to "
        "the head's loopback"
    )
    assert "0.0.0.0" not in (CLUSTER / "aws.yaml").read_text()


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_kuberay_clusters_keep_the_job_api_inside_the_cluster(kind: str) -> None:
    spec = _cluster_specs()[kind]
    assert spec["authOptions"]["mode"] == "token", f"{kind}: Ray token auth is on"
    head = spec["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", f"{kind}: the head Service stays internal"
    for g in [head, *spec["workerGroupSpecs"]]:
        pod = g["template"]["spec"]
        # With neither, 0.0.0.0 in the Ray container is the pod's private IP and loopback only.
        assert not pod.get("hostNetwork"), f"{kind}: a host-network pod would put the job API on the node"
        for c in pod["containers"]:
            assert all("hostPort" not in port for port in c.get("ports", [])), f"{kind}: no hostPort"
            assert not any(v["name"] in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN") for v in c.get("env", [])), (
                f"{kind}: authOptions sets the auth mode and token; a manual value would override it"
            )


def test_the_readme_says_how_to_reach_an_authenticated_cluster() -> None:
    text = (CLUSTER / "README.md").read_text()
    for needle in (
        "ray get-auth-token --generate",
        "/scotd/RAY_AUTH_TOKEN",
        "ray dashboard cluster/aws.yaml",
        "RAY_AUTH_MODE=token",
        "kubectl port-forward svc/scotd-head-svc 8265:8265",
        "auth_token",
    ):
        assert needle in text, f"cluster/README.md does not say {needle!r}"


# --- Serve: serve/config.yaml, cluster/serve.yaml and the RayService agree --------------------------


def _serve_schema(raw: dict[str, Any]) -> Any:
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema.model_validate(raw)


def test_rayservice_embeds_cluster_serve_yaml() -> None:
    embedded = yaml.safe_load(_manifest("rayservice.yaml")["spec"]["serveConfigV2"])
    assert embedded == _load(CLUSTER / "serve.yaml")
    _serve_schema(embedded)


def test_cluster_serving_is_serve_config_yaml_on_a_cluster() -> None:
    """Same application, deployments and args; only what a cluster must change differs."""
    local, cluster = _load(SERVE_CONFIG), _load(CLUSTER / "serve.yaml")
    assert cluster["http_options"] == {**local["http_options"], "host": "0.0.0.0"}
    assert cluster["proxy_location"] == local["proxy_location"]
    (lapp,) = local["applications"]
    (capp,) = cluster["applications"]
    for key in ("name", "route_prefix", "import_path"):
        assert capp[key] == lapp[key], key
    # Every node has the repo's `serve` package (the images / setup install it).
    assert capp["import_path"] == "serve.app:app_builder"
    assert {k: v for k, v in capp["args"].items() if k != "model"} == {
        k: v for k, v in lapp["args"].items() if k != "model"
    }
    ServeConfig.model_validate(capp["args"])
    assert OBJECT_STORE.match(capp["args"]["model"]), "a cluster serves an export from object storage"
    ldeps = {d["name"]: d for d in lapp["deployments"]}
    cdeps = {d["name"]: d for d in capp["deployments"]}
    assert cdeps.keys() == ldeps.keys() == {"StudentModel", "AnswerAPI"}
    for name, d in cdeps.items():
        gpu_free = {**d, "ray_actor_options": {**d["ray_actor_options"], "num_gpus": 0}}
        local_d = {**ldeps[name], "ray_actor_options": {"num_gpus": 0, **ldeps[name]["ray_actor_options"]}}
        assert gpu_free == local_d, f"{name}: only num_gpus may differ on a cluster"
    assert cdeps["StudentModel"]["ray_actor_options"]["num_gpus"] == 1


def test_serve_deployments_fit_the_rayservice_groups() -> None:
    svc = _manifest("rayservice.yaml")["spec"]
    (app,) = yaml.safe_load(svc["serveConfigV2"])["applications"]
    groups = svc["rayClusterConfig"]["workerGroupSpecs"]
    total_gpus = sum(_gpus(g) * g["maxReplicas"] for g in groups)
    needed = 0.0
    for d in app["deployments"]:
        opts = d["ray_actor_options"]
        need = {"cpu": float(opts.get("num_cpus", 1)), "gpu": float(opts.get("num_gpus", 0))}
        replicas = d.get("autoscaling_config", {}).get("max_replicas", d.get("num_replicas", 1))
        _assert_fits(groups, need, replicas, f"{d['name']} replicas")
        needed += need["gpu"] * replicas
    assert needed <= total_gpus, f"Serve may want {needed} GPUs; the groups have at most {total_gpus}"
    serve_ports = {p["containerPort"] for p in _container(svc["rayClusterConfig"]["headGroupSpec"])["ports"]}
    assert yaml.safe_load(svc["serveConfigV2"])["http_options"]["port"] in serve_ports


def test_launcher_nodes_carry_the_serve_token_and_the_proxy_body_limit() -> None:
    cfg = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    assert (
        "--env RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve.proxy_limits:middlewares"
        in (cfg["docker"]["run_options"])
    )
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(cfg[key])
        assert 'export SCOTD_SERVE_TOKEN="$(' in start and "/scotd/SCOTD_SERVE_TOKEN" in start, key
        assert start.index("SCOTD_SERVE_TOKEN") < start.index("ray start"), key
